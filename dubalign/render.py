"""Rendering: play the dub through a time map, onto the picture's timeline.

Output sample ``k`` (picture time ``k / sr``) plays the dub at ``timemap.to_dub(k / sr)``; where
that time falls before the dub's start or after its end the output is silent. Every channel is
warped through the same analysis positions, so the stereo image survives.

Two stretchers follow the map:

* ``"vocoder"``: a phase vocoder with identity phase locking (Laroche & Dolson, 1999) written here
  in numpy. Each synthesis frame reads the dub exactly where the map says (no accumulated drift);
  phases advance by the instantaneous frequency measured between two analysis frames one hop
  apart, so the analysis positions may jump or change speed freely. Memory is O(n): frames are
  processed in blocks and overlap-added straight into the output.
* ``"rubberband"``: the ``rubberband`` program driven by a dense key-frame map (engine: see
  ``RUBBERBAND_ENGINE``). Needs the program on ``PATH``.

``"auto"`` picks the default (see ``DEFAULT_METHOD``, chosen from ``scripts/renderer_timing.py``)
and falls back to the vocoder when the ``rubberband`` program is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import soundfile as sf

from dubalign.errors import DubalignError, ParameterError

if TYPE_CHECKING:
    from dubalign.timemap import TimeMap  # noqa: F401  (documentation only)

METHODS = ("auto", "vocoder", "rubberband")
# Chosen from scripts/renderer_timing.py (see its table): the one whose clicks land closest to
# where the map puts them.
DEFAULT_METHOD = "vocoder"

RUBBERBAND_PROGRAM = "rubberband"
# Rubber Band engine flag. Measured with rubberband 3.1.2 at 48 kHz (scripts/renderer_timing.py):
# the R3 engine ("--fine") does not follow dense key-frame maps (most clicks more than 30 ms off,
# wrong total length); the R2 engine ("--fast") lands them within ~2 ms mean, 7 ms max (but
# 5-20 ms early at 16 kHz).
RUBBERBAND_ENGINE = "--fast"
# Spacing (seconds of picture time) of the key frames handed to Rubber Band: dense enough to
# follow warps that change every 0.25 s and are smoothed over 80 ms.
KEYFRAME_SPACING_S = 0.010

VOCODER_WINDOW_S = 0.040  # s: analysis window, rounded to the nearest power of two in samples
VOCODER_OVERLAP = 4  # frames overlapping each output sample (hop = window / overlap)
VOCODER_BLOCK_FRAMES = 256  # frames transformed at once: bounds memory on long inputs
PEAK_NEIGHBOURS = 2  # a spectral peak beats this many bins on each side


class _MapLike(Protocol):
    def to_dub(self, pic_times): ...

    def to_picture(self, dub_times): ...


@dataclass(frozen=True)
class RenderResult:
    """The dub on the picture's timeline.

    audio : np.ndarray [shape=(n_out, n_channels)] float32
    method : what actually rendered: "vocoder", "rubberband", or "copy" (the map is a constant
        shift to within half a sample, so the samples were copied unchanged)
    fallback_reason : why ``method`` differs from the one asked for, else None
    """

    audio: np.ndarray
    method: str
    fallback_reason: str | None = None


def rubberband_available() -> bool:
    """True when the ``rubberband`` command-line program can be run."""
    return shutil.which(RUBBERBAND_PROGRAM) is not None


def render(
    audio: np.ndarray,
    sr: int,
    timemap: TimeMap | _MapLike,
    *,
    n_out: int,
    method: str = "auto",
) -> RenderResult:
    """Render ``audio`` (the dub) through ``timemap`` onto the picture's timeline.

    Parameters
    ----------
    audio : np.ndarray [shape=(n_samples, n_channels)]
        The dub, any rate, any channel count.
    sr : int > 0
        Sample rate of ``audio`` and of the output.
    timemap : TimeMap
        Anything with ``to_dub(pic_times)`` and ``to_picture(dub_times)`` (seconds), monotone.
    n_out : int > 0
        Length of the output in samples (the picture's duration at ``sr``).
    method : {"auto", "vocoder", "rubberband"}
        Stretcher; "auto" uses ``DEFAULT_METHOD`` and falls back to the vocoder when the
        ``rubberband`` program is missing. Asking for "rubberband" explicitly when it is missing
        raises.

    Returns
    -------
    RenderResult
        ``audio [shape=(n_out, n_channels)] float32``, silent where the map points outside the dub.
        A map that is a constant shift (to within half a sample) is rendered by copying samples,
        exactly, whatever the method (``RenderResult.method == "copy"``).

    Raises
    ------
    ParameterError
        Empty or non-2-D audio, non-finite samples, ``sr`` or ``n_out`` not positive, a non-finite
        or decreasing map, an unknown method, or "rubberband" asked for but not installed.
    DubalignError
        ``method="rubberband"`` and the program failed (with "auto" the vocoder takes over).
    """
    audio = _check_audio(audio)
    if int(sr) != sr or sr <= 0:
        raise ParameterError(f"sample rate must be a positive integer, got {sr!r}")
    sr = int(sr)
    if int(n_out) != n_out or n_out <= 0:
        raise ParameterError(f"n_out must be a positive number of samples, got {n_out!r}")
    n_out = int(n_out)
    if method not in METHODS:
        raise ParameterError(f"unknown render method {method!r}; use one of {', '.join(METHODS)}")
    _check_map(timemap)

    fallback_reason = None
    chosen = DEFAULT_METHOD if method == "auto" else method
    if chosen == "rubberband" and not rubberband_available():
        if method == "rubberband":
            raise ParameterError(
                "the 'rubberband' program is not on PATH: install Rubber Band "
                "(e.g. apt install rubberband-cli) or use method='vocoder'"
            )
        chosen = "vocoder"
        fallback_reason = "the 'rubberband' program is not on PATH"

    out = np.zeros((n_out, audio.shape[1]), dtype=np.float32)
    k_start, k_end = _dub_span(timemap, audio.shape[0], sr, n_out)
    shift = _pure_shift(timemap, sr)
    if shift is not None:
        # no stretcher can beat copying samples, and some (Rubber Band) smear even at ratio 1
        lo, hi = max(0, shift), min(n_out, audio.shape[0] + shift)
        if hi > lo:
            out[lo:hi] = audio[lo - shift : hi - shift]
        return RenderResult(audio=out, method="copy", fallback_reason=fallback_reason)
    if k_end > k_start and chosen == "rubberband":
        try:
            _render_rubberband(audio, sr, timemap, out, k_start, k_end)
        except DubalignError as exc:
            if method == "rubberband":
                raise
            chosen, fallback_reason = "vocoder", str(exc)
            out[:] = 0
    if k_end > k_start and chosen == "vocoder":
        _render_vocoder(audio, sr, timemap, out, k_start, k_end)
    return RenderResult(audio=out, method=chosen, fallback_reason=fallback_reason)


# ----------------------------------------------------------------------------- input checks


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 2:
        raise ParameterError(
            f"audio must be 2-D (n_samples, n_channels), got shape {audio.shape}; "
            "reshape mono audio with audio[:, None]"
        )
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ParameterError(f"audio is empty (shape {audio.shape}): nothing to render")
    audio = audio.astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise ParameterError("audio contains NaN or infinite samples; clean the dub first")
    return audio


def _check_map(timemap: _MapLike) -> None:
    for name in ("dub_t", "pic_t"):
        knots = getattr(timemap, name, None)
        if knots is None:
            continue
        knots = np.asarray(knots, dtype=float)
        if knots.size == 0 or not np.isfinite(knots).all():
            raise ParameterError(f"time map {name} is empty or not finite; rebuild the map")
        if np.any(np.diff(knots) <= 0):
            raise ParameterError(f"time map {name} is not strictly increasing; rebuild the map")
    probe = np.asarray(timemap.to_dub(np.array([0.0, 1.0])), dtype=float)
    if not np.isfinite(probe).all():
        raise ParameterError("time map gives non-finite dub times; rebuild the map")


def _dub_span(timemap: _MapLike, n_in: int, sr: int, n_out: int) -> tuple[int, int]:
    """Output samples ``[k_start, k_end)`` whose dub time lies inside ``[0, n_in / sr)``."""
    p0, p1 = np.asarray(timemap.to_picture(np.array([0.0, n_in / sr])), dtype=float)
    if not (np.isfinite(p0) and np.isfinite(p1)):
        raise ParameterError("time map gives non-finite picture times; rebuild the map")
    # 1e-9 absorbs float noise so a map placing the dub exactly on a sample keeps that sample
    k_start = int(np.clip(np.ceil(p0 * sr - 1e-9), 0, n_out))
    k_end = int(np.clip(np.ceil(p1 * sr - 1e-9), 0, n_out))
    return k_start, k_end


def _pure_shift(timemap: _MapLike, sr: int) -> int | None:
    """The map's offset in whole samples when it is a constant shift to within half a sample."""
    dub_t, pic_t = getattr(timemap, "dub_t", None), getattr(timemap, "pic_t", None)
    if dub_t is None or pic_t is None:
        return None
    offsets = (np.asarray(pic_t, dtype=float) - np.asarray(dub_t, dtype=float)) * sr
    if offsets.size == 0 or np.ptp(offsets) >= 0.5:
        return None
    return int(np.round(offsets.mean()))


def _dub_positions(timemap: _MapLike, out_samples: np.ndarray, sr: int) -> np.ndarray:
    """Output sample indices -> dub positions in (fractional) samples."""
    return np.asarray(timemap.to_dub(out_samples / sr), dtype=float) * sr


# ----------------------------------------------------------------------------- phase vocoder


def _vocoder_sizes(sr: int) -> tuple[int, int]:
    n_fft = int(2 ** round(np.log2(VOCODER_WINDOW_S * sr)))
    return n_fft, n_fft // VOCODER_OVERLAP


def _render_vocoder(audio: np.ndarray, sr: int, timemap: _MapLike, out: np.ndarray, k_start: int, k_end: int) -> None:
    """Overlap-add phase-locked vocoder frames into ``out[k_start:k_end]``."""
    n_in, n_ch = audio.shape
    n_fft, hop = _vocoder_sizes(sr)
    half = n_fft // 2
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    # periodic Hann squared sums to 3/8 * n_fft / hop over the overlapping frames
    gain = np.float32(1.0 / (0.375 * n_fft / hop))
    omega = 2 * np.pi * np.arange(half + 1) / n_fft  # bin centre, radians per sample
    bins = np.arange(half + 1)

    # synthesis frames centred on m * hop, covering every output sample of the span fully
    m_first = (k_start - half) // hop
    m_last = -(-(k_end + half) // hop)
    offsets = np.arange(n_fft) - half

    synth_phase_prev = None  # synthesis phase of the previous frame's reference spectrum
    for m0 in range(m_first, m_last + 1, VOCODER_BLOCK_FRAMES):
        ms = np.arange(m0, min(m0 + VOCODER_BLOCK_FRAMES, m_last + 1))
        centres = ms * hop
        pos = np.round(_dub_positions(timemap, centres.astype(float), sr)).astype(np.int64)
        frames = _frames(audio, pos, offsets, window)  # (B, C, N)
        spec = np.fft.rfft(frames, axis=-1)  # (B, C, K)
        # the mix is the phase reference: one rotation for all channels keeps them coherent
        ref = spec.sum(axis=1) if n_ch > 1 else spec[:, 0]
        ref_back = np.fft.rfft(_frames(audio, pos - hop, offsets, window).sum(axis=1), axis=-1)
        phi = np.angle(ref).astype(np.float64)
        # phase advance over one hop, from the instantaneous frequency at the analysis position
        dev = phi - np.angle(ref_back) - omega * hop
        advance = omega * hop + (dev - 2 * np.pi * np.round(dev / (2 * np.pi)))
        peaks = _peak_mask(np.abs(spec).sum(axis=1) if n_ch > 1 else np.abs(ref))

        rot = np.zeros_like(phi)
        for j in range(len(ms)):
            p = np.flatnonzero(peaks[j])
            if p.size == 0 or synth_phase_prev is None:
                rot_j = np.zeros(half + 1)
            else:
                # identity locking: each peak's phase is propagated, its region rotates with it
                theta_p = synth_phase_prev[p] + advance[j, p]
                region = np.searchsorted((p[:-1] + p[1:]) / 2, bins)
                rot_j = (theta_p - phi[j, p])[region]
            # wrapped, so float rounding does not grow with the number of frames
            rot_j = rot_j - 2 * np.pi * np.round(rot_j / (2 * np.pi))
            rot[j] = rot_j
            synth_phase_prev = phi[j] + rot_j

        spec *= np.exp(1j * rot).astype(spec.dtype)[:, None, :]
        synth = np.fft.irfft(spec, n=n_fft, axis=-1)  # (B, C, N)
        synth *= window * gain
        _overlap_add(out, synth, centres - half, k_start, k_end)


def _frames(audio: np.ndarray, pos: np.ndarray, offsets: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Windowed frames centred on dub samples ``pos``, zeros outside the dub.

    Returns np.ndarray [shape=(n_frames, n_channels, n_fft)] float32
    """
    n_fft = len(offsets)
    starts = pos + offsets[0]
    if starts.min() >= 0 and starts.max() + n_fft <= audio.shape[0]:
        # a strided view gathers whole frames; much faster than indexing every sample
        frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft, axis=0)[starts]
        return frames * window  # (B, C, N)
    idx = starts[:, None] + np.arange(n_fft)[None, :]
    inside = (idx >= 0) & (idx < audio.shape[0])
    frames = audio[np.clip(idx, 0, audio.shape[0] - 1)]  # (B, N, C)
    frames *= (inside * window[None, :])[:, :, None]
    return np.ascontiguousarray(frames.transpose(0, 2, 1))


def _peak_mask(mag: np.ndarray) -> np.ndarray:
    """Bins louder than their ``PEAK_NEIGHBOURS`` neighbours on each side (per frame)."""
    padded = np.pad(mag, ((0, 0), (PEAK_NEIGHBOURS, PEAK_NEIGHBOURS)))
    n = mag.shape[1]
    mask = mag > 0
    for d in range(1, PEAK_NEIGHBOURS + 1):
        mask &= mag > padded[:, PEAK_NEIGHBOURS - d : PEAK_NEIGHBOURS - d + n]
        mask &= mag >= padded[:, PEAK_NEIGHBOURS + d : PEAK_NEIGHBOURS + d + n]
    return mask


def _overlap_add(out: np.ndarray, frames: np.ndarray, starts: np.ndarray, k_start: int, k_end: int) -> None:
    """Add ``frames [shape=(B, C, N)]`` at output samples ``starts``, only inside the span."""
    n_fft = frames.shape[2]
    for frame, s in zip(frames, starts, strict=True):
        lo, hi = max(s, k_start), min(s + n_fft, k_end)
        if hi > lo:
            out[lo:hi] += frame[:, lo - s : hi - s].T


# ----------------------------------------------------------------------------- Rubber Band


def _keyframes(timemap: _MapLike, sr: int, k_start: int, k_end: int, i0: int, i1: int) -> np.ndarray:
    """Key frames ``[shape=(n, 2)] int64``: (input sample, output sample) within the span.

    Both columns strictly increase, from (0, 0) to (i1 - i0, k_end - k_start).
    """
    step = max(1, int(round(KEYFRAME_SPACING_S * sr)))
    knots = np.asarray(getattr(timemap, "pic_t", []), dtype=float) * sr
    out_pos = np.union1d(np.arange(k_start, k_end, step), np.round(knots).astype(np.int64))
    out_pos = out_pos[(out_pos > k_start) & (out_pos < k_end)]
    in_pos = np.round(_dub_positions(timemap, out_pos.astype(float), sr)).astype(np.int64) - i0
    pairs = [(0, 0)]
    for a, b in zip(in_pos, out_pos - k_start, strict=True):
        if pairs[-1][0] < a < i1 - i0 and pairs[-1][1] < b:
            pairs.append((int(a), int(b)))
    pairs.append((i1 - i0, k_end - k_start))
    return np.asarray(pairs, dtype=np.int64)


def _render_rubberband(
    audio: np.ndarray, sr: int, timemap: _MapLike, out: np.ndarray, k_start: int, k_end: int
) -> None:
    """Stretch the part of the dub that the span plays with the ``rubberband`` program."""
    ends = _dub_positions(timemap, np.array([k_start, k_end], dtype=float), sr)
    i0 = int(np.clip(np.round(ends[0]), 0, audio.shape[0]))
    i1 = int(np.clip(np.round(ends[1]), i0, audio.shape[0]))
    if i1 - i0 < 2:
        return
    keys = _keyframes(timemap, sr, k_start, k_end, i0, i1)
    n_target = k_end - k_start

    with tempfile.TemporaryDirectory(prefix="dubalign-rb-") as tmp:
        src = os.path.join(tmp, "in.wav")
        dst = os.path.join(tmp, "out.wav")
        mapfile = os.path.join(tmp, "map.txt")
        # float WAV: no 16-bit quantisation and no clipping of hot dubs on the way through
        sf.write(src, audio[i0:i1], sr, subtype="FLOAT")
        np.savetxt(mapfile, keys, fmt="%d")
        cmd = [
            RUBBERBAND_PROGRAM, "-q", RUBBERBAND_ENGINE, "--ignore-clipping",
            "--time", repr(n_target / (i1 - i0)), "--timemap", mapfile, src, dst,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DubalignError(
                f"rubberband failed ({proc.returncode}): {proc.stderr.strip()[-300:]}; try method='vocoder'"
            )
        stretched, _ = sf.read(dst, dtype="float32", always_2d=True)
    n = min(n_target, stretched.shape[0])
    out[k_start : k_start + n] = stretched[:n]
