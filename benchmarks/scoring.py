"""The benchmark's scorer (BENCHMARK.md): where the speech of an output sits, against the lips.

Scores come from the output audio alone, never from a method's claimed map: for warped cases,
every 40 ms of speech the output is searched (+-1 s) for a 300 ms log-mel patch of the reference
speech under the lips; for re-performance cases each dub word is searched in the output near its
place under the lips. Error ``e > 0`` means the audio is late.

The scorer keeps its own audio reader, log-mel and speech detector on purpose, with names of its
own (:func:`read_scoring_audio`, :func:`scorer_log_mel_db`, :func:`scorer_speech_mask`) rather
than ``dubalign.media`` / ``dubalign.audio``: a change to the features of the code under test
must not move the ruler it is measured with. They differ from the package's on purpose too (dB
floored below the peak, not the model's normalised log-mel; a plain energy detector).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import librosa
import numpy as np
import soundfile as sf

from dubalign.errors import MediaError
from dubalign.units import ANALYSIS_SR, FEATURE_RATE, MEL_HOP, MEL_NFFT, MEL_WIN, N_MELS, frames_to_seconds

if TYPE_CHECKING:
    from .cases import Case, Word

# --- the protocol (BENCHMARK.md) --------------------------------------------------------------
INSYNC_MS = (-45.0, 125.0)  # ITU-R BT.1359 detectability: audio may lead 45 ms, lag 125 ms
ACCEPTABLE_MS = (-90.0, 185.0)  # ITU-R BT.1359 acceptability
TIGHT_MS = 22.0  # half a frame at 24 fps

# --- the scorer -------------------------------------------------------------------------------
SCORE_STEP_S = 0.04  # one warped-case measurement every 40 ms of speech
PATCH_S = 0.3  # length of the reference log-mel patch searched for in the output
SEARCH_S = 1.0  # search +-1 s; beyond that a moment counts as not found
MIN_CORR = 0.5  # below this normalised correlation a moment/word counts as not found
MIN_WORD_S = 0.12  # shorter word templates are widened to this, centred on the word
WORD_SCALES = (0.75, 0.87, 1.0, 1.15, 1.3)  # time scales tried for a word template
LOG_FLOOR_DB = 80.0  # log-mel floor below each signal's peak
VAD_RANGE_DB = 35.0  # speech is louder than (peak - this) ...
VAD_NOISE_FRACTION = 0.35  # ... and this fraction of the way from noise floor to peak
VAD_MIN_GAP_S = 0.1  # shorter silences inside speech are filled
VAD_MIN_SPEECH_S = 0.06  # shorter speech blobs are dropped


# ============================================================================================
# The scorer's own audio reading and features
# ============================================================================================


def read_scoring_audio(path: str | Path, sr: int) -> np.ndarray:
    """The first audio stream of a media file, mono, resampled to ``sr`` (PyAV; no ffmpeg).

    Returns
    -------
    y : np.ndarray [shape=(n_samples,)] float32
    """
    path = Path(path)
    if path.suffix.lower() in (".wav", ".flac"):
        y, file_sr = sf.read(path, dtype="float32", always_2d=True)
        return resample(y.mean(axis=1), file_sr, sr)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path} has no audio track")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            chunks = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot decode audio of {path}: {exc}") from exc
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate(chunks).astype(np.float32)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """``y`` [shape=(n_samples,)] from ``sr_in`` to ``sr_out`` (soxr), float32."""
    y = np.asarray(y, np.float32)
    if sr_in == sr_out or len(y) == 0:
        return y
    return librosa.resample(y, orig_sr=sr_in, target_sr=sr_out, res_type="soxr_hq").astype(np.float32)


def mono(y: np.ndarray) -> np.ndarray:
    """``y`` [shape=(n_samples,) or (n_samples, n_channels)] as one float32 channel."""
    y = np.asarray(y, np.float32)
    return y.mean(axis=1) if y.ndim == 2 else y


def scorer_log_mel_db(y: np.ndarray, sr: int) -> np.ndarray:
    """Log-mel of ``y`` at FEATURE_RATE, frame k centred at k / FEATURE_RATE seconds.

    Returns
    -------
    S : np.ndarray [shape=(n_frames, N_MELS)] float32, dB, floored LOG_FLOOR_DB below the peak
    """
    y16 = resample(np.asarray(y, np.float32), sr, ANALYSIS_SR)
    if len(y16) == 0:
        return np.zeros((0, N_MELS), np.float32)
    mel = librosa.feature.melspectrogram(
        y=y16,
        sr=ANALYSIS_SR,
        n_fft=MEL_NFFT,
        hop_length=MEL_HOP,
        win_length=MEL_WIN,
        n_mels=N_MELS,
        center=True,
    )
    db = 10 * np.log10(np.maximum(mel, 1e-12))
    return np.maximum(db, db.max() - LOG_FLOOR_DB).T.astype(np.float32)


def scorer_speech_mask(y16: np.ndarray) -> np.ndarray:
    """Energy speech detector on a clean 16 kHz signal, one decision per feature frame.

    Returns
    -------
    mask : np.ndarray [shape=(n_frames,)] bool
    """
    if len(y16) == 0:
        return np.zeros(0, bool)
    rms = librosa.feature.rms(y=y16, frame_length=MEL_WIN, hop_length=MEL_HOP, center=True)[0]
    db = 20 * np.log10(np.maximum(rms, 1e-8))
    floor, peak = np.percentile(db, 10), np.percentile(db, 99)
    thr = max(peak - VAD_RANGE_DB, floor + VAD_NOISE_FRACTION * (peak - floor))
    mask = db > thr
    return _drop_short(~_drop_short(~mask, VAD_MIN_GAP_S), VAD_MIN_SPEECH_S)


def _drop_short(mask: np.ndarray, min_s: float) -> np.ndarray:
    """Clear runs of True shorter than ``min_s``."""
    out = mask.copy()
    n_min = int(round(min_s * FEATURE_RATE))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a < n_min:
            out[a:b] = False
    return out


# ============================================================================================
# Errors and metrics
# ============================================================================================


@dataclass(frozen=True)
class Score:
    """Per-measurement errors of one output.

    errors_ms : np.ndarray [shape=(n,)] output time minus lips time (ms), NaN where not found
    weights : np.ndarray [shape=(n,)] speech seconds each measurement stands for
    """

    errors_ms: np.ndarray
    weights: np.ndarray

    def metrics(self) -> Metrics:
        return Metrics.from_errors(self.errors_ms, self.weights)


@dataclass(frozen=True)
class Metrics:
    """BENCHMARK.md metrics over some speech. Percentages of speech time; ms over found speech."""

    insync_pct: float
    acceptable_pct: float
    tight_pct: float
    median_abs_ms: float
    p95_abs_ms: float
    unlocated_pct: float
    speech_s: float

    @classmethod
    def from_errors(cls, errors_ms: np.ndarray, weights: np.ndarray) -> Metrics:
        e = np.asarray(errors_ms, float)
        w = np.asarray(weights, float)
        total = w.sum()
        if total <= 0:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, nan, 0.0)
        found = np.isfinite(e)
        ef = np.where(found, e, np.inf)

        def share(ok: np.ndarray) -> float:
            return round(float(100 * w[ok & found].sum() / total), 2)

        # |e| percentiles over all speech: moments not found count as infinitely far off
        order = np.argsort(np.abs(ef))
        cum = np.cumsum(w[order]) / total
        abs_sorted = np.abs(ef[order])

        def pct(q: float) -> float:
            v = abs_sorted[min(np.searchsorted(cum, q), len(cum) - 1)]
            return round(float(v), 2) if np.isfinite(v) else float("inf")

        return cls(
            insync_pct=share((ef >= INSYNC_MS[0]) & (ef <= INSYNC_MS[1])),
            acceptable_pct=share((ef >= ACCEPTABLE_MS[0]) & (ef <= ACCEPTABLE_MS[1])),
            tight_pct=share(np.abs(ef) <= TIGHT_MS),
            median_abs_ms=pct(0.5),
            p95_abs_ms=pct(0.95),
            unlocated_pct=round(float(100 * w[~found].sum() / total), 2),
            speech_s=round(float(total), 3),
        )


def pool(scores: Sequence[Score]) -> Metrics:
    """Metrics over the speech of several outputs together (speech-time weighted)."""
    if not scores:
        return Metrics.from_errors(np.zeros(0), np.zeros(0))
    return Metrics.from_errors(
        np.concatenate([s.errors_ms for s in scores]), np.concatenate([s.weights for s in scores])
    )


# ============================================================================================
# Locating speech in an output
# ============================================================================================


def _normalise(patch: np.ndarray) -> np.ndarray | None:
    """Per-band mean removed (a room's EQ is a per-band offset in dB), unit norm; None if flat."""
    p = patch - patch.mean(axis=0, keepdims=True)
    norm = np.sqrt(np.sum(p * p))
    return None if norm < 1e-6 else p / norm


def _search(template: np.ndarray, target: np.ndarray, centre: int, radius: int) -> tuple[float, float]:
    """Best match of ``template`` (centred) around frame ``centre`` of ``target``.

    template : np.ndarray [shape=(L, N_MELS)] already normalised
    target : np.ndarray [shape=(n_frames, N_MELS)]
    Returns (lag in fractional frames, correlation); lag NaN when the peak sits on the search
    edge (the true place is further away than the search reaches).
    """
    length = len(template)
    half = length // 2
    pad = radius + length
    floor = target.min() if len(target) else 0.0
    tp = np.pad(target, ((pad, pad), (0, 0)), constant_values=floor)
    first = centre - half - radius + pad
    win = np.lib.stride_tricks.sliding_window_view(tp[first : first + 2 * radius + length], length, axis=0)
    win = win.transpose(0, 2, 1)  # (n_lags, L, N_MELS)
    win = win - win.mean(axis=1, keepdims=True)
    num = np.einsum("lfm,fm->l", win, template)
    den = np.sqrt(np.einsum("lfm,lfm->l", win, win))
    corr = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)[: 2 * radius + 1]
    k = int(np.argmax(corr))
    best = float(corr[k])
    if k == 0 or k == len(corr) - 1:
        return float("nan"), best
    c0, c1, c2 = corr[k - 1], corr[k], corr[k + 1]
    den2 = c0 - 2 * c1 + c2
    delta = 0.5 * (c0 - c2) / den2 if den2 < 0 else 0.0
    return k - radius + float(np.clip(delta, -0.5, 0.5)), best


