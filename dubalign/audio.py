"""Audio features: mono analysis audio at ANALYSIS_SR, log-mel frames, speech activity.

Frame i of every feature here is centred on time i / FEATURE_RATE seconds.
"""

from __future__ import annotations

import functools

import numpy as np
import soxr

from .units import ANALYSIS_SR, FEATURE_RATE, MEL_HOP, MEL_NFFT, MEL_WIN, N_MELS

LOG_FLOOR = 1e-6  # added to mel power before the log, about -60 dB below full-scale speech
MEL_FMIN, MEL_FMAX = 60.0, 7600.0  # Hz: the speech band


# Channels whose correlation is below this are in opposite polarity: a plain mono mix of them
# loses most of their energy (an exact inverted copy, -1, cancels to silence).
PHASE_INVERTED_CORR = -0.5
# A polarity-aligned mix keeping less than this share of the energy of an uncorrelated mix still
# cancels (delayed copies, comb filtering): the loudest channel alone is analysed instead.
MIX_MIN_ENERGY = 0.5


def channel_correlation(samples: np.ndarray) -> np.ndarray:
    """Correlation of every pair of channels (without mean removal: audio has no DC to speak of).

    samples : np.ndarray [shape=(n_samples, n_channels)]. Returns [shape=(n_channels, n_channels)]
    in [-1, 1]; a silent channel correlates 0 with everything.
    """
    gram = _gram(samples)
    norm = np.sqrt(np.diag(gram))
    denom = np.outer(norm, norm)
    return np.divide(gram, denom, out=np.zeros_like(gram), where=denom > 0)


def inverted_channel_pairs(samples: np.ndarray) -> list[tuple[int, int, float]]:
    """Pairs of channels in opposite polarity: [(i, j, correlation)] with i < j, 0-based."""
    if samples.ndim != 2 or samples.shape[1] < 2:
        return []
    corr = channel_correlation(samples)
    c = corr.shape[0]
    return [(i, j, float(corr[i, j])) for i in range(c) for j in range(i + 1, c) if corr[i, j] < PHASE_INVERTED_CORR]


def analysis_mix(samples: np.ndarray) -> np.ndarray:
    """A mono mix in which channels cannot cancel each other.

    Channels in opposite polarity to the loudest channel (correlation under PHASE_INVERTED_CORR)
    are inverted before averaging, so a phase-inverted copy (L = -R) adds up instead of cancelling.
    Should the mix still lose energy (delayed copies, channels that cancel each other), the loudest
    channel alone is used. Any other dub (almost every real one) mixes exactly as a plain mean.

    samples : np.ndarray [shape=(n_samples, n_channels) or (n_samples,)]. Returns [shape=(n_samples,)].
    """
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0]
    gram = _gram(samples)
    loudest = int(np.argmax(np.diag(gram)))
    norm = np.sqrt(np.diag(gram))
    corr = np.divide(gram[loudest], norm * norm[loudest], out=np.zeros(len(norm)), where=norm > 0)
    signs = np.where(corr < PHASE_INVERTED_CORR, -1.0, 1.0)  # flip only the clearly inverted channels
    mixed_energy = signs @ gram @ signs  # energy of the sum of the polarity-matched channels
    if mixed_energy < MIX_MIN_ENERGY * np.trace(gram):  # an uncorrelated sum keeps the trace
        return samples[:, loudest]
    if (signs > 0).all():
        return samples.mean(axis=1)
    return (samples * signs.astype(samples.dtype)).mean(axis=1)


def _gram(samples: np.ndarray) -> np.ndarray:
    """Channel x channel inner products [shape=(n_channels, n_channels)] float64."""
    x = np.asarray(samples, dtype=np.float32)
    return (x.T @ x).astype(np.float64)


