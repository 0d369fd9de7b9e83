"""Benchmark cases (BENCHMARK.md): building them from talking clips and the GRID corpus, and
reading them back.

A *case* is a folder on disk, in the same layout as the independent scorer's cases so that either
tool can score the other's outputs::

    dub.wav          the dub (48 kHz / 24-bit), to be aligned
    ref.wav          the picture's own clean speech, on the picture's timeline
    pic_clean.mkv    picture + its own audio
    pic_noisy.mkv    picture + its audio under babble at -5 dB SNR
    pic_mute.mkv     picture, no audio track
    truth.json       the exact answer (see :class:`Truth`)

Two kinds of case, scored differently: *warped* (the clip's own speech re-timed by a smooth random
warp, shifted and re-recorded through another room; the truth is the map dub time -> picture time)
and *reperformance* (the same line said again; the truth is the word intervals in the dub and in
the picture). The re-performance kind comes in three tracks (BENCHMARK.md):

    spliced   a GRID sentence, every word from another take, a new pause after every word
    fluent    the same, but with the picture take's own pauses, each jittered by -20..+50 ms
    natural   another take of the same line by the same actor (CREMA-D), through another room

Picture time 0 is the picture's first video frame (as dubalign and editing systems define it). The
natural takes' audio starts 27 ms before their video, so their words and audio are moved onto that
timeline (:func:`stream_starts`). The warped cases, like ../shared/eval's, put the clip's first
audio sample at picture time 0: the same thing for GRID and all but two dev clips (one whose video
starts 40 ms after its audio; one whose MP4 edit list hides 57 frames the remuxed picture shows).

The dubs are built without ``dubalign``'s own code (its renderer, decoder or features): the thing
measured must not build its own test.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import scipy.signal
import soundfile as sf

from dubalign.errors import MediaError, ParameterError
from dubalign.files import atomic_output, write_json
from dubalign.timemap import _interp_slope1
from dubalign.units import ANALYSIS_SR, FEATURE_RATE, seconds_to_samples

from .scoring import read_scoring_audio, resample, scorer_speech_mask

CONDITIONS = ("clean", "noisy", "mute")  # the picture's audio: own speech, under babble, none
KINDS = ("warped", "reperformance")  # how a case is scored: every moment of speech, or word by word
TRACKS = ("warped", "spliced", "fluent", "natural")  # how it was built; tables have a column group each
TRACK_KIND = {"warped": "warped", "spliced": "reperformance", "fluent": "reperformance", "natural": "reperformance"}
GRID_STYLES = ("spliced", "fluent")  # the re-performance tracks built from GRID
TRACK_ALIASES = {"reperformance": "spliced"}  # the spliced track's name before there were three

DUB_SR = 48000  # Hz: the dub as delivered by a studio
DUB_SUBTYPE = "PCM_24"
PICTURE_AUDIO_SR = 48000  # Hz: the audio track muxed into the case pictures

WARP_RATE_RANGE = (0.72, 1.38)  # local dub-seconds per picture-second of the random warp
WARP_SEGMENT_S = (0.25, 0.9)  # the local rate changes after a random span in this range
WARP_SMOOTH_S = 0.08  # the piecewise-constant rate is smoothed over this window
WARP_OFFSET_S = (-0.5, 0.8)  # dub time of picture time 0
WARP_KNOT_S = 0.01  # spacing of the truth map's knots
STRETCH_KEY_S = 0.04  # spacing of the key frames handed to rubberband when building the dub
RUBBERBAND_PROGRAM = "rubberband"  # the Rubber Band command-line tool (Debian: rubberband-cli)
DUB_TAIL_S = 0.3  # room tone after the last word of a built dub
HISS_SNR_DB = 35.0  # the dub's room hiss below its speech
BABBLE_SNR_DB = -5.0  # the noisy picture: its speech this far below the babble
BABBLE_TALKERS = 4  # clips summed into babble

REPERF_LEAD_S = (0.15, 0.6)  # silence before the first word of a re-performance
REPERF_PAUSE_S = (0.04, 0.35)  # new pause between two words
FLUENT_JITTER_S = (-0.02, 0.05)  # fluent style: added to each of the picture take's own pauses
NATURAL_LEAD_S = (0.2, 0.6)  # natural track: silence before the other take in the dub
WORD_FADE_S = 0.005  # fade in/out of each word cut from its take
GRID_TICKS_PER_S = 25000  # GRID .align times are in 1/25000 s
GRID_SILENCES = ("sil", "sp")

LOSSLESS_CODEC = "libx264"  # pictures whose codec Matroska refuses are re-encoded with it ...
LOSSLESS_OPTIONS = {"qp": "0", "preset": "veryfast"}  # ... losslessly
LOSSLESS_PIX_FMTS = ("yuv420p", "yuv422p", "yuv444p")  # kept as they are; others become yuv444p

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
    track: str = ""  # one of TRACKS; empty: the first track of ``kind`` (warped or spliced)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ParameterError(f"unknown case kind {self.kind!r}; use one of {KINDS}")
        track = TRACK_ALIASES.get(self.track, self.track) or ("warped" if self.kind == "warped" else "spliced")
        if TRACK_KIND.get(track) != self.kind:
            raise ParameterError(f"track {self.track!r} is not a {self.kind} track; use one of {TRACKS}")
        object.__setattr__(self, "track", track)

    def to_dub(self, pic_times) -> np.ndarray:
        return _interp_slope1(np.asarray(pic_times, float), self.pic_t, self.dub_t)

    def to_picture(self, dub_times) -> np.ndarray:
        return _interp_slope1(np.asarray(dub_times, float), self.dub_t, self.pic_t)

    def to_json(self) -> dict:
        out = {
            "clip": self.clip,
            "kind": self.kind,
            "track": self.track,
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
        kind = "reperformance" if kind.startswith("reperf") else "warped"
        # cases without a track (built before there were three, or by ../shared/eval) are spliced
        # re-performances, except the independent maker's natural pairs, which name their dub clip
        track = d.get("track") or ("natural" if kind == "reperformance" and "dub_clip" in d else "")
        pic_t, dub_t = _increasing(np.asarray(d["pic_t"], float), np.asarray(d["dub_t"], float))
        return cls(
            kind=kind,
            track=track,
            picture_duration=float(d["picture_duration"]),
            pic_t=pic_t,
            dub_t=dub_t,
            words_dub=words_dub,
            words_pic=words_pic,
            clip=str(d.get("clip", "")),
        )


def _increasing(pic_t: np.ndarray, dub_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The knots that increase on both axes over the last one kept: ../shared/eval's word maps
    repeat a knot where two words touch, and a time map must be strictly increasing."""
    keep = []
    for i in range(len(pic_t)):
        if not keep or (pic_t[i] > pic_t[keep[-1]] and dub_t[i] > dub_t[keep[-1]]):
            keep.append(i)
    return pic_t[keep], dub_t[keep]


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
    def track(self) -> str:
        return self.truth.track

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
    if not root.is_dir():
        raise MediaError(f"{root} is not a folder of benchmark cases (no such folder)")
    return [load_case(p) for p in sorted(root.iterdir()) if (p / "truth.json").is_file()]


