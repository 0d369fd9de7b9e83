"""Shared generators for the tests: bundled GRID clips, shifted dubs, synthetic pictures.

Everything is written with PyAV and soundfile into the test's own tmp_path. The one expensive thing,
the face tracking of a GRID clip (MediaPipe, ~10 ms per frame), is cached per process so that all
test modules share a single analysis of each clip.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

GRID_DIR = Path(__file__).resolve().parent / "data" / "grid"
GRID_CLIP = "bbaf2n"  # a GRID s1 `test` clip: ~0.95 s of silence, "bin blue at f two now", silence
GRID_ALIGN_RATE = 25000  # GRID .align files count time in 1/25000 s
DUB_SR = 48000  # Hz: dubs are made like real ADR takes, 48 kHz / 24-bit


@dataclass(frozen=True)
class Word:
    start: float  # s
    end: float  # s
    word: str


def grid_clip(name: str = GRID_CLIP) -> Path:
    return GRID_DIR / "video" / f"{name}.mkv"


def grid_words(name: str = GRID_CLIP) -> list[Word]:
    """The clip's word alignment in seconds, silences ("sil", "sp") left out."""
    words = []
    for line in (GRID_DIR / "align" / f"{name}.align").read_text().splitlines():
        a, b, w = line.split()
        if w not in ("sil", "sp"):
            words.append(Word(int(a) / GRID_ALIGN_RATE, int(b) / GRID_ALIGN_RATE, w))
    return words


@functools.lru_cache(maxsize=4)
def grid_audio(name: str = GRID_CLIP) -> tuple[np.ndarray, int]:
    """The clip's own audio track, mono float32 at its own rate (16 kHz for GRID)."""
    with av.open(str(grid_clip(name))) as c:
        stream = c.streams.audio[0]
        sr = stream.rate
        to_float = av.AudioResampler(format="flt", layout="mono", rate=sr)  # int16 FLAC -> [-1, 1]
        chunks = [out.to_ndarray().reshape(-1) for f in c.decode(stream) for out in to_float.resample(f)]
        chunks += [out.to_ndarray().reshape(-1) for out in to_float.resample(None)]
    return np.concatenate(chunks).astype(np.float32), int(sr)


@functools.lru_cache(maxsize=4)
def grid_analysis(name: str = GRID_CLIP):
    """``analyze_picture`` of a bundled GRID clip, computed once per test process."""
    from dubalign.pipeline import AlignConfig, analyze_picture

    return analyze_picture(grid_clip(name), AlignConfig())


