"""Audio features: mono analysis audio at ANALYSIS_SR, log-mel frames, speech activity.

Frame i of every feature here is centred on time i / FEATURE_RATE seconds.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.special

from .units import ANALYSIS_SR, FEATURE_RATE, MEL_HOP, MEL_NFFT, MEL_WIN, N_MELS

LOG_FLOOR = 1e-6  # added to mel power before the log, about -60 dB below full-scale speech
MEL_FMIN, MEL_FMAX = 60.0, 7600.0  # Hz: the speech band


def to_analysis(samples: np.ndarray, sr: int) -> np.ndarray:
    """Mix down and resample to mono float32 at ANALYSIS_SR.

    samples : np.ndarray [shape=(n_samples, n_channels) or (n_samples,)]
    """
    y = samples.mean(axis=1) if samples.ndim == 2 else samples
    y = np.asarray(y, dtype=np.float32)
    if sr != ANALYSIS_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_SR, res_type="soxr_hq")
    return y.astype(np.float32)


def log_mel(y: np.ndarray) -> np.ndarray:
    """Log-mel frames of mono audio at ANALYSIS_SR.

    Returns np.ndarray [shape=(n_frames, N_MELS)] float32, n_frames = len(y) // MEL_HOP + 1.
    """
    m = librosa.feature.melspectrogram(
        y=y, sr=ANALYSIS_SR, n_fft=MEL_NFFT, win_length=MEL_WIN, hop_length=MEL_HOP,
        n_mels=N_MELS, fmin=MEL_FMIN, fmax=MEL_FMAX, center=True, power=2.0,
    )
    return np.log(m + LOG_FLOOR).T.astype(np.float32)


def normalize_mel(mel: np.ndarray) -> np.ndarray:
    """Per-utterance normalisation: each band to zero median and unit spread over time.

    Removes the room's EQ and the level, which differ between a dub and the on-set track.
    """
    centre = np.median(mel, axis=0, keepdims=True)
    spread = np.std(mel, axis=0, keepdims=True) + 1e-3
    return ((mel - centre) / spread).astype(np.float32)


def frame_energy_db(y: np.ndarray) -> np.ndarray:
    """RMS energy in dB per feature frame. Returns [shape=(n_frames,)] with n_frames as log_mel."""
    rms = librosa.feature.rms(y=y, frame_length=MEL_WIN, hop_length=MEL_HOP, center=True)[0]
    return (20.0 * np.log10(rms + 1e-9)).astype(np.float32)


def speech_activity(y: np.ndarray, *, floor_pct: float = 10.0, peak_pct: float = 97.0) -> np.ndarray:
    """Soft speech activity in [0, 1] per feature frame, from energy relative to the noise floor.

    A frame sits at 0.5 halfway (in dB) between the file's floor and its speech peaks; the result is
    smoothed over 50 ms so that stop closures inside words do not read as pauses.
    """
    db = frame_energy_db(y)
    lo, hi = np.percentile(db, floor_pct), np.percentile(db, peak_pct)
    mid, width = (lo + hi) / 2.0, max((hi - lo) / 8.0, 1.0)
    act = scipy.special.expit((db - mid) / width)
    k = max(1, int(0.05 * FEATURE_RATE))
    return np.convolve(act, np.ones(k) / k, mode="same").astype(np.float32)
