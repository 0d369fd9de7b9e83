"""Units: every rate, hop and window of the pipeline, in one place.

Axis convention everywhere in dubalign: **time first** (``(n_frames, ...)``).
Times are in seconds (float) unless a name says otherwise.
"""

import numpy as np

ANALYSIS_SR = 16000  # Hz: every audio analysis (mel, guide, VAD) runs at this rate
FEATURE_RATE = 100  # feature frames per second on the audio side (log-mel hop = 10 ms)
MEL_HOP = ANALYSIS_SR // FEATURE_RATE  # samples per log-mel frame at ANALYSIS_SR
MEL_WIN = 400  # samples: 25 ms analysis window at ANALYSIS_SR
MEL_NFFT = 512  # FFT size for MEL_WIN
N_MELS = 40  # log-mel bands

PATH_RATE = FEATURE_RATE  # Hz: the grid on which the path solver works, on both axes


def seconds_to_frames(t, rate: float = FEATURE_RATE):
    """Seconds -> (fractional) frame index at ``rate`` frames per second."""
    return np.asarray(t) * rate


def frames_to_seconds(n, rate: float = FEATURE_RATE):
    """Frame index at ``rate`` frames per second -> seconds."""
    return np.asarray(n, dtype=float) / rate


def seconds_to_samples(t, sr: int) -> int:
    """Seconds -> nearest whole sample at ``sr``."""
    return int(round(float(t) * sr))