def to_rate(y: np.ndarray, sr: int, out_sr: int) -> np.ndarray:
    """Polyphase resampling of [shape=(n,)] or [shape=(n, c)] along time."""
    if sr == out_sr:
        return y.astype(np.float32)
    g = np.gcd(sr, out_sr)
    return resample_poly(y, out_sr // g, sr // g, axis=0).astype(np.float32)


def shifted_dub(offset: float, *, name: str = GRID_CLIP, sr: int = DUB_SR, channels: int = 2) -> np.ndarray:
    """The clip's own speech played ``offset`` s later (silence prepended), at ``sr``.

    Returns [shape=(n, channels)] float32; the right channel is a little quieter so the channels differ.
    """
    y, y_sr = grid_audio(name)
    y = to_rate(y, y_sr, sr)
    y = np.concatenate([np.zeros(int(round(offset * sr)), np.float32), y])
    gains = np.linspace(1.0, 0.7, channels, dtype=np.float32)
    return (y[:, None] * gains).astype(np.float32)


def write_dub(path: Path, samples: np.ndarray, sr: int = DUB_SR, subtype: str = "PCM_24") -> Path:
    sf.write(str(path), samples, sr, subtype=subtype)
    return path


def lag_seconds(a: np.ndarray, b: np.ndarray, sr: int, max_lag: float = 1.0) -> float:
    """Lag (s) of ``a`` behind ``b`` at the peak of their cross-correlation of energy envelopes.

    Envelopes, not waveforms: a phase vocoder keeps the envelope but not the waveform's phase.
    """
    hop = sr // 1000  # 1 ms envelope frames

    def env(x):
        n = len(x) // hop
        e = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
        return e - e.mean()

    ea, eb = env(a), env(b)
    n = min(len(ea), len(eb))
    ea, eb = ea[:n], eb[:n]
    m = int(max_lag * 1000)
    lags = np.arange(-m, m + 1)
    xc = [np.dot(ea[max(k, 0) : n + min(k, 0)], eb[max(-k, 0) : n - max(k, 0)]) for k in lags]
    return float(lags[int(np.argmax(xc))]) / 1000.0


def reencode(src: Path, dst: Path, rate: Fraction) -> Path:
    """Re-encode the picture of ``src`` at frame ``rate`` as H.264, video only.

    Frames are renumbered (frame i at i / rate), so the picture plays faster or slower than the
    source. The container is chosen by ``dst``'s suffix (.mp4, .mov, .mkv).
    """
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.time_base = Fraction(1, 1) / rate / 100  # finer than a frame: timestamps are exact
        for i, frame in enumerate(inp.decode(vin)):
            img = frame.to_ndarray(format="rgb24")
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = int(round(i / rate / vout.time_base))
            f.time_base = vout.time_base
            for p in vout.encode(f):
                out.mux(p)
        for p in vout.encode():
            out.mux(p)
    return dst


def mux_synthetic(
    path: Path,
    *,
    seconds: float,
    fps: Fraction = Fraction(25),
    audio: np.ndarray | None = None,
    sr: int = 48000,
    audio_start: float = 0.0,
    video: bool = True,
    video_start: float = 0.0,
    size: tuple[int, int] = (160, 120),
) -> Path:
    """A picture of grey frames (each frame's brightness = its index) and an optional mono track.

    audio_start, video_start : presentation time (s) in the file of the first audio sample and of
    the first video frame.
    """
    w, h = size
    with av.open(str(path), "w") as out:
        vout = None
        if video:
            vout = out.add_stream("libx264", rate=fps)
            vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
            vout.time_base = Fraction(1, 1) / fps / 100  # finer than a frame, so video_start can be exact
        aout = None
        if audio is not None:
            codec = "aac" if path.suffix in (".mp4", ".mov", ".m4a") else "flac"
            aout = out.add_stream(codec, rate=sr)
            aout.layout = "mono"
        if vout is not None:
            for i in range(int(round(seconds * fps))):
                img = np.full((h, w, 3), (i * 3) % 256, np.uint8)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = int(round((video_start + i / fps) / vout.time_base))
                frame.time_base = vout.time_base
                for p in vout.encode(frame):
                    out.mux(p)
            for p in vout.encode():
                out.mux(p)
        if aout is not None:
            fmt = aout.codec_context.format.name
            frame_len = aout.codec_context.frame_size or 1024
            y = np.asarray(audio, np.float32)
            start = int(round(audio_start * sr))
            for k in range(0, len(y), frame_len):
                chunk = y[k : k + frame_len]
                if fmt.startswith("s16"):
                    arr = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)[None, :]
                    frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="mono")
                else:
                    frame = av.AudioFrame.from_ndarray(chunk[None, :], format=fmt, layout="mono")
                frame.sample_rate = sr
                frame.pts = start + k
                frame.time_base = Fraction(1, sr)
                for p in aout.encode(frame):
                    out.mux(p)
            for p in aout.encode():
                out.mux(p)
    return path


def black_picture(path: Path, *, seconds: float = 1.0, fps: int = 25) -> Path:
    """A black picture (no face anywhere), video only."""
    w, h = 160, 120
    with av.open(str(path), "w") as out:
        vout = out.add_stream("libx264", rate=fps)
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        for _ in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.zeros((h, w, 3), np.uint8), format="rgb24")
            for p in vout.encode(frame):
                out.mux(p)
        for p in vout.encode():
            out.mux(p)
    return path


def click_track(seconds: float, at: float, sr: int) -> np.ndarray:
    """Silence with one short 2 kHz burst whose energy centre is at ``at`` s. [shape=(n,)] float32."""
    y = np.zeros(int(round(seconds * sr)), np.float32)
    n = int(0.004 * sr)
    t = np.arange(n) / sr
    burst = (np.hanning(n) * np.sin(2 * np.pi * 2000.0 * t) * 0.8).astype(np.float32)
    s = int(round(at * sr)) - n // 2
    y[s : s + n] = burst
    return y


def click_time(y: np.ndarray, sr: int) -> float:
    """Energy centroid (s) of the loudest 20 ms of ``y``."""
    e = y.astype(float) ** 2
    k = int(np.argmax(np.convolve(e, np.ones(int(0.02 * sr)), mode="same")))
    half = int(0.01 * sr)
    lo, hi = max(0, k - half), min(len(y), k + half)
    return float(np.sum(np.arange(lo, hi) * e[lo:hi]) / np.sum(e[lo:hi]) / sr)
