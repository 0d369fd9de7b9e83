"""Checking the sync of a clip that is already laid: the audio-versus-lips offset over time.

Offset-only tools (SyncNet) give one number per clip; an editor needs to see where a long clip
drifts. Here the clip's audio is compared with its lips in windows of a few seconds:

    lips, audio    -> unit embeddings (the trained dual encoder): the lips at the model's own
                      video frames, the audio at FEATURE_RATE
    similarity     -> for each lag of -max..+max s in audio frames, the cosine of each lip frame
                      with the audio ``lag`` later, weighted by that audio's speech activity
    per window     -> the lag of the best mean similarity (sub-frame by a parabola) and its
                      confidence (the posterior mass within CONFIDENCE_TOLERANCE_S of that lag)
    over the clip  -> the overall offset (all speech at once), the drift (a robust weighted line
                      through the windows' offsets), and a verdict against ITU-R BT.1359

Sign: an offset > 0 means the audio is late (it lags the lips), as in the benchmark.
Each window searches the whole lag range on its own rather than around the clip's overall offset:
a bad cut in a conform makes the sync jump, and a search narrowed around the clip's average would
hide the jump. A weak window that picks a wrong lag shows as low confidence and is left out of the
drift fit and the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .audio import LOG_FLOOR, log_mel, speech_activity
from .errors import AlignmentError, MediaError, ParameterError
from .lips import LipTrack
from .sync import LIP_TEMPERATURE, frame_validity
from .units import FEATURE_RATE, frames_to_seconds, seconds_to_frames

if TYPE_CHECKING:
    from .model import LipSyncModel
    from .pipeline import PictureAnalysis

# ITU-R BT.1359, in s of audio delay (> 0: audio lags the lips)
DETECTABILITY_S = (-0.045, 0.125)  # viewers do not notice an offset inside this window
ACCEPTABILITY_S = (-0.090, 0.185)  # beyond this window an offset is unacceptable
VERDICTS = ("in sync", "detectable", "unacceptable", "unknown")

WINDOW_S = 4.0  # s of picture per window: a few words, enough for the lips to pin the lag
HOP_S = 2.0  # s between window starts (windows overlap by half)
MAX_OFFSET_S = 0.5  # s: lags searched either way (further off, a line is misplaced rather than out of sync)
MIN_SPEECH_S = 0.3  # s of speech (activity-weighted, with a face) a window needs to be measured
# Seconds of speech that count as one independent observation when the similarity curve becomes a
# posterior over lags (with LIP_TEMPERATURE, the per-frame scale the path solver uses): the encoders
# see about 0.7 s around each frame, so frames closer than about a quarter second share most of
# their input and are far from independent.
EVIDENCE_S = 0.25
DIGITAL_SILENCE_DB = 3.0  # mel frames whose every band is within this of the log floor are digital silence
MIN_SEARCH_S = 0.25  # s: a short clip narrows the search (see check_sync), but never below this
USABLE_OVERLAP = 0.5  # a lag may win only if it keeps this share of the best-covered lag's speech
CONFIDENCE_TOLERANCE_S = 0.04  # s: posterior mass this close to the peak counts as sure
MIN_CONFIDENCE = 0.5  # windows under this confidence are shown, but not trusted for drift or verdict
MIN_DRIFT_WINDOWS = 3  # trusted windows needed to fit a drift
MIN_DRIFT_SPAN_S = 6.0  # s between the first and last trusted window centres needed to fit a drift
DRIFT_OUTLIER_S = 0.08  # s: windows this far from the fitted line are refitted without


@dataclass(frozen=True)
class WindowOffset:
    """The offset measured in one window of the clip.

    start_s, end_s : the window on the clip's timeline (s)
    time_s : the moment the offset stands for: the window's speech-weighted centre (s)
    offset_s : audio delay against the lips (s, > 0: audio late), or None when the window holds too
        little speech with a face to be measured
    confidence : in [0, 1], the posterior mass within CONFIDENCE_TOLERANCE_S of ``offset_s``
    speech_s : s of speech with a face the measurement rests on (activity-weighted)
    """

    start_s: float
    end_s: float
    time_s: float
    offset_s: float | None
    confidence: float
    speech_s: float

    @property
    def trusted(self) -> bool:
        return self.offset_s is not None and self.confidence >= MIN_CONFIDENCE

    def to_json(self) -> dict:
        return {
            "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "time_s": round(self.time_s, 3),
            "offset_ms": None if self.offset_s is None else round(1000 * self.offset_s, 1),
            "confidence": round(self.confidence, 3), "speech_s": round(self.speech_s, 2),
            "verdict": verdict_of(self.offset_s) if self.trusted else "unknown",
        }


@dataclass(frozen=True)
class SyncCheck:
    """The sync of a clip over time.

    windows : the per-window offsets, in time order
    offset_s : the offset of the whole clip (all its speech at once), None when it has no speech
    confidence : the confidence of ``offset_s`` in [0, 1]
    drift_s_per_min : the slope of a line through the trusted windows' offsets (s of offset gained
        per minute of clip, > 0: the audio falls behind), None when too few windows span too
        little time to fit one; drift_start_s : that line's offset at time 0 (None likewise)
    worst_offset_s : the trusted window offset furthest outside BT.1359 (the overall one when no
        window is trusted), which sets the verdict
    verdict : "in sync", "detectable", "unacceptable" (ITU-R BT.1359), or "unknown" when nothing
        could be measured with confidence
    max_offset_s : the largest offset searched either way (less than asked on a short clip)
    """

    duration_s: float
    windows: tuple[WindowOffset, ...]
    offset_s: float | None
    confidence: float
    drift_s_per_min: float | None
    drift_start_s: float | None
    worst_offset_s: float | None
    verdict: str
    max_offset_s: float
    model: str
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for a person."""
        if self.offset_s is None:
            return f"verdict: {self.verdict} (no speech with a face to measure)"
        drift = "" if self.drift_s_per_min is None else (
            f", drift {1000 * self.drift_s_per_min:+.0f} ms/min "
            f"({1000 * self.drift_s_per_min * self.duration_s / 60:+.0f} ms over the clip)"
        )
        worst = "" if self.worst_offset_s is None else f", worst window {1000 * self.worst_offset_s:+.0f} ms"
        return (
            f"verdict: {self.verdict} (ITU-R BT.1359); offset {1000 * self.offset_s:+.0f} ms "
            f"(audio {'late' if self.offset_s >= 0 else 'early'}), confidence {self.confidence:.2f}{drift}{worst}"
        )

    def to_json(self) -> dict:
        """A JSON-ready report; offsets in ms, > 0 meaning the audio lags the lips."""
        return {
            "summary": self.summary(),
            "verdict": self.verdict,
            "offset_ms": None if self.offset_s is None else round(1000 * self.offset_s, 1),
            "confidence": round(self.confidence, 3),
            "drift_ms_per_min": None if self.drift_s_per_min is None else round(1000 * self.drift_s_per_min, 1),
            "drift_start_ms": None if self.drift_start_s is None else round(1000 * self.drift_start_s, 1),
            "worst_offset_ms": None if self.worst_offset_s is None else round(1000 * self.worst_offset_s, 1),
            "duration_s": round(self.duration_s, 3),
            "sign": "offset > 0: the audio is late (lags the lips)",
            "bt1359_ms": {"detectability": [round(1000 * t) for t in DETECTABILITY_S],
                          "acceptability": [round(1000 * t) for t in ACCEPTABILITY_S]},
            "max_offset_ms": round(1000 * self.max_offset_s),
            "min_confidence": MIN_CONFIDENCE,
            "model": self.model,
            "warnings": list(self.warnings),
            "windows": [w.to_json() for w in self.windows],
        }