def score_warped(output: np.ndarray, sr: int, ref: np.ndarray, ref_sr: int, *, min_corr: float = MIN_CORR) -> Score:
    """Score an output (on the picture timeline) against the speech under the lips.

    output : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    ref : np.ndarray [shape=(n_ref,)] the clean speech as it sits under the lips
    """
    out_mel = scorer_log_mel_db(mono(output), sr)
    ref16 = resample(mono(ref), ref_sr, ANALYSIS_SR)
    ref_mel = scorer_log_mel_db(ref16, ANALYSIS_SR)
    mask = scorer_speech_mask(ref16)
    step = int(round(SCORE_STEP_S * FEATURE_RATE))
    half = int(round(PATCH_S * FEATURE_RATE / 2))
    radius = int(round(SEARCH_S * FEATURE_RATE))
    floor = ref_mel.min() if len(ref_mel) else 0.0
    ref_pad = np.pad(ref_mel, ((half, half), (0, 0)), constant_values=floor)
    frames = [f for f in range(0, len(mask), step) if mask[f]]
    errors = np.full(len(frames), np.nan)
    for i, f in enumerate(frames):
        template = _normalise(ref_pad[f : f + 2 * half])
        if template is None:
            continue
        lag, corr = _search(template, out_mel, f, radius)
        if corr >= min_corr and np.isfinite(lag):
            errors[i] = float(frames_to_seconds(lag)) * 1000.0
    return Score(errors_ms=errors, weights=np.full(len(frames), SCORE_STEP_S))