# ============================================================================================
# Media helpers (PyAV; no external ffmpeg)
# ============================================================================================


def picture_duration(path: str | Path) -> float:
    """Duration of the video stream (first frame to the end of the last), from the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        times = [float(f.pts * f.time_base) for f in container.decode(video=0) if f.pts is not None]
    if not times:
        raise MediaError(f"{path} has no decodable video frames")
    return max(times) + 1.0 / rate - min(times)


def write_picture(
    source: str | Path, out_path: str | Path, audio: np.ndarray | None, sr: int, *, audio_start: float = 0.0
) -> None:
    """Copy the video stream of ``source`` into ``out_path`` (Matroska) with a new audio track.

    The video keeps its timestamps. A codec Matroska does not take (FLV's VP6) is re-encoded
    losslessly (H.264, qp 0): the same pixels at the same times.

    audio : np.ndarray [shape=(n_samples,)] or None for a picture without audio.
    audio_start : file time (s, the source's timestamps) of the audio's first sample; the source's
        first video frame time puts sample 0 at picture time 0.
    """
    with atomic_output(out_path) as tmp:
        with av.open(str(source)) as src, av.open(str(tmp), "w", format="matroska") as dst:
            v_in = src.streams.video[0]
            try:
                v_out = dst.add_stream_from_template(v_in)
            except (ValueError, av.codec.codec.UnknownCodecError):  # the container refuses the codec
                v_out = None
            a_out = None
            if audio is not None:
                a_out = dst.add_stream("flac", rate=sr, layout="mono")
            if v_out is None:
                _reencode_lossless(src, v_in, dst)
            else:
                for packet in src.demux(v_in):
                    if packet.size == 0:  # the demuxer's end-of-stream flush packet
                        continue
                    packet.stream = v_out
                    dst.mux(packet)
            if a_out is not None:
                pcm = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
                pcm16 = np.round(pcm * 32767).astype(np.int16)
                start = seconds_to_samples(audio_start, sr)
                block = 4096
                for i in range(0, len(pcm16), block):
                    frame = av.AudioFrame.from_ndarray(pcm16[None, i : i + block], format="s16", layout="mono")
                    frame.sample_rate = sr
                    frame.pts = start + i
                    frame.time_base = Fraction(1, sr)
                    dst.mux(a_out.encode(frame))
                dst.mux(a_out.encode(None))


def _reencode_lossless(src, v_in, dst) -> None:
    """Encode every frame of ``v_in`` into ``dst`` as lossless H.264, each at its own timestamp."""
    ctx = v_in.codec_context
    pix_fmt = ctx.pix_fmt if ctx.pix_fmt in LOSSLESS_PIX_FMTS else "yuv444p"
    v_out = dst.add_stream(LOSSLESS_CODEC, rate=v_in.average_rate or v_in.guessed_rate, options=LOSSLESS_OPTIONS)
    v_out.width, v_out.height, v_out.pix_fmt = ctx.width, ctx.height, pix_fmt
    v_out.time_base = v_out.codec_context.time_base = v_in.time_base  # timestamps copied as they are
    for frame in src.decode(v_in):
        if frame.pts is None:
            continue
        out = av.VideoFrame.from_ndarray(frame.reformat(format=pix_fmt).to_ndarray(), format=pix_fmt)
        out.pts, out.time_base = frame.pts, frame.time_base
        for packet in v_out.encode(out):
            dst.mux(packet)
    for packet in v_out.encode(None):
        dst.mux(packet)


def stream_starts(path: str | Path) -> tuple[float, float]:
    """File times (s) of the first decoded audio frame and of the first video frame of ``path``.

    :func:`read_scoring_audio` starts at the first; picture time 0 is the second.
    """
    with av.open(str(path)) as container:
        if not container.streams.audio or not container.streams.video:
            raise MediaError(f"{path} needs an audio and a video stream")
        audio = next((float(f.time) for f in container.decode(audio=0) if f.time is not None), None)
    with av.open(str(path)) as container:
        video = next((float(f.time) for f in container.decode(video=0) if f.time is not None), None)
    if audio is None or video is None:
        raise MediaError(f"{path} has no decodable audio or video frames")
    return audio, video


def fit(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad ``y`` (time first) to ``n`` samples."""
    if len(y) >= n:
        return y[:n]
    pad = [(0, n - len(y))] + [(0, 0)] * (y.ndim - 1)
    return np.pad(y, pad)


def write_wav(path: str | Path, y: np.ndarray, sr: int, subtype: str) -> None:
    """Write ``y`` (clipped to [-1, 1]) as a WAV file, atomically."""
    with atomic_output(path) as tmp:
        sf.write(tmp, np.clip(y, -1.0, 1.0), sr, subtype=subtype, format="WAV")


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
    mask = scorer_speech_mask(resample(np.asarray(y, np.float32), sr, ANALYSIS_SR))
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


def _write_pictures(
    case_dir: Path, video: Path, ref: np.ndarray, babble_sources, rng: np.random.Generator, *, audio_start: float = 0.0
) -> None:
    noise = babble(len(ref), PICTURE_AUDIO_SR, babble_sources, rng=rng)
    noisy = mix_at_snr(ref, noise, BABBLE_SNR_DB, PICTURE_AUDIO_SR)
    write_picture(video, case_dir / "pic_clean.mkv", ref, PICTURE_AUDIO_SR, audio_start=audio_start)
    write_picture(video, case_dir / "pic_noisy.mkv", noisy, PICTURE_AUDIO_SR, audio_start=audio_start)
    write_picture(video, case_dir / "pic_mute.mkv", None, PICTURE_AUDIO_SR)
    write_wav(case_dir / "guide_noisy.wav", noisy, PICTURE_AUDIO_SR, "PCM_16")


def _stretch(y: np.ndarray, sr: int, src_t: np.ndarray, dst_t: np.ndarray) -> np.ndarray:
    """Time-stretch ``y`` so that source time ``src_t`` lands at ``dst_t`` (rubberband key
    frames, formant and pitch kept). Both start at 0. Independent of dubalign.render on purpose:
    the thing measured must not build its own test."""
    n_in = len(y)
    n_tgt = int(round(dst_t[-1] * sr))
    step = max(1, int(round(STRETCH_KEY_S / np.median(np.diff(src_t)))))
    keys = sorted(
        {(min(int(round(s * sr)), n_in), int(round(d * sr))) for s, d in zip(src_t[::step], dst_t[::step], strict=True)}
    )
    keys = [k for k in keys if k[0] < n_in] + [(n_in, n_tgt)]
    out = _rubberband_timemap(y, sr, keys)
    return fit(out.mean(axis=1), n_tgt)


def _rubberband_timemap(y: np.ndarray, sr: int, keys: Sequence[tuple[int, int]]) -> np.ndarray:
    """Run the ``rubberband`` program (R3 "fine" engine) on ``y`` through the key frames ``keys``
    (source sample, target sample), the last one (len(y), target length).

    The input goes through a 16-bit WAV file: the cases were first built that way (by the
    pyrubberband wrapper) and stay bit-identical for a seed.

    Returns
    -------
    out : np.ndarray [shape=(n_out, n_channels)] float32
    """
    if shutil.which(RUBBERBAND_PROGRAM) is None:
        raise MediaError(f"building benchmark dubs needs the {RUBBERBAND_PROGRAM!r} program; install rubberband-cli")
    with tempfile.TemporaryDirectory(prefix="dubalign-bench-") as tmp:
        src, dst, key_file = Path(tmp) / "in.wav", Path(tmp) / "out.wav", Path(tmp) / "keys.txt"
        sf.write(src, y, sr, subtype="PCM_16")
        key_file.write_text("".join(f"{a} {b}\n" for a, b in keys))
        ratio = keys[-1][1] * 1.0 / keys[-1][0]
        cmd = [RUBBERBAND_PROGRAM, "-q", "--fine", "--time", str(ratio), "--timemap", str(key_file), str(src), str(dst)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise MediaError(f"{RUBBERBAND_PROGRAM} failed (exit {proc.returncode}): {tail}")
        out, _ = sf.read(dst, dtype="float32", always_2d=True)
    return out


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
    ref = fit(read_scoring_audio(clip, PICTURE_AUDIO_SR), seconds_to_samples(duration, PICTURE_AUDIO_SR))
    pic_t, dub_t = random_warp(duration, rng=rng)
    # render the speech onto the dub timeline: source (picture) time -> target (dub) time
    start = dub_t[0]
    warped = _stretch(ref, PICTURE_AUDIO_SR, pic_t, dub_t - start)
    lead = seconds_to_samples(abs(start), PICTURE_AUDIO_SR)
    warped = np.concatenate([np.zeros(lead, np.float32), warped]) if start >= 0 else warped[lead:]
    warped = np.concatenate([warped, np.zeros(seconds_to_samples(DUB_TAIL_S, PICTURE_AUDIO_SR))])
    dub = room(resample(warped, PICTURE_AUDIO_SR, DUB_SR), DUB_SR, rng=rng)
    truth = Truth(kind="warped", picture_duration=duration, pic_t=pic_t, dub_t=dub_t, clip=clip.name)
    write_wav(case_dir / "dub.wav", dub, DUB_SR, DUB_SUBTYPE)
    write_wav(case_dir / "ref.wav", ref, PICTURE_AUDIO_SR, "PCM_16")
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
    write_json(case_dir / "truth.json", truth.to_json())
    write_json(case_dir / "built.json", _stamp(seed, babble_key))
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
    style: str = "spliced",
) -> Case:
    """Build (or reuse) a re-performance case: ``clip``'s sentence, each word from another take.

    Donor takes are drawn from the other clips of ``grid`` (test clips too: only the picture's own
    take is excluded), a different donor for each word where the corpus allows it.
    style : ``spliced`` (a new pause of REPERF_PAUSE_S after every word; folder ``reperf_<clip>``)
        or ``fluent`` (the picture take's own pauses, each plus FLUENT_JITTER_S, never below 0;
        folder ``fluent_<clip>``).
    """
    if style not in GRID_STYLES:
        raise ParameterError(f"unknown re-performance style {style!r}; use one of {GRID_STYLES}")
    name = f"reperf_{clip}" if style == "spliced" else f"{style}_{clip}"
    case_dir = Path(out_dir) / name
    cached = _cached(case_dir, seed, babble_key)
    if cached is not None:
        return cached
    audio_cache = {} if audio_cache is None else audio_cache

    def audio_of(c: str) -> np.ndarray:
        if c not in audio_cache:
            audio_cache[c] = read_scoring_audio(grid.video(c), PICTURE_AUDIO_SR)
        return audio_cache[c]

    rng = _case_rng(seed, clip if style == "spliced" else name)  # spliced cases keep their first draws
    video = grid.video(clip)
    duration = picture_duration(video)
    ref = fit(audio_of(clip), seconds_to_samples(duration, PICTURE_AUDIO_SR))
    donor_of = choose_donors(grid, clip, rng=rng)
    words_pic = tuple(grid.words[clip])
    pieces, words_dub = [], []
    t = rng.uniform(*REPERF_LEAD_S)
    pieces.append(np.zeros(seconds_to_samples(t, PICTURE_AUDIO_SR), np.float32))
    for i, (word, donor) in enumerate(zip(words_pic, donor_of, strict=True)):
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
        if style == "spliced":
            gap = rng.uniform(*REPERF_PAUSE_S)
        elif i + 1 < len(words_pic):
            gap = max(0.0, words_pic[i + 1].start - word.end + rng.uniform(*FLUENT_JITTER_S))
        else:
            gap = 0.0  # the tail follows
        n_gap = seconds_to_samples(gap, PICTURE_AUDIO_SR)
        pieces.append(np.zeros(n_gap, np.float32))
        t = words_dub[-1].end + (gap if style == "spliced" else n_gap / PICTURE_AUDIO_SR)
    pieces.append(np.zeros(seconds_to_samples(DUB_TAIL_S, PICTURE_AUDIO_SR), np.float32))
    dub = room(resample(np.concatenate(pieces), PICTURE_AUDIO_SR, DUB_SR), DUB_SR, rng=rng)
    pic_t, dub_t = word_map(words_dub, words_pic, duration)
    truth = Truth(
        kind="reperformance",
        picture_duration=duration,
        pic_t=pic_t,
        dub_t=dub_t,
        words_dub=tuple(words_dub),
        words_pic=words_pic,
        clip=clip,
        track=style,
    )
    case_dir.mkdir(parents=True, exist_ok=True)
    write_wav(case_dir / "dub.wav", dub, DUB_SR, DUB_SUBTYPE)
    write_wav(case_dir / "ref.wav", ref, PICTURE_AUDIO_SR, "PCM_16")
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


def read_word_table(path: str | Path) -> dict[str, tuple[Word, ...]]:
    """Word intervals of several takes from a TSV (``file  word  start_s  end_s``, ``#`` comments,
    a header row): file name -> its words in time order. Times are on the file's audio timeline."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path} is not a word table (no such file)")
    words: dict[str, list[Word]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if not line.strip() or line.startswith("#") or parts[:2] == ["file", "word"]:
            continue
        try:
            name, text, start, end = parts
            words.setdefault(name, []).append(Word(float(start), float(end), text))
        except ValueError:
            raise MediaError(f"{path}:{n}: expected file, word, start_s, end_s separated by tabs") from None
    return {name: tuple(sorted(ws, key=lambda w: w.start)) for name, ws in words.items()}


def natural_pairs(takes: Sequence[str | Path]) -> list[tuple[Path, Path, str]]:
    """Every ordered pair of different takes: (dub take, picture take, case name). Names are
    ``natural_<dub>_to_<picture>``, each take named by what its file name does not share with the
    others (``ANG`` in ``..._1001_DFA_ANG_XX.flv``)."""
    takes = sorted(Path(t) for t in takes)
    stems = [t.stem for t in takes]
    head = len(_common_prefix(stems))
    tail = len(_common_prefix([s[::-1] for s in stems]))
    short = [s[head : len(s) - tail] or s for s in stems] if len(stems) > 1 else stems
    return [
        (a, b, f"natural_{sa}_to_{sb}")
        for a, sa in zip(takes, short, strict=True)
        for b, sb in zip(takes, short, strict=True)
        if a != b
    ]


def _common_prefix(names: Sequence[str]) -> str:
    if not names:
        return ""
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    # a prefix ending inside a word would cut "ANG"/"ANX" to "G"/"X"; back off to a separator
    while n and first[n - 1] not in "_-. ":
        n -= 1
    return first[:n]


def build_natural_case(
    dub_take: str | Path,
    picture_take: str | Path,
    words: Mapping[str, Sequence[Word]],
    out_dir: str | Path,
    *,
    name: str,
    seed: int,
    babble_sources: Sequence[np.ndarray],
    babble_key: str = "",
    audio_cache: dict[Path, np.ndarray] | None = None,
) -> Case:
    """Build (or reuse) a natural re-performance case ``out_dir/name``: the picture of
    ``picture_take``, the audio of ``dub_take`` (another take of the same line) through another
    room after NATURAL_LEAD_S of silence.

    words : file name -> word intervals on that file's audio timeline (:func:`read_word_table`);
        both takes must say the same words. They are moved onto the picture's timeline (time 0 =
        its first video frame) and the dub's.
    """
    dub_take, picture_take = Path(dub_take), Path(picture_take)
    case_dir = Path(out_dir) / name
    cached = _cached(case_dir, seed, babble_key)
    if cached is not None:
        return cached
    for take in (dub_take, picture_take):
        if take.name not in words:
            raise ParameterError(f"the word table has no words for {take.name}")
    if [w.text for w in words[dub_take.name]] != [w.text for w in words[picture_take.name]]:
        raise ParameterError(f"{dub_take.name} and {picture_take.name} do not say the same words")
    audio_cache = {} if audio_cache is None else audio_cache
    for take in (dub_take, picture_take):
        if take not in audio_cache:
            audio_cache[take] = read_scoring_audio(take, PICTURE_AUDIO_SR)
    rng = _case_rng(seed, name)
    duration = picture_duration(picture_take)
    # the picture: its audio's sample 0 sits at picture time audio0 - video0 (-27 ms in CREMA-D)
    audio0, video0 = stream_starts(picture_take)
    k = seconds_to_samples(abs(video0 - audio0), PICTURE_AUDIO_SR)
    pic_audio = audio_cache[picture_take]
    pic_audio = pic_audio[k:] if video0 >= audio0 else np.concatenate([np.zeros(k, np.float32), pic_audio])
    ref = fit(pic_audio, seconds_to_samples(duration, PICTURE_AUDIO_SR))
    words_pic = tuple(Word(w.start - video0, w.end - video0, w.text) for w in words[picture_take.name])
    # the dub: the other take's audio from its first sample, after the lead
    dub_audio0, _ = stream_starts(dub_take)
    n_lead = seconds_to_samples(rng.uniform(*NATURAL_LEAD_S), PICTURE_AUDIO_SR)
    lead = n_lead / PICTURE_AUDIO_SR
    words_dub = tuple(
        Word(round(w.start - dub_audio0 + lead, 5), round(w.end - dub_audio0 + lead, 5), w.text)
        for w in words[dub_take.name]
    )
    speech = np.concatenate(
        [
            np.zeros(n_lead, np.float32),
            audio_cache[dub_take],
            np.zeros(seconds_to_samples(DUB_TAIL_S, PICTURE_AUDIO_SR), np.float32),
        ]
    )
    dub = room(resample(speech, PICTURE_AUDIO_SR, DUB_SR), DUB_SR, rng=rng)
    pic_t, dub_t = word_map(words_dub, words_pic, duration)
    truth = Truth(
        kind="reperformance",
        track="natural",
        picture_duration=duration,
        pic_t=pic_t,
        dub_t=dub_t,
        words_dub=words_dub,
        words_pic=words_pic,
        clip=picture_take.name,
    )
    case_dir.mkdir(parents=True, exist_ok=True)
    write_wav(case_dir / "dub.wav", dub, DUB_SR, DUB_SUBTYPE)
    write_wav(case_dir / "ref.wav", ref, PICTURE_AUDIO_SR, "PCM_16")
    _write_pictures(case_dir, picture_take, ref, babble_sources, rng, audio_start=video0)
    return _finish(case_dir, truth, seed, babble_key)


def build_cases(
    clips: Sequence[str | Path],
    cache_dir: str | Path,
    *,
    seed: int = 7,
    grid: GridCorpus | None = None,
    grid_clips: Sequence[str] = (),
    babble_clips: Sequence[str | Path] = (),
    progress: Callable[[str], None] | None = None,
    styles: Sequence[str] = ("spliced",),
    natural: Sequence[tuple[Path, Path, str]] = (),
    natural_words: Mapping[str, Sequence[Word]] | None = None,
) -> list[Case]:
    """Build (or reuse from ``cache_dir``) the cases of every track asked for: warped cases for
    ``clips``; GRID re-performance cases of each of ``styles`` (spliced, fluent) for the GRID clips
    ``grid_clips`` (their sentences re-said from other takes of ``grid``); natural re-performance
    cases for the (dub take, picture take, name) triples ``natural`` (:func:`natural_pairs`), with
    the takes' words ``natural_words`` (:func:`read_word_table`).

    Babble for the noisy pictures: for warped cases the other ``clips`` plus ``babble_clips``;
    for re-performance cases ``babble_clips`` when given (other speakers), else GRID ``test``
    clips not used as cases (natural cases: else the warped clips). Never the case's own clip,
    nor another take of the natural line.
    GRID clips whose words no other take says are skipped (reported through ``progress``).
    """
    for style in styles:
        if style not in GRID_STYLES:
            raise ParameterError(f"unknown re-performance style {style!r}; use some of {', '.join(GRID_STYLES)}")
    if grid_clips and styles and grid is None:
        raise ParameterError("re-performance cases need a GRID folder (--grid)")
    if natural and natural_words is None:
        raise ParameterError("natural cases need the takes' word table")
    cache_dir = Path(cache_dir)
    cases = []
    clips = [Path(c) for c in clips]
    # the spliced track's cache folder keeps its first name, so that cached cases stay valid
    style_dirs = {"spliced": cache_dir / "reperformance", "fluent": cache_dir / "fluent"}
    warped_dir, natural_dir = cache_dir / "warped", cache_dir / "natural"
    loaded: dict[Path, np.ndarray] = {}

    def sources(exclude: Sequence[str], paths: Sequence[Path]) -> list[np.ndarray]:
        out = []
        for p in paths:
            if p.stem not in exclude:
                if p not in loaded:
                    loaded[p] = read_scoring_audio(p, PICTURE_AUDIO_SR)
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
        babble_sources = sources([clip.stem], warped_pool)
        cases.append(build_warped_case(clip, warped_dir, seed=seed, babble_sources=babble_sources, babble_key=key))
    audio_cache: dict[str, np.ndarray] = {}
    for style in styles:
        for clip in grid_clips:
            name = f"reperf_{clip}" if style == "spliced" else f"{style}_{clip}"
            if progress:
                progress(f"case {style}/{name}")
            if _cached(style_dirs[style] / name, seed, key) is not None:
                cases.append(load_case(style_dirs[style] / name))
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
                    style_dirs[style],
                    seed=seed,
                    babble_sources=sources([clip], extra or grid_babble),
                    audio_cache=audio_cache,
                    babble_key=key,
                    style=style,
                )
            )
    takes = {p.stem for pair in natural for p in pair[:2]}
    take_audio: dict[Path, np.ndarray] = {}
    for dub_take, picture_take, name in natural:
        if progress:
            progress(f"case natural/{name}")
        if _cached(natural_dir / name, seed, key) is not None:
            cases.append(load_case(natural_dir / name))
            continue
        babble_sources = sources(sorted(takes), extra or grid_babble or clips)
        cases.append(
            build_natural_case(
                dub_take,
                picture_take,
                natural_words,
                natural_dir,
                name=name,
                seed=seed,
                babble_sources=babble_sources,
                babble_key=key,
                audio_cache=take_audio,
            )
        )
    return cases