def verdict_of(offset_s: float | None) -> str:
    """The ITU-R BT.1359 class of one offset (s, > 0: audio late)."""
    if offset_s is None or not np.isfinite(offset_s):
        return "unknown"
    if DETECTABILITY_S[0] <= offset_s <= DETECTABILITY_S[1]:
        return "in sync"
    if ACCEPTABILITY_S[0] <= offset_s <= ACCEPTABILITY_S[1]:
        return "detectable"
    return "unacceptable"


@dataclass(frozen=True)
class LagScores:
    """Weighted lip-audio similarity per lip frame and lag, summed cumulatively for fast windows.

    lags : [shape=(n_lags,)] int, audio frames (1 / FEATURE_RATE s) of delay tried
    times : [shape=(n_lips,)] picture time of each lip frame (s)
    num : [shape=(n_lips + 1, n_lags)] running sum over lip frames of weight * cosine
    den : [shape=(n_lips + 1, n_lags)] running sum of the weights (speech activity, face present)
    """

    lags: np.ndarray
    times: np.ndarray
    num: np.ndarray
    den: np.ndarray

    def curve(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean similarity per lag, weight per lag) over lip frames lo..hi-1."""
        num = self.num[hi] - self.num[lo]
        den = self.den[hi] - self.den[lo]
        return num / np.maximum(den, 1e-9), den


def lag_scores(
    video: np.ndarray, times: np.ndarray, valid: np.ndarray, audio: np.ndarray, weight: np.ndarray, max_lag: int
) -> LagScores:
    """Similarities of the lips at each of their frames with the audio ``lag`` frames later.

    The lips are compared at their own frames (no interpolation between them), the audio, dense at
    FEATURE_RATE, at the frame's time plus the lag (interpolated when that falls between audio
    frames). Only lip frames that have audio at every lag take part, so that every lag averages
    over the same frames: were the frames near the audio's ends dropped for some lags only, which
    speech each lag sees would change with the lag, and on a 3 s clip the peak moved by up to 35 ms
    as the same audio was shifted by 100 ms. With this, shifting the audio moves only the peak.

    video : [shape=(n_lips, E)] unit lip embeddings at picture ``times`` [shape=(n_lips,)] (s)
    valid : [shape=(n_lips,)] bool, lip frames showing the face
    audio : [shape=(n_audio, E)] unit audio embeddings, frame j at j / FEATURE_RATE s
    weight : [shape=(n_audio,)] weight of each audio frame (its speech activity)
    """
    lags = np.arange(-max_lag, max_lag + 1)
    n_a = len(audio)
    num = np.zeros((len(times) + 1, len(lags)))
    den = np.zeros((len(times) + 1, len(lags)))
    base = seconds_to_frames(times)
    inside = valid & (base - max_lag >= 0) & (base + max_lag <= n_a - 1)
    for i, lag in enumerate(lags):
        pos = base + lag
        j0 = np.clip(np.floor(pos + 1e-6).astype(int), 0, n_a - 1)
        j1 = np.minimum(j0 + 1, n_a - 1)
        f = np.clip(pos - j0, 0.0, 1.0)[:, None]
        a = audio[j0] * (1 - f) + audio[j1] * f
        a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-8
        w = np.where(inside, weight[j0] * (1 - f[:, 0]) + weight[j1] * f[:, 0], 0.0)
        num[1:, i] = w * np.einsum("ne,ne->n", a, video)
        den[1:, i] = w
    return LagScores(lags=lags, times=times, num=np.cumsum(num, axis=0), den=np.cumsum(den, axis=0))


def peak_offset(
    curve: np.ndarray, observations: float, lags: np.ndarray, usable: np.ndarray | None = None
) -> tuple[float, float]:
    """(offset in s, confidence) at the peak of a mean-similarity curve over ``lags``.

    observations : how many independent observations stand behind the curve (s of speech /
    EVIDENCE_S). The curve becomes a posterior over lags, a softmax of
    observations * curve / LIP_TEMPERATURE; the confidence is its mass within
    CONFIDENCE_TOLERANCE_S of the peak. usable : [shape=curve.shape] bool, lags that may win.
    """
    usable = np.ones(len(curve), bool) if usable is None else usable
    masked = np.where(usable, curve, -np.inf)
    i = int(np.argmax(masked))
    delta = 0.0
    if 0 < i < len(curve) - 1 and usable[i - 1] and usable[i + 1]:  # a parabola through the peak
        a, b, c = curve[i - 1], curve[i], curve[i + 1]
        denom = a - 2 * b + c
        if denom < 0:
            delta = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    logp = masked * observations / LIP_TEMPERATURE
    p = np.exp(logp - logp[i])
    p /= p.sum()
    near = np.abs(lags - (lags[i] + delta)) <= seconds_to_frames(CONFIDENCE_TOLERANCE_S)
    return float(frames_to_seconds(lags[i] + delta)), float(p[near].sum())


def fill_digital_silence(mel: np.ndarray) -> np.ndarray:
    """Frames of digital silence raised to the clip's own quiet level, band by band.

    A laid dub often has long stretches of exact zeros around its lines; their log-mel sits far
    below any room tone and skews the per-utterance normalisation the audio encoder relies on.
    Filled with the 10th percentile of the other frames, they read as the pause they are. (On the
    dev clips shifted by up to 200 ms, with zeros filling the gap, the filled frames halved how far
    the measured offset strays from the shift: median 0.6 to 0.3 ms; a small effect there, with at
    most 0.2 s of zeros.)
    mel : [shape=(n_frames, N_MELS)] raw log-mel; returns the same shape.
    """
    silent = mel.max(axis=1) < np.log(LOG_FLOOR) + DIGITAL_SILENCE_DB / 10 * np.log(10)
    if not silent.any() or silent.all():
        return mel
    floor = np.percentile(mel[~silent], 10, axis=0)
    return np.where(silent[:, None], floor[None, :], mel).astype(mel.dtype)


def window_bounds(duration: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Windows of ``window_s`` every ``hop_s`` covering [0, duration]; the last one ends at the end.

    A clip shorter than one and a half windows is one window.
    """
    if duration <= 1.5 * window_s:
        return [(0.0, duration)]
    starts = list(np.arange(0.0, duration - window_s + 1e-9, hop_s))
    if starts[-1] + window_s < duration - 1e-6:
        starts.append(duration - window_s)
    return [(float(s), float(s + window_s)) for s in starts]


