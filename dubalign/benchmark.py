"""The alignment benchmark: case building, reference methods and scoring (BENCHMARK.md).

A *case* is a folder on disk, in the same layout as the independent scorer's cases so that either
tool can score the other's outputs::

    dub.wav          the dub (48 kHz / 24-bit), to be aligned
    ref.wav          the picture's own clean speech, on the picture's timeline
    pic_clean.mkv    picture + its own audio
    pic_noisy.mkv    picture + its audio under babble at -5 dB SNR
    pic_mute.mkv     picture, no audio track
    truth.json       the exact answer (see :class:`Truth`)

Two kinds of case: *warped* (the clip's own speech re-timed by a smooth random warp, shifted and
re-recorded through another room; the truth is the map dub time -> picture time) and
*reperformance* (a GRID sentence said again with every word taken from another take, new pauses
between words; the truth is the word intervals in the dub and in the picture).

Scores come from the output audio alone, never from a method's claimed map: for warped cases,
every 40 ms of speech the output is searched (+-1 s) for a 300 ms log-mel patch of the reference
speech under the lips; for re-performance cases each dub word is searched in the output near its
place under the lips. Error ``e > 0`` means the audio is late.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import librosa
import numpy as np
import scipy.signal
import soundfile as sf

from dubalign.errors import MediaError, ParameterError
from dubalign.units import (
    ANALYSIS_SR,
    FEATURE_RATE,
    MEL_HOP,
    MEL_NFFT,
    MEL_WIN,
    N_MELS,
    frames_to_seconds,
    seconds_to_samples,
)

# --- the protocol (BENCHMARK.md) --------------------------------------------------------------
INSYNC_MS = (-45.0, 125.0)  # ITU-R BT.1359 detectability: audio may lead 45 ms, lag 125 ms
ACCEPTABLE_MS = (-90.0, 185.0)  # ITU-R BT.1359 acceptability
TIGHT_MS = 22.0  # half a frame at 24 fps
CONDITIONS = ("clean", "noisy", "mute")  # the picture's audio: own speech, under babble, none
KINDS = ("warped", "reperformance")

DUB_SR = 48000  # Hz: the dub as delivered by a studio
DUB_SUBTYPE = "PCM_24"
PICTURE_AUDIO_SR = 48000  # Hz: the audio track muxed into the case pictures

WARP_RATE_RANGE = (0.72, 1.38)  # local dub-seconds per picture-second of the random warp
WARP_SEGMENT_S = (0.25, 0.9)  # the local rate changes after a random span in this range
WARP_SMOOTH_S = 0.08  # the piecewise-constant rate is smoothed over this window
WARP_OFFSET_S = (-0.5, 0.8)  # dub time of picture time 0
WARP_KNOT_S = 0.01  # spacing of the truth map's knots
STRETCH_KEY_S = 0.04  # spacing of the key frames handed to rubberband when building the dub
DUB_TAIL_S = 0.3  # room tone after the last word of a built dub
HISS_SNR_DB = 35.0  # the dub's room hiss below its speech
BABBLE_SNR_DB = -5.0  # the noisy picture: its speech this far below the babble
BABBLE_TALKERS = 4  # clips summed into babble

REPERF_LEAD_S = (0.15, 0.6)  # silence before the first word of a re-performance
REPERF_PAUSE_S = (0.04, 0.35)  # new pause between two words
WORD_FADE_S = 0.005  # fade in/out of each word cut from its take
GRID_TICKS_PER_S = 25000  # GRID .align times are in 1/25000 s
GRID_SILENCES = ("sil", "sp")

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

METHODS = ("dubalign", "dubalign-lips", "none", "oracle-shift", "guide-dtw", "true-warp")
PICTURE_INDEPENDENT = ("none", "oracle-shift", "true-warp")  # do not read the picture
GUIDE_MFCC = 20  # MFCCs of the guide-DTW reference (c0 dropped)
CASE_FORMAT = 2  # bump when case building changes, so that cached cases are rebuilt


# ============================================================================================
# Truth and cases
# ============================================================================================


@dataclass(frozen=True)
class Word:
    """One word: interval in seconds and its text."""

    start: float
    end: float
    text: str

    @property
    def centre(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass(frozen=True)
class Truth:
    """The exact answer of a case.

    pic_t, dub_t : np.ndarray [shape=(n_knots,)] the map dub time -> picture time (seconds),
        both increasing; piecewise linear, slope 1 outside the knots.
    words_dub, words_pic : the words in the dub and under the lips (re-performance only; empty for
        warped cases, where every moment of speech is checked instead).
    """

    kind: str
    picture_duration: float
    pic_t: np.ndarray
    dub_t: np.ndarray
    words_dub: tuple[Word, ...] = ()
    words_pic: tuple[Word, ...] = ()
    clip: str = ""

    def to_dub(self, pic_times) -> np.ndarray:
        return _interp_slope1(np.asarray(pic_times, float), self.pic_t, self.dub_t)

    def to_picture(self, dub_times) -> np.ndarray:
        return _interp_slope1(np.asarray(dub_times, float), self.dub_t, self.pic_t)

    def to_json(self) -> dict:
        out = {
            "clip": self.clip,
            "kind": self.kind,
            "picture_duration": self.picture_duration,
            "pic_t": [round(float(t), 6) for t in self.pic_t],
            "dub_t": [round(float(t), 6) for t in self.dub_t],
        }
        if self.words_dub:
            out["words_dub"] = [[w.start, w.end, w.text] for w in self.words_dub]
            out["words_pic"] = [[w.start, w.end, w.text] for w in self.words_pic]
        return out

    @classmethod
    def from_json(cls, d: dict) -> Truth:
        words_dub = tuple(Word(float(a), float(b), str(c)) for a, b, c in d.get("words_dub", []))
        words_pic = tuple(Word(float(a), float(b), str(c)) for a, b, c in d.get("words_pic", []))
        kind = d.get("kind", "reperformance" if words_dub else "warped")
        return cls(
            kind="reperformance" if kind.startswith("reperf") else "warped",
            picture_duration=float(d["picture_duration"]),
            pic_t=np.asarray(d["pic_t"], float),
            dub_t=np.asarray(d["dub_t"], float),
            words_dub=words_dub,
            words_pic=words_pic,
            clip=str(d.get("clip", "")),
        )


def _interp_slope1(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation; outside the knots, slope 1 from the end knots."""
    y = np.interp(x, xp, fp)
    y = np.where(x < xp[0], fp[0] + (x - xp[0]), y)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]), y)