def to_analysis(samples: np.ndarray, sr: int) -> np.ndarray:
    """Mix down (see :func:`analysis_mix`) and resample to mono float32 at ANALYSIS_SR.

    samples : np.ndarray [shape=(n_samples, n_channels) or (n_samples,)]
    """
    y = np.asarray(analysis_mix(samples), dtype=np.float32)
    if sr != ANALYSIS_SR:
        y = soxr.resample(y, sr, ANALYSIS_SR, quality="HQ")
    return y.astype(np.float32)


def log_mel(y: np.ndarray) -> np.ndarray:
    """Log-mel frames of mono audio at ANALYSIS_SR.

    The same numbers as ``librosa.feature.melspectrogram`` (centred frames, zero padding, a
    periodic Hann window of MEL_WIN samples in MEL_NFFT, power 2, Slaney mel filters), in numpy:
    librosa's STFT compiles numba code on its first call, half a minute on a fresh install.

    Returns np.ndarray [shape=(n_frames, N_MELS)] float32, n_frames = len(y) // MEL_HOP + 1.
    """
    frames = _frames(np.asarray(y, dtype=np.float32), MEL_NFFT, MEL_HOP)
    spectrum = np.fft.rfft(frames * _window(), axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    return np.log(power.astype(np.float32) @ _mel_filters().T + LOG_FLOOR).astype(np.float32)


def _frames(y: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Frames of ``length`` samples every ``hop``, frame i centred on sample i * hop (zero padded).

    Returns a read-only view [shape=(len(y) // hop + 1, length)].
    """
    padded = np.pad(y, length // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::hop][: len(y) // hop + 1]


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """A periodic Hann window of MEL_WIN samples centred in MEL_NFFT (as librosa pads it)."""
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(MEL_WIN) / MEL_WIN)  # scipy's get_window("hann", fftbins=True)
    left = (MEL_NFFT - MEL_WIN) // 2
    return np.pad(win, (left, MEL_NFFT - MEL_WIN - left)).astype(np.float32)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


@functools.lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    """Slaney-normalised triangular mel filters [shape=(N_MELS, MEL_NFFT // 2 + 1)] float32."""
    fft_hz = np.fft.rfftfreq(MEL_NFFT, 1.0 / ANALYSIS_SR)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(MEL_FMIN), _hz_to_mel(MEL_FMAX), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter (Slaney)
    return weights.astype(np.float32)


def normalize_mel(mel: np.ndarray) -> np.ndarray:
    """Per-utterance normalisation: each band to zero median and unit spread over time.

    Removes the room's EQ and the level, which differ between a dub and the on-set track.
    """
    centre = np.median(mel, axis=0, keepdims=True)
    spread = np.std(mel, axis=0, keepdims=True) + 1e-3
    return ((mel - centre) / spread).astype(np.float32)


def frame_energy_db(y: np.ndarray) -> np.ndarray:
    """RMS energy in dB per feature frame. Returns [shape=(n_frames,)] with n_frames as log_mel."""
    frames = _frames(np.asarray(y, dtype=np.float32), MEL_WIN, MEL_HOP)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return (20.0 * np.log10(rms + 1e-9)).astype(np.float32)


def speech_activity(y: np.ndarray, *, floor_pct: float = 10.0, peak_pct: float = 97.0) -> np.ndarray:
    """Soft speech activity in [0, 1] per feature frame, from energy relative to the noise floor.

    A frame sits at 0.5 halfway (in dB) between the file's floor and its speech peaks; the result is
    smoothed over 50 ms so that stop closures inside words do not read as pauses.
    """
    db = frame_energy_db(y)
    lo, hi = np.percentile(db, floor_pct), np.percentile(db, peak_pct)
    mid, width = (lo + hi) / 2.0, max((hi - lo) / 8.0, 1.0)
    act = 0.5 + 0.5 * np.tanh((db - mid) / (2 * width))  # the logistic function, without scipy.special's import
    k = max(1, int(0.05 * FEATURE_RATE))
    return np.convolve(act, np.ones(k) / k, mode="same").astype(np.float32)