def fit_drift(windows: list[WindowOffset]) -> tuple[float, float] | None:
    """(offset at time 0 in s, drift in s per s) of a confidence-weighted line through trusted windows.

    Windows further than DRIFT_OUTLIER_S from the line are dropped and the line refitted (twice at
    most). None when fewer than MIN_DRIFT_WINDOWS trusted windows span MIN_DRIFT_SPAN_S.
    """
    pts = [(w.time_s, w.offset_s, w.confidence) for w in windows if w.trusted]
    if len(pts) < MIN_DRIFT_WINDOWS:
        return None
    t, y, c = (np.array(v, float) for v in zip(*pts, strict=True))
    keep = np.ones(len(t), bool)
    for _ in range(3):
        if keep.sum() < MIN_DRIFT_WINDOWS or np.ptp(t[keep]) < MIN_DRIFT_SPAN_S:
            return None
        slope, intercept = np.polyfit(t[keep], y[keep], 1, w=np.sqrt(c[keep]))
        outliers = np.abs(y - (intercept + slope * t)) > DRIFT_OUTLIER_S
        if not (outliers & keep).any():
            break
        keep &= ~outliers
    return float(intercept), float(slope)


def check_options(*, window_s: float, hop_s: float, max_offset_s: float) -> None:
    """Raise ParameterError for windows or a search range :func:`check_sync` cannot use."""
    if not 0.5 <= window_s <= 60.0:
        raise ParameterError(f"the window must be between 0.5 and 60 s, not {window_s:g}")
    if not 0.0 < hop_s <= window_s:
        raise ParameterError(f"the hop must be above 0 and at most the window ({window_s:g} s), not {hop_s:g}")
    if not 0.05 <= max_offset_s <= 5.0:
        raise ParameterError(f"the largest offset searched must be between 0.05 and 5 s, not {max_offset_s:g}")