@dataclass(frozen=True)
class Case:
    """A benchmark case folder (see the module docstring for its files)."""

    name: str
    path: Path
    truth: Truth

    @property
    def kind(self) -> str:
        return self.truth.kind

    @property
    def dub_path(self) -> Path:
        return self.path / "dub.wav"

    @property
    def ref_path(self) -> Path:
        return self.path / "ref.wav"

    def picture(self, condition: str) -> Path:
        if condition not in CONDITIONS:
            raise ParameterError(f"unknown condition {condition!r}; use one of {CONDITIONS}")
        return self.path / f"pic_{condition}.mkv"


def load_case(path: str | Path) -> Case:
    """Read a case folder (this module's or the independent scorer's)."""
    path = Path(path)
    truth_path = path / "truth.json"
    if not truth_path.is_file():
        raise MediaError(f"{path} is not a benchmark case (no truth.json); build it first")
    truth = Truth.from_json(json.loads(truth_path.read_text()))
    return Case(name=path.name, path=path, truth=truth)


def find_cases(root: str | Path) -> list[Case]:
    """Every case folder directly under ``root``, sorted by name."""
    root = Path(root)
    return [load_case(p) for p in sorted(root.iterdir()) if (p / "truth.json").is_file()]


# ============================================================================================
# Media helpers (PyAV; no external ffmpeg)
# ============================================================================================


def decode_audio(path: str | Path, sr: int) -> np.ndarray:
    """The first audio stream of a media file, mono, resampled to ``sr``.

    Returns
    -------
    y : np.ndarray [shape=(n_samples,)] float32
    """
    path = Path(path)
    if path.suffix.lower() in (".wav", ".flac"):
        y, file_sr = sf.read(path, dtype="float32", always_2d=True)
        return _resample(y.mean(axis=1), file_sr, sr)
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


def picture_duration(path: str | Path) -> float:
    """Duration of the video stream (first frame to the end of the last), from the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        times = [float(f.pts * f.time_base) for f in container.decode(video=0) if f.pts is not None]
    if not times:
        raise MediaError(f"{path} has no decodable video frames")
    return max(times) + 1.0 / rate - min(times)


def decode_time(path: str | Path) -> float:
    """Wall seconds to decode every video frame of ``path``: the floor of any aligner."""
    t0 = time.perf_counter()
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"
        for _ in container.decode(video=0):
            pass
    return time.perf_counter() - t0


def write_picture(source: str | Path, out_path: str | Path, audio: np.ndarray | None, sr: int):
    """Copy the video stream of ``source`` into ``out_path`` (Matroska) with a new audio track.

    audio : np.ndarray [shape=(n_samples,)] or None for a picture without audio.
    """
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.stem + ".tmp" + out_path.suffix)
    with av.open(str(source)) as src, av.open(str(tmp), "w", format="matroska") as dst:
        v_in = src.streams.video[0]
        v_out = dst.add_stream_from_template(v_in)
        a_out = None
        if audio is not None:
            a_out = dst.add_stream("flac", rate=sr, layout="mono")
        for packet in src.demux(v_in):
            if packet.size == 0:  # the demuxer's end-of-stream flush packet
                continue
            packet.stream = v_out
            dst.mux(packet)
        if a_out is not None:
            pcm = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
            pcm16 = np.round(pcm * 32767).astype(np.int16)
            block = 4096
            for i in range(0, len(pcm16), block):
                frame = av.AudioFrame.from_ndarray(pcm16[None, i : i + block], format="s16", layout="mono")
                frame.sample_rate = sr
                frame.pts = i
                frame.time_base = Fraction(1, sr)
                dst.mux(a_out.encode(frame))
            dst.mux(a_out.encode(None))
    tmp.replace(out_path)


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    y = np.asarray(y, np.float32)
    if sr_in == sr_out or len(y) == 0:
        return y
    return librosa.resample(y, orig_sr=sr_in, target_sr=sr_out, res_type="soxr_hq").astype(np.float32)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad ``y`` (time first) to ``n`` samples."""
    if len(y) >= n:
        return y[:n]
    pad = [(0, n - len(y))] + [(0, 0)] * (y.ndim - 1)
    return np.pad(y, pad)


def _write_wav(path: Path, y: np.ndarray, sr: int, subtype: str) -> None:
    tmp = path.with_name(path.stem + ".tmp.wav")
    sf.write(tmp, np.clip(y, -1.0, 1.0), sr, subtype=subtype)
    tmp.replace(path)


def _case_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, clip): a case does not change when other clips come or go."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# ============================================================================================
# Building cases
# ============================================================================================