def score_words(
    output: np.ndarray,
    sr: int,
    dub: np.ndarray,
    dub_sr: int,
    words_dub: Sequence[Word],
    words_pic: Sequence[Word],
    *,
    min_corr: float = MIN_CORR,
) -> Score:
    """Locate each dub word in the output and compare its centre with the word under the lips.

    Each word's template is tried at a few time scales (a renderer may stretch it).
    """
    out_mel = scorer_log_mel_db(mono(output), sr)
    dub_mel = scorer_log_mel_db(mono(dub), dub_sr)
    radius = int(round(SEARCH_S * FEATURE_RATE))
    errors = np.full(len(words_pic), np.nan)
    for i, (wd, wp) in enumerate(zip(words_dub, words_pic, strict=True)):
        length = max(wd.end - wd.start, MIN_WORD_S)
        a = int(round((wd.centre - length / 2) * FEATURE_RATE))
        b = int(round((wd.centre + length / 2) * FEATURE_RATE))
        base = _take(dub_mel, a, b)
        best_corr, best_lag = -1.0, float("nan")
        for scale in WORD_SCALES:
            n = max(3, int(round(len(base) * scale)))
            x = np.linspace(0, len(base) - 1, n)
            scaled = np.stack([np.interp(x, np.arange(len(base)), base[:, m]) for m in range(N_MELS)], 1)
            template = _normalise(scaled)
            if template is None:
                continue
            lag, corr = _search(template, out_mel, int(round(wp.centre * FEATURE_RATE)), radius)
            if corr > best_corr:
                best_corr, best_lag = corr, lag
        if best_corr >= min_corr and np.isfinite(best_lag):
            # template centre sits at lips centre + lag (rounding of the centre frame undone)
            centre_frame = int(round(wp.centre * FEATURE_RATE))
            located = float(frames_to_seconds(centre_frame + best_lag))
            errors[i] = (located - wp.centre) * 1000.0
    weights = np.array([w.end - w.start for w in words_pic])
    return Score(errors_ms=errors, weights=weights)


def _take(mel: np.ndarray, a: int, b: int) -> np.ndarray:
    """Frames ``a:b`` of ``mel``, padded with its floor where they fall outside it."""
    floor = mel.min() if len(mel) else 0.0
    pad = max(0, -a, b - len(mel))
    padded = np.pad(mel, ((pad, pad), (0, 0)), constant_values=floor)
    return padded[a + pad : b + pad]


def score_case(case: Case, output: np.ndarray, sr: int, *, cache: dict | None = None) -> Score:
    """Score ``output`` (on the picture timeline) for ``case`` (either kind).

    cache : a dict kept across outputs of the same case, so that its reference is read once.
    """
    cache = {} if cache is None else cache
    if case.kind == "warped":
        if "ref" not in cache:
            cache["ref"] = sf.read(case.ref_path, dtype="float32", always_2d=True)
        ref, ref_sr = cache["ref"]
        return score_warped(output, sr, ref, ref_sr)
    if "dub" not in cache:
        cache["dub"] = sf.read(case.dub_path, dtype="float32", always_2d=True)
    dub, dub_sr = cache["dub"]
    return score_words(output, sr, dub, dub_sr, case.truth.words_dub, case.truth.words_pic)