def check_sync(
    picture: PictureAnalysis | LipTrack,
    audio_y16: np.ndarray | None = None,
    *,
    model: LipSyncModel | None = None,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
    max_offset_s: float = MAX_OFFSET_S,
) -> SyncCheck:
    """Measure how far ``audio_y16`` is from the lips of ``picture``, window by window.

    picture : a PictureAnalysis (``analyze_picture``) or its LipTrack
    audio_y16 : mono float32 at ANALYSIS_SR laid against the picture from time 0; None: the
        picture's own audio (a PictureAnalysis with an audio track)
    model : the lip model (default: the shipped one)
    """
    check_options(window_s=window_s, hop_s=hop_s, max_offset_s=max_offset_s)
    track = picture if isinstance(picture, LipTrack) else picture.track
    if audio_y16 is None:
        audio_y16 = None if isinstance(picture, LipTrack) else picture.audio
        if audio_y16 is None:
            raise MediaError("the picture has no audio track: give the audio to check with --audio FILE")
    if len(audio_y16) == 0 or not np.any(audio_y16):
        raise MediaError("the audio to check is silent: nothing to measure")
    if not track.present.any():
        raise AlignmentError("no face found in the picture: the sync cannot be checked from the lips")
    if model is None:
        from .pipeline import load_lip_model  # the pipeline loads only when a check runs

        model = load_lip_model()

    from .model import VIDEO_RATE, video_grid

    mel = fill_digital_silence(log_mel(audio_y16))
    audio = model.embed_audio(mel)
    weight = speech_activity(audio_y16)[: len(audio)].astype(np.float64)
    duration = float(picture.duration) if not isinstance(picture, LipTrack) else float(track.times[-1]) + (
        float(np.median(np.diff(track.times))) if track.n_frames > 1 else 1.0 / VIDEO_RATE
    )
    # the lips at the model's own frames: its embeddings are exact there, interpolations between
    t0 = float(track.times[0])
    times = t0 + video_grid(float(track.times[-1]) - t0)
    video = model.embed_video(track, times=times)
    valid = frame_validity(track, times)
    # a short clip would keep few lip frames with audio at every lag: search less far, keep half
    overlap = min(duration, len(audio) / FEATURE_RATE) - t0
    search_s = min(max_offset_s, max(MIN_SEARCH_S, overlap / 4))
    scores = lag_scores(video, times, valid, audio, weight, int(round(seconds_to_frames(search_s))))
    min_weight = MIN_SPEECH_S * VIDEO_RATE  # lip frames of full speech
    # running sums for each window's speech-weighted centre (at lag 0)
    w0 = scores.den[1:, len(scores.lags) // 2] - scores.den[:-1, len(scores.lags) // 2]
    cum_w = np.r_[0.0, np.cumsum(w0)]
    cum_wt = np.r_[0.0, np.cumsum(w0 * times)]

    def measure(lo: int, hi: int) -> tuple[float | None, float, float]:
        curve, den = scores.curve(lo, hi)
        # lags that keep too little of the window's speech overlapping the lips are not trusted to win
        usable = den >= max(min_weight, USABLE_OVERLAP * float(den.max()))
        if not usable.any():
            return None, 0.0, float(den.max()) / VIDEO_RATE
        speech_s = float(np.median(den[usable])) / VIDEO_RATE
        offset, conf = peak_offset(curve, speech_s / EVIDENCE_S, scores.lags, usable)
        return offset, conf, speech_s

    overall, overall_conf, _ = measure(0, len(times))
    windows = []
    for start, end in window_bounds(duration, window_s, hop_s):
        lo, hi = np.searchsorted(times, [start, end])
        offset, conf, speech = measure(lo, hi)
        w_sum = cum_w[hi] - cum_w[lo]
        centre = (cum_wt[hi] - cum_wt[lo]) / w_sum if w_sum > 0 else (start + end) / 2
        windows.append(WindowOffset(start_s=start, end_s=end, time_s=float(centre), offset_s=offset,
                                    confidence=conf, speech_s=speech))

    line = fit_drift(windows)
    trusted = [w.offset_s for w in windows if w.trusted]
    if not trusted and overall is not None and overall_conf >= MIN_CONFIDENCE:
        trusted = [overall]
    worst = max(trusted, key=_badness) if trusted else None
    warnings = []
    if search_s < max_offset_s:
        warnings.append(f"the clip is short: offsets searched to +-{1000 * search_s:.0f} ms only")
    if overall is not None and abs(overall) >= search_s - 1.5 / FEATURE_RATE:
        warnings.append(
            f"the best offset lies at the edge of the search (+-{1000 * search_s:.0f} ms): the true "
            "offset may be larger" + ("; check with a larger --max-offset" if search_s == max_offset_s else "")
        )
    if windows and not any(w.trusted for w in windows):
        warnings.append("no window could be measured with confidence: check the sync by eye")
    lost = 1.0 - float(track.present.mean())
    if lost > 0.1:
        warnings.append(f"face lost in {100 * lost:.0f}% of frames: those spans are not measured")
    return SyncCheck(
        duration_s=duration, windows=tuple(windows), offset_s=overall, confidence=overall_conf,
        drift_s_per_min=None if line is None else 60.0 * line[1], drift_start_s=None if line is None else line[0],
        worst_offset_s=worst,
        verdict=verdict_of(worst), max_offset_s=search_s, model=getattr(model, "name", str(model)),
        warnings=tuple(warnings),
    )


def _badness(offset_s: float) -> float:
    """Where an offset lies against BT.1359: below 0 inside the detectability window (nearer 0
    nearer its edge), 0..1 detectable, above 1 unacceptable."""
    lo, hi = DETECTABILITY_S
    return max((lo - offset_s) / (lo - ACCEPTABILITY_S[0]), (offset_s - hi) / (ACCEPTABILITY_S[1] - hi))