def random_warp(
    duration: float, *, rng: np.random.Generator, offset: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random monotone map from picture time to dub time.

    Returns
    -------
    pic_t, dub_t : np.ndarray [shape=(n_knots,)] knots every ``WARP_KNOT_S`` from 0 to
        ``duration``; local slope in ``WARP_RATE_RANGE`` (before smoothing), ``dub_t[0]`` = offset.
    """
    n = int(math.ceil(duration / WARP_KNOT_S)) + 1
    pic_t = np.arange(n) * WARP_KNOT_S
    rate = np.empty(n)
    i = 0
    while i < n:
        span = int(round(rng.uniform(*WARP_SEGMENT_S) / WARP_KNOT_S))
        rate[i : i + span] = rng.uniform(*WARP_RATE_RANGE)
        i += span
    width = max(1, int(round(WARP_SMOOTH_S / WARP_KNOT_S)))
    rate = np.convolve(np.pad(rate, width, mode="edge"), np.ones(width) / width, "same")
    rate = rate[width:-width]
    if offset is None:
        offset = rng.uniform(*WARP_OFFSET_S)
    dub_t = offset + np.concatenate([[0.0], np.cumsum(rate[:-1]) * WARP_KNOT_S])
    return pic_t, dub_t


def room(y: np.ndarray, sr: int, *, rng: np.random.Generator) -> np.ndarray:
    """Re-record ``y`` through another room: EQ, short reverb, level, hiss at HISS_SNR_DB.

    y : np.ndarray [shape=(n_samples,)]
    """
    y = np.asarray(y, np.float64)
    # EQ: a random high-pass (mic/room rumble cut) and a low-pass (darker or brighter mic)
    hp = scipy.signal.butter(2, rng.uniform(80, 200), "highpass", fs=sr, output="sos")
    lp = scipy.signal.butter(2, rng.uniform(5000, 9000), "lowpass", fs=sr, output="sos")
    y = scipy.signal.sosfilt(lp, scipy.signal.sosfilt(hp, y))
    # short reverb: exponentially decaying noise, a small room (RT60 0.15..0.4 s)
    rt60 = rng.uniform(0.15, 0.4)
    n_ir = int(rt60 * sr)
    t = np.arange(n_ir) / sr
    ir = rng.standard_normal(n_ir) * 10 ** (-3 * t / rt60)
    ir[0] = 0.0
    ir *= rng.uniform(0.1, 0.3) / np.sqrt(np.sum(ir**2))
    ir[0] = 1.0
    y = scipy.signal.fftconvolve(y, ir)[: len(y)]
    y *= 10 ** (rng.uniform(-12, -4) / 20) / max(np.max(np.abs(y)), 1e-9)
    speech_power = np.mean(y[_speech_samples(y, sr)] ** 2) if len(y) else 0.0
    hiss = rng.standard_normal(len(y)) * np.sqrt(speech_power * 10 ** (-HISS_SNR_DB / 10))
    return (y + hiss).astype(np.float32)


def _speech_samples(y: np.ndarray, sr: int) -> np.ndarray:
    """Boolean mask of the samples of ``y`` inside speech (energy VAD at FEATURE_RATE)."""
    mask = speech_mask(_resample(np.asarray(y, np.float32), sr, ANALYSIS_SR))
    idx = np.minimum((np.arange(len(y)) * FEATURE_RATE) // sr, len(mask) - 1)
    return mask[idx] if len(mask) else np.zeros(len(y), bool)


def babble(n: int, sr: int, sources: Sequence[np.ndarray], *, rng: np.random.Generator) -> np.ndarray:
    """Sum of BABBLE_TALKERS talkers drawn from ``sources`` (mono at ``sr``), each looped from a
    random start and normalised to the same power. Returns [shape=(n,)] float32, unit RMS."""
    if not sources:
        raise ParameterError("babble needs at least one other clip; give more clips")
    out = np.zeros(n)
    for k in rng.choice(len(sources), size=BABBLE_TALKERS, replace=len(sources) < BABBLE_TALKERS):
        s = np.asarray(sources[k], np.float64)
        if len(s) == 0:
            continue
        s = np.roll(np.tile(s, n // len(s) + 2), -int(rng.integers(len(s))))[:n]
        out += s / max(np.sqrt(np.mean(s**2)), 1e-9)
    return (out / max(np.sqrt(np.mean(out**2)), 1e-9)).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, sr: int) -> np.ndarray:
    """``speech + g * noise`` with speech power (over its speech) ``snr_db`` above the noise."""
    mask = _speech_samples(speech, sr)
    p_speech = np.mean(speech[mask] ** 2) if mask.any() else np.mean(speech**2)
    g = np.sqrt(p_speech * 10 ** (-snr_db / 10) / max(np.mean(noise**2), 1e-12))
    y = speech + g * noise
    return (y / max(1.0, np.max(np.abs(y)) / 0.99)).astype(np.float32)


def _write_pictures(case_dir: Path, video: Path, ref: np.ndarray, babble_sources, rng: np.random.Generator) -> None:
    noise = babble(len(ref), PICTURE_AUDIO_SR, babble_sources, rng=rng)
    noisy = mix_at_snr(ref, noise, BABBLE_SNR_DB, PICTURE_AUDIO_SR)
    write_picture(video, case_dir / "pic_clean.mkv", ref, PICTURE_AUDIO_SR)
    write_picture(video, case_dir / "pic_noisy.mkv", noisy, PICTURE_AUDIO_SR)
    write_picture(video, case_dir / "pic_mute.mkv", None, PICTURE_AUDIO_SR)
    _write_wav(case_dir / "guide_noisy.wav", noisy, PICTURE_AUDIO_SR, "PCM_16")


def _stretch(y: np.ndarray, sr: int, src_t: np.ndarray, dst_t: np.ndarray) -> np.ndarray:
    """Time-stretch ``y`` so that source time ``src_t`` lands at ``dst_t`` (rubberband key
    frames, formant and pitch kept). Both start at 0. Independent of dubalign.render on purpose:
    the thing measured must not build its own test."""
    import pyrubberband

    n_in = len(y)
    n_tgt = int(round(dst_t[-1] * sr))
    step = max(1, int(round(STRETCH_KEY_S / np.median(np.diff(src_t)))))
    keys = sorted(
        {(min(int(round(s * sr)), n_in), int(round(d * sr))) for s, d in zip(src_t[::step], dst_t[::step], strict=True)}
    )
    keys = [k for k in keys if k[0] < n_in] + [(n_in, n_tgt)]
    out = pyrubberband.timemap_stretch(y, sr, keys, rbargs={"--fine": ""})
    return _fit(np.asarray(out, np.float32).reshape(len(out), -1).mean(axis=1), n_tgt)


def build_warped_case(
    clip: str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    babble_sources: Sequence[np.ndarray],
    babble_key: str = "",
) -> Case:
    """Build (or reuse) a warped-performance case for ``clip`` under ``out_dir/<clip stem>``.

    babble_sources : other clips' audio, mono at PICTURE_AUDIO_SR (for the noisy picture).
    babble_key : names where the babble came from; part of the cache stamp.
    """
    clip = Path(clip)
    case_dir = Path(out_dir) / clip.stem
    cached = _cached(case_dir, seed, babble_key)
    if cached is not None:
        return cached
    case_dir.mkdir(parents=True, exist_ok=True)
    rng = _case_rng(seed, clip.stem)
    duration = picture_duration(clip)
    ref = _fit(decode_audio(clip, PICTURE_AUDIO_SR), seconds_to_samples(duration, PICTURE_AUDIO_SR))
    pic_t, dub_t = random_warp(duration, rng=rng)
    # render the speech onto the dub timeline: source (picture) time -> target (dub) time
    start = dub_t[0]
    warped = _stretch(ref, PICTURE_AUDIO_SR, pic_t, dub_t - start)
    lead = seconds_to_samples(abs(start), PICTURE_AUDIO_SR)
    warped = np.concatenate([np.zeros(lead, np.float32), warped]) if start >= 0 else warped[lead:]
    warped = np.concatenate([warped, np.zeros(seconds_to_samples(DUB_TAIL_S, PICTURE_AUDIO_SR))])
    dub = room(_resample(warped, PICTURE_AUDIO_SR, DUB_SR), DUB_SR, rng=rng)
    truth = Truth(kind="warped", picture_duration=duration, pic_t=pic_t, dub_t=dub_t, clip=clip.name)
    _write_wav(case_dir / "dub.wav", dub, DUB_SR, DUB_SUBTYPE)
    _write_wav(case_dir / "ref.wav", ref, PICTURE_AUDIO_SR, "PCM_16")
    _write_pictures(case_dir, clip, ref, babble_sources, rng)
    return _finish(case_dir, truth, seed, babble_key)


def _stamp(seed: int, babble_key: str) -> dict:
    """What a cached case was built from; a different stamp rebuilds it."""
    return {"seed": seed, "format": CASE_FORMAT, "babble": babble_key}


def _cached(case_dir: Path, seed: int, babble_key: str = "") -> Case | None:
    stamp = case_dir / "built.json"
    if stamp.is_file() and (case_dir / "truth.json").is_file():
        if json.loads(stamp.read_text()) == _stamp(seed, babble_key):
            return load_case(case_dir)
    return None


def _finish(case_dir: Path, truth: Truth, seed: int, babble_key: str) -> Case:
    (case_dir / "truth.json").write_text(json.dumps(truth.to_json(), indent=1))
    (case_dir / "built.json").write_text(json.dumps(_stamp(seed, babble_key)))
    return load_case(case_dir)


def read_grid_align(path: str | Path) -> list[Word]:
    """Words of a GRID ``.align`` file (times in 1/25000 s), silences left out."""
    words = []
    for line in Path(path).read_text().split("\n"):
        parts = line.split()
        if len(parts) == 3 and parts[2] not in GRID_SILENCES:
            words.append(Word(int(parts[0]) / GRID_TICKS_PER_S, int(parts[1]) / GRID_TICKS_PER_S, parts[2]))
    return words


@dataclass(frozen=True)
class GridCorpus:
    """GRID clips of one speaker: ``video/<id>.mkv``, ``align/<id>.align``, optional split.tsv."""

    root: Path
    words: dict[str, list[Word]]
    test: tuple[str, ...]

    @classmethod
    def open(cls, root: str | Path) -> GridCorpus:
        root = Path(root)
        if not (root / "align").is_dir() or not (root / "video").is_dir():
            raise MediaError(f"{root} is not a GRID folder (needs video/ and align/)")
        words = {
            p.stem: read_grid_align(p)
            for p in sorted((root / "align").glob("*.align"))
            if (root / "video" / f"{p.stem}.mkv").is_file()
        }
        split = root / "split.tsv"
        if split.is_file():
            rows = [ln.split("\t") for ln in split.read_text().split("\n")[1:] if "\t" in ln]
            test = tuple(c for c, s in rows if s.strip() == "test" and c in words)
        else:
            test = tuple(words)
        return cls(root=root, words=words, test=test)

    def video(self, clip: str) -> Path:
        return self.root / "video" / f"{clip}.mkv"


def build_reperformance_case(
    grid: GridCorpus,
    clip: str,
    out_dir: str | Path,
    *,
    seed: int,
    babble_sources: Sequence[np.ndarray],
    audio_cache: dict[str, np.ndarray] | None = None,
    babble_key: str = "",
) -> Case:
    """Build (or reuse) a re-performance case: ``clip``'s sentence, each word from another take.

    Donor takes are drawn from the other clips of ``grid`` (test clips too: only the picture's own
    take is excluded), a different donor for each word where the corpus allows it.
    """
    case_dir = Path(out_dir) / f"reperf_{clip}"
    cached = _cached(case_dir, seed, babble_key)
    if cached is not None:
        return cached
    audio_cache = {} if audio_cache is None else audio_cache

    def audio_of(c: str) -> np.ndarray:
        if c not in audio_cache:
            audio_cache[c] = decode_audio(grid.video(c), PICTURE_AUDIO_SR)
        return audio_cache[c]

    rng = _case_rng(seed, clip)
    video = grid.video(clip)
    duration = picture_duration(video)
    ref = _fit(audio_of(clip), seconds_to_samples(duration, PICTURE_AUDIO_SR))
    donor_of = choose_donors(grid, clip, rng=rng)
    pieces, words_dub = [], []
    t = rng.uniform(*REPERF_LEAD_S)
    pieces.append(np.zeros(seconds_to_samples(t, PICTURE_AUDIO_SR), np.float32))
    for word, donor in zip(grid.words[clip], donor_of, strict=True):
        dw = next(w for w in grid.words[donor] if w.text == word.text)
        y = audio_of(donor)[
            seconds_to_samples(dw.start, PICTURE_AUDIO_SR) : seconds_to_samples(dw.end, PICTURE_AUDIO_SR)
        ].copy()
        n_fade = min(seconds_to_samples(WORD_FADE_S, PICTURE_AUDIO_SR), len(y) // 2)
        if n_fade:
            ramp = np.linspace(0.0, 1.0, n_fade, dtype=np.float32)
            y[:n_fade] *= ramp
            y[-n_fade:] *= ramp[::-1]
        words_dub.append(Word(round(t, 5), round(t + len(y) / PICTURE_AUDIO_SR, 5), word.text))
        pieces.append(y)
        t += len(y) / PICTURE_AUDIO_SR
        gap = rng.uniform(*REPERF_PAUSE_S)
        pieces.append(np.zeros(seconds_to_samples(gap, PICTURE_AUDIO_SR), np.float32))
        t = words_dub[-1].end + gap
    pieces.append(np.zeros(seconds_to_samples(DUB_TAIL_S, PICTURE_AUDIO_SR), np.float32))
    dub = room(_resample(np.concatenate(pieces), PICTURE_AUDIO_SR, DUB_SR), DUB_SR, rng=rng)
    words_pic = tuple(grid.words[clip])
    pic_t, dub_t = word_map(words_dub, words_pic, duration)
    truth = Truth(
        kind="reperformance",
        picture_duration=duration,
        pic_t=pic_t,
        dub_t=dub_t,
        words_dub=tuple(words_dub),
        words_pic=words_pic,
        clip=clip,
    )
    case_dir.mkdir(parents=True, exist_ok=True)
    _write_wav(case_dir / "dub.wav", dub, DUB_SR, DUB_SUBTYPE)
    _write_wav(case_dir / "ref.wav", ref, PICTURE_AUDIO_SR, "PCM_16")
    _write_pictures(case_dir, video, ref, babble_sources, rng)
    return _finish(case_dir, truth, seed, babble_key)


def choose_donors(grid: GridCorpus, clip: str, *, rng: np.random.Generator) -> list[str]:
    """For each word of ``clip``, another take of ``grid`` that says it; a different take for each
    word where the corpus allows (rarest words choose first, so common ones do not use up the
    only take of a rare one)."""
    words = [w.text for w in grid.words[clip]]
    candidates = []
    for text in words:
        donors = [c for c, ws in grid.words.items() if c != clip and any(w.text == text for w in ws)]
        if not donors:
            raise ParameterError(f"no other take says {text!r} (clip {clip}); add GRID clips")
        candidates.append(donors)
    chosen: list[str] = [""] * len(words)
    used: set[str] = set()
    for i in sorted(range(len(words)), key=lambda i: (len(candidates[i]), i)):
        fresh = [c for c in candidates[i] if c not in used] or candidates[i]
        chosen[i] = fresh[int(rng.integers(len(fresh)))]
        used.add(chosen[i])
    return chosen


def word_map(
    words_dub: Sequence[Word], words_pic: Sequence[Word], picture_duration: float
) -> tuple[np.ndarray, np.ndarray]:
    """A strictly increasing map dub -> picture that takes every dub word onto its picture word.

    Pauses the picture does not have are squeezed into a few milliseconds (each side of a word
    boundary gives up ``squeeze`` so that both axes keep increasing).
    """
    squeeze = 0.004
    pic_k, dub_k = [], []
    for wd, wp in zip(words_dub, words_pic, strict=True):
        pic_k += [wp.start + squeeze, wp.end - squeeze]
        dub_k += [wd.start + squeeze, wd.end - squeeze]
    pic = np.asarray(pic_k)
    dub = np.asarray(dub_k)
    keep = np.concatenate([[True], (np.diff(pic) > 1e-4) & (np.diff(dub) > 1e-4)])
    return pic[keep], dub[keep]


def build_cases(
    clips: Sequence[str | Path],
    cache_dir: str | Path,
    *,
    seed: int = 7,
    grid: GridCorpus | None = None,
    grid_clips: Sequence[str] = (),
    babble_clips: Sequence[str | Path] = (),
    progress: Callable[[str], None] | None = None,
) -> list[Case]:
    """Build (or reuse from ``cache_dir``) warped cases for ``clips`` and re-performance cases
    for the GRID clips ``grid_clips`` (their sentences re-said from other takes of ``grid``).

    Babble for the noisy pictures: for warped cases the other ``clips`` plus ``babble_clips``;
    for re-performance cases ``babble_clips`` when given (other speakers), else GRID ``test``
    clips not used as cases. Never the case's own clip.
    GRID clips whose words no other take says are skipped (reported through ``progress``).
    """
    cache_dir = Path(cache_dir)
    cases = []
    clips = [Path(c) for c in clips]
    warped_dir, reperf_dir = cache_dir / "warped", cache_dir / "reperformance"
    loaded: dict[Path, np.ndarray] = {}

    def sources(exclude: str, paths: Sequence[Path]) -> list[np.ndarray]:
        out = []
        for p in paths:
            if p.stem != exclude:
                if p not in loaded:
                    loaded[p] = decode_audio(p, PICTURE_AUDIO_SR)
                out.append(loaded[p])
        return out

    grid_babble: list[Path] = []
    if grid is not None:
        names = [c for c in grid.test if c not in grid_clips] or list(grid.words)
        grid_babble = [grid.video(c) for c in names[: 4 * BABBLE_TALKERS]]
    extra = [Path(c) for c in babble_clips]
    key = f"{len(extra)}:{zlib.crc32(','.join(sorted(p.stem for p in extra)).encode()):08x}" if extra else ""
    warped_pool = clips + extra + (grid_babble if len(clips) + len(extra) < 2 else [])
    for clip in clips:
        if progress:
            progress(f"case warped/{clip.stem}")
        if _cached(warped_dir / clip.stem, seed, key) is not None:
            cases.append(load_case(warped_dir / clip.stem))
            continue
        babble_sources = sources(clip.stem, warped_pool)
        cases.append(build_warped_case(clip, warped_dir, seed=seed, babble_sources=babble_sources, babble_key=key))
    if grid_clips and grid is None:
        raise ParameterError("re-performance cases need a GRID folder (--grid)")
    audio_cache: dict[str, np.ndarray] = {}
    for clip in grid_clips:
        if progress:
            progress(f"case reperformance/{clip}")
        if _cached(reperf_dir / f"reperf_{clip}", seed, key) is not None:
            cases.append(load_case(reperf_dir / f"reperf_{clip}"))
            continue
        try:  # only checks that every word has another take; the case draws its own donors
            choose_donors(grid, clip, rng=np.random.default_rng(0))
        except ParameterError as exc:
            if progress:
                progress(f"skipped: {exc}")
            continue
        cases.append(
            build_reperformance_case(
                grid,
                clip,
                reperf_dir,
                seed=seed,
                babble_sources=sources(clip, extra or grid_babble),
                audio_cache=audio_cache,
                babble_key=key,
            )
        )
    return cases


# ============================================================================================
# Scoring
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


def log_mel(y: np.ndarray, sr: int) -> np.ndarray:
    """Log-mel of ``y`` at FEATURE_RATE, frame k centred at k / FEATURE_RATE seconds.

    Returns
    -------
    S : np.ndarray [shape=(n_frames, N_MELS)] float32, dB, floored LOG_FLOOR_DB below the peak
    """
    y16 = _resample(np.asarray(y, np.float32), sr, ANALYSIS_SR)
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


def speech_mask(y16: np.ndarray) -> np.ndarray:
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
    out_mel = log_mel(_mono(output), sr)
    ref16 = _resample(_mono(ref), ref_sr, ANALYSIS_SR)
    ref_mel = log_mel(ref16, ANALYSIS_SR)
    mask = speech_mask(ref16)
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
    out_mel = log_mel(_mono(output), sr)
    dub_mel = log_mel(_mono(dub), dub_sr)
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
    floor = mel.min() if len(mel) else 0.0
    pad = max(0, -a, b - len(mel))
    padded = np.pad(mel, ((pad, pad), (0, 0)), constant_values=floor)
    return padded[a + pad : b + pad]


def _mono(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, np.float32)
    return y.mean(axis=1) if y.ndim == 2 else y


def score_case(case: Case, output: np.ndarray, sr: int, *, cache: dict | None = None) -> Score:
    """Score ``output`` (on the picture timeline) for ``case`` (either kind)."""
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


# ============================================================================================
# Reference methods
# ============================================================================================


def _map(pic_t: np.ndarray, dub_t: np.ndarray):
    """A TimeMap (dubalign.timemap) when it is there, else the truth's own interpolation."""
    try:
        from dubalign.timemap import TimeMap

        return TimeMap(dub_t=np.asarray(dub_t, float), pic_t=np.asarray(pic_t, float))
    except ImportError:
        return Truth(kind="warped", picture_duration=0.0, pic_t=pic_t, dub_t=dub_t)


def render_map(dub: np.ndarray, sr: int, pic_t: np.ndarray, dub_t: np.ndarray, n_out: int):
    """The dub rendered onto the picture timeline through a map, by ``dubalign.render``."""
    from dubalign.render import render

    return render(np.asarray(dub, np.float32).reshape(len(dub), -1), sr, _map(pic_t, dub_t), n_out=n_out).audio


def speech_times(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Picture times of the case's speech measurements and their weights (seconds)."""
    if case.kind == "reperformance":
        pic = np.array([w.centre for w in case.truth.words_pic])
        return pic, np.array([w.end - w.start for w in case.truth.words_pic])
    ref, ref_sr = sf.read(case.ref_path, dtype="float32", always_2d=True)
    mask = speech_mask(_resample(ref.mean(axis=1), ref_sr, ANALYSIS_SR))
    step = int(round(SCORE_STEP_S * FEATURE_RATE))
    frames = np.arange(0, len(mask), step)
    frames = frames[mask[frames]]
    return frames_to_seconds(frames), np.full(len(frames), SCORE_STEP_S)


def best_shift(case: Case) -> float:
    """The constant shift s (output(t) = dub(t + s)) putting most speech in sync under the truth."""
    pic, w = speech_times(case)
    if case.kind == "reperformance":
        dub = np.array([w.centre for w in case.truth.words_dub])
    else:
        dub = case.truth.to_dub(pic)
    lead = dub - pic  # e = lead - s
    if len(lead) == 0:
        return 0.0
    grid = np.arange(lead.min() - 0.2, lead.max() + 0.2, 0.001)
    e = lead[None, :] - grid[:, None]
    ok = (e >= INSYNC_MS[0] / 1000) & (e <= INSYNC_MS[1] / 1000)
    hits = ok.astype(float) @ w
    median = np.median(np.abs(e), axis=1)
    cand = np.flatnonzero(hits >= hits.max() - 1e-9)
    return float(grid[cand[np.argmin(median[cand])]])


def shift_dub(dub: np.ndarray, sr: int, shift: float, n_out: int) -> np.ndarray:
    """output(t) = dub(t + shift), ``n_out`` samples, silence outside the dub."""
    dub = np.asarray(dub, np.float32).reshape(len(dub), -1)
    k = seconds_to_samples(shift, sr)
    if k >= 0:
        return _fit(dub[k:], n_out)
    return _fit(np.concatenate([np.zeros((-k, dub.shape[1]), np.float32), dub]), n_out)


def guide_dtw_map(dub: np.ndarray, dub_sr: int, guide: np.ndarray, guide_sr: int):
    """Audio-to-audio DTW of the dub against the picture's audio (MFCC, cosine cost), as
    guide-track tools do. Returns (pic_t, dub_t) knots of a strictly increasing map."""
    feats = []
    for y, sr in ((dub, dub_sr), (guide, guide_sr)):
        y16 = _resample(_mono(y), sr, ANALYSIS_SR)
        m = librosa.feature.mfcc(
            y=y16,
            sr=ANALYSIS_SR,
            n_mfcc=GUIDE_MFCC + 1,
            n_fft=MEL_NFFT,
            hop_length=MEL_HOP,
            win_length=MEL_WIN,
            n_mels=N_MELS,
        )[1:].T
        m = (m - m.mean(axis=0)) / (m.std(axis=0) + 1e-6)
        feats.append(m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-9))
    a, b = feats
    cost = 1.0 - a @ b.T  # (n_dub, n_pic)
    _, path = librosa.sequence.dtw(C=cost, backtrack=True)
    path = path[::-1]  # start to end: (dub frame, picture frame)
    pic_frames = np.arange(b.shape[0])
    dub_of_pic = np.array([path[path[:, 1] == j, 0].mean() for j in pic_frames])
    width = 5  # 50 ms: the path's stair steps become a slope
    dub_of_pic = np.convolve(np.pad(dub_of_pic, width, mode="edge"), np.ones(width) / width, "same")[width:-width]
    pic_t = frames_to_seconds(pic_frames)
    dub_t = frames_to_seconds(dub_of_pic)
    keep = np.concatenate([[True], np.diff(np.maximum.accumulate(dub_t)) > 1e-4])
    dub_t = np.maximum.accumulate(dub_t)
    return pic_t[keep], dub_t[keep]


@dataclass(frozen=True)
class MethodOutput:
    """One method's output on one case and condition."""

    audio: np.ndarray  # [shape=(n_out, n_channels)] on the picture timeline
    sr: int
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def run_method(method: str, case: Case, condition: str, *, align_cache: dict | None = None) -> MethodOutput:
    """Run ``method`` on ``case`` under ``condition``; returns the output audio.

    Raises ParameterError for an unknown method or guide-dtw on a mute picture.
    """
    t0 = time.perf_counter()
    dub, sr = sf.read(case.dub_path, dtype="float32", always_2d=True)
    n_out = seconds_to_samples(case.truth.picture_duration, sr)
    if method == "none":
        out = shift_dub(dub, sr, 0.0, n_out)
    elif method == "oracle-shift":
        out = shift_dub(dub, sr, best_shift(case), n_out)
    elif method == "true-warp":
        out = render_map(dub, sr, case.truth.pic_t, case.truth.dub_t, n_out)
    elif method == "guide-dtw":
        if condition == "mute":
            raise ParameterError("guide-dtw needs picture audio; it has no result on mute pictures")
        guide = decode_audio(case.picture(condition), ANALYSIS_SR)
        pic_t, dub_t = guide_dtw_map(dub, sr, guide, ANALYSIS_SR)
        out = render_map(dub, sr, pic_t, dub_t, n_out)
    elif method in ("dubalign", "dubalign-lips"):
        from dubalign.align import AlignConfig, align_dub, analyze_picture

        cfg = AlignConfig(guide="auto" if method == "dubalign" else "off")
        t0 = time.perf_counter()  # whole align, model loading included, reading the dub too
        pic = analyze_picture(str(case.picture(condition)), cfg)
        res = align_dub(pic, str(case.dub_path), cfg)
        wall = time.perf_counter() - t0
        return MethodOutput(
            audio=np.asarray(res.audio, np.float32),
            sr=int(res.sr),
            wall_s=wall,
            timings={k: float(v) for k, v in dict(res.timings).items()},
            warnings=tuple(res.warnings),
        )
    else:
        raise ParameterError(f"unknown method {method!r}; use one of {METHODS}")
    return MethodOutput(audio=np.asarray(out, np.float32), sr=sr, wall_s=time.perf_counter() - t0)


# ============================================================================================
# The whole run
# ============================================================================================


@dataclass(frozen=True)
class RunRecord:
    """One (case, method, condition) result."""

    case: str
    kind: str
    method: str
    condition: str
    metrics: Metrics | None
    picture_s: float
    wall_s: float
    decode_s: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class BenchmarkResults:
    """Everything a run measured, plus the pooled tables."""

    records: tuple[RunRecord, ...]
    scores: dict  # (method, condition, kind) -> list[Score]
    seed: int
    methods: tuple[str, ...]
    conditions: tuple[str, ...]

    def summary(self, method: str, condition: str, kind: str) -> Metrics | None:
        s = self.scores.get((method, condition, kind))
        return pool(s) if s else None

    def speed(self) -> dict[str, dict[str, float]]:
        """Per method: picture seconds, wall seconds, real-time factor, decode-only figures, and
        wall seconds per stage, over every aligned picture."""
        out = {}
        for m in self.methods:
            recs = [r for r in self.records if r.method == m and r.error is None and r.timings]
            if not recs:
                continue
            pic = sum(r.picture_s for r in recs)
            wall = sum(r.wall_s for r in recs)
            dec = sum(r.decode_s or 0.0 for r in recs)
            stages: dict[str, float] = {}
            for r in recs:
                for k, v in r.timings.items():
                    stages[k] = stages.get(k, 0.0) + v
            out[m] = {
                "pictures": len(recs),
                "picture_s": round(pic, 2),
                "wall_s": round(wall, 2),
                "rtf": round(pic / wall, 2) if wall > 0 else float("inf"),
                "first_wall_s": round(recs[0].wall_s, 2),
                "decode_s": round(dec, 3),
                "decode_rtf": round(pic / dec, 1) if dec > 0 else float("inf"),
                "stages_s": {k: round(v, 3) for k, v in stages.items()},
            }
        return out

    def to_json(self) -> dict:
        table = {}
        for m in self.methods:
            for c in self.conditions:
                for k in KINDS:
                    s = self.summary(m, c, k)
                    if s is not None:
                        table[f"{m}|{c}|{k}"] = asdict(s)
        return _finite(
            {
                "seed": self.seed,
                "protocol": {
                    "insync_ms": INSYNC_MS,
                    "acceptable_ms": ACCEPTABLE_MS,
                    "tight_ms": TIGHT_MS,
                },
                "summary": table,
                "speed": self.speed(),
                "runs": [
                    {
                        **{k: v for k, v in asdict(r).items() if k != "metrics"},
                        "metrics": asdict(r.metrics) if r.metrics else None,
                    }
                    for r in self.records
                ],
            }
        )

    def to_markdown(self) -> str:
        kinds = [k for k in KINDS if any(key[2] == k for key in self.scores)]
        cols = [(k, c) for k in kinds for c in self.conditions]
        short = {"warped": "warped", "reperformance": "re-perf"}
        lines = [
            "# dubalign benchmark",
            "",
            f"seed {self.seed}; in-sync % ({INSYNC_MS[0]:+.0f}..{INSYNC_MS[1]:+.0f} ms, share of speech time)",
            "",
        ]
        n_cases = {k: len({r.case for r in self.records if r.kind == k}) for k in kinds}
        lines.append("cases: " + ", ".join(f"{n_cases[k]} {k}" for k in kinds))
        lines += [
            "",
            "| method | " + " | ".join(f"{short[k]} {c}" for k, c in cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for m in self.methods:
            cells = []
            for k, c in cols:
                s = self.summary(m, c, k)
                cells.append("n/a" if s is None else f"{s.insync_pct:.1f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "## All metrics",
            "",
            "| method | case kind | condition | in-sync % | acceptable % | tight % | "
            "median \\|e\\| ms | p95 \\|e\\| ms | not found % | speech s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in self.methods:
            for k, c in cols:
                s = self.summary(m, c, k)
                if s is not None:
                    lines.append(
                        f"| {m} | {k} | {c} | {s.insync_pct:.1f} | {s.acceptable_pct:.1f} | "
                        f"{s.tight_pct:.1f} | {s.median_abs_ms:.1f} | {s.p95_abs_ms:.1f} | "
                        f"{s.unlocated_pct:.1f} | {s.speech_s:.1f} |"
                    )
        speed = self.speed()
        if speed:
            lines += [
                "",
                "## Speed",
                "",
                "Real-time factor = picture duration / wall time of the whole align (model "
                "loading included, in the first run); decode = PyAV decode of every frame.",
                "",
                "| method | pictures | picture s | align wall s | RTF | first run s | "
                "decode s | decode RTF | stages (s) |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for m, sp in speed.items():
                stages = ", ".join(f"{k} {v:.2f}" for k, v in sp["stages_s"].items())
                lines.append(
                    f"| {m} | {sp['pictures']} | {sp['picture_s']:.1f} | {sp['wall_s']:.1f} | "
                    f"{sp['rtf']:.2f} | {sp['first_wall_s']:.1f} | {sp['decode_s']:.2f} | "
                    f"{sp['decode_rtf']:.0f} | {stages} |"
                )
        failed = [r for r in self.records if r.error]
        if failed:
            lines += ["", "## Failures", ""] + [f"- {r.method} {r.condition} {r.case}: {r.error}" for r in failed]
        return "\n".join(lines) + "\n"


def _finite(obj):
    """JSON has no infinity: |e| percentiles over mostly-lost speech become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def evaluate(
    cases: Sequence[Case],
    *,
    methods: Sequence[str] = METHODS,
    conditions: Sequence[str] = CONDITIONS,
    seed: int = 7,
    output_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchmarkResults:
    """Run every method on every case and condition, and score the outputs.

    Methods that do not read the picture (``PICTURE_INDEPENDENT``) run once per case and count
    under every condition. Errors of the tool under test (DubalignError and the like) are
    recorded: that output then scores as all speech out of sync. ``output_dir`` keeps the outputs.
    """
    for m in methods:
        if m not in METHODS:
            raise ParameterError(f"unknown method {m!r}; use some of {', '.join(METHODS)}")
    for c in conditions:
        if c not in CONDITIONS:
            raise ParameterError(f"unknown condition {c!r}; use some of {', '.join(CONDITIONS)}")
    records: list[RunRecord] = []
    scores: dict = {}
    for case in cases:
        cache: dict = {}
        decode_s = {}
        for m in methods:
            once = m in PICTURE_INDEPENDENT
            for j, c in enumerate(conditions):
                if m == "guide-dtw" and c == "mute":
                    continue
                if once and j > 0:
                    prev = records[-1]
                    records.append(RunRecord(**{**asdict(prev), "condition": c, "metrics": prev.metrics}))
                    scores.setdefault((m, c, case.kind), []).append(scores[(m, conditions[0], case.kind)][-1])
                    continue
                if progress:
                    progress(f"{case.name} {m} {c}")
                error = None
                try:
                    out = run_method(m, case, c)
                    score = score_case(case, out.audio, out.sr, cache=cache)
                except Exception as exc:  # a failing method scores as out of sync, run goes on
                    if m not in ("dubalign", "dubalign-lips"):
                        raise
                    error = f"{type(exc).__name__}: {exc}"
                    out = MethodOutput(audio=np.zeros((0, 1), np.float32), sr=DUB_SR, wall_s=0.0)
                    pic, w = speech_times(case)
                    score = Score(errors_ms=np.full(len(w), np.nan), weights=w)
                if output_dir is not None and error is None:
                    d = Path(output_dir) / case.kind / case.name
                    d.mkdir(parents=True, exist_ok=True)
                    _write_wav(d / f"{m}_{c}.wav", out.audio, out.sr, "PCM_16")
                dec = None
                if out.timings:
                    if c not in decode_s:
                        decode_s[c] = decode_time(case.picture(c))
                    dec = decode_s[c]
                scores.setdefault((m, c, case.kind), []).append(score)
                records.append(
                    RunRecord(
                        case=case.name,
                        kind=case.kind,
                        method=m,
                        condition=c,
                        metrics=score.metrics(),
                        picture_s=case.truth.picture_duration,
                        wall_s=out.wall_s,
                        decode_s=dec,
                        timings=out.timings,
                        error=error,
                    )
                )
    return BenchmarkResults(
        records=tuple(records),
        scores=scores,
        seed=seed,
        methods=tuple(methods),
        conditions=tuple(conditions),
    )
