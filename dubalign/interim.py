"""Interim lip features: mouth opening against the audio envelope, no training needed.

A placeholder for the trained dual encoder (``dubalign.model``): it follows the same interface
(``embed_video``, ``embed_audio``, ``metric``) so the pipeline can run, and be measured, without
shipped weights. It is weak evidence: opening and loudness only roughly go together.
"""

from __future__ import annotations

import numpy as np

from .lips import LipTrack
from .units import FEATURE_RATE

ENVELOPE_SMOOTH_S = 0.04  # the audio envelope is smoothed to about a video frame


def _zscore(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    ref = x[mask] if mask is not None and mask.any() else x
    return (x - ref.mean()) / (ref.std() + 1e-6)


class InterimLipModel:
    """Hand-made 'embeddings': [opening, its change] for lips, [loudness, its change] for audio."""

    name = "interim (mouth opening vs. audio envelope; placeholder until the trained encoder)"
    metric = "sqeuclidean"
    # weak evidence: a high softmax temperature (sync.SyncFeatures.band) lets any usable guide decide
    temperature = 2.0

    def embed_video(self, track: LipTrack, *, times: np.ndarray | None = None) -> np.ndarray:
        """[shape=(n_frames, 2)] z-scored mouth opening and its change per second.

        times : optional picture times (s) to interpolate to instead of the track's own frames.
        """
        opening = _zscore(track.mouth_opening(), track.present)
        change = np.gradient(opening, track.times) if track.n_frames > 1 else np.zeros_like(opening)
        rows = np.stack([opening, _zscore(change, track.present)], axis=1).astype(np.float32)
        if times is None:
            return rows
        return np.stack([np.interp(times, track.times, col) for col in rows.T], axis=1).astype(np.float32)

    def embed_audio(self, mel: np.ndarray) -> np.ndarray:
        """[shape=(n_frames, 2)] z-scored loudness (log-mel mean) and its change, at FEATURE_RATE."""
        k = max(1, int(ENVELOPE_SMOOTH_S * FEATURE_RATE))
        loud = np.convolve(mel.mean(axis=1), np.ones(k) / k, mode="same")
        loud = _zscore(loud)
        change = _zscore(np.gradient(loud) * FEATURE_RATE)
        return np.stack([loud, change], axis=1).astype(np.float32)
