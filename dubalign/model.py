"""The lips-speech model: a dual encoder that maps lips and speech into one space.

Video (lip landmarks + blendshapes and/or grey mouth crops, resampled to VIDEO_RATE) and audio
(log-mel at FEATURE_RATE) each go through a stack of dilated temporal convolutions that see about
0.7 s around every frame, and come out as unit vectors. The audio embedding of a sound sits closest
to the video embedding of the picture moment it is lip-synced with: the sync cost between dub frame
d and picture time p is ``1 - cos(video(p), audio(d))``.

This module is what alignment uses, and it does not import torch: :class:`EncoderConfig`, the
numpy features both sides share, :class:`LipSyncModel` (inference on numpy arrays) and
:func:`load_model`, which reads the shipped, checksummed weights. The encoder runs on numpy
(:mod:`dubalign.inference`); the torch module :class:`SyncEncoder` that trains and adapts it lives
in :mod:`dubalign.encoder`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .audio import normalize_mel
from .errors import MediaError
from .inference import NumpyEncoder, fit_state, read_checkpoint
from .lips import LIP_POINTS, LipTrack
from .units import FEATURE_RATE, N_MELS

if TYPE_CHECKING:
    from .encoder import SyncEncoder

VIDEO_RATE = 25  # Hz: video features are resampled to this rate before the video encoder
AUDIO_PER_VIDEO = FEATURE_RATE // VIDEO_RATE  # audio frames per video frame (4)
# MediaPipe blendshapes that move with speech: cheekPuff, cheekSquint L/R (6-8) and jaw*/mouth*
# (23-49). Brows, eyes and nose carry no sync information and vary per speaker.
SPEECH_BLENDSHAPES = (6, 7, 8, *range(23, 50))
N_LIP_FEATURES = 2 * len(LIP_POINTS) + len(SPEECH_BLENDSHAPES)  # 80 landmark coords + 30 scores
DESIGNS = ("landmarks", "crops", "both")
MODEL_FILE = "lipsync.pt"


@dataclass
class EncoderConfig:
    design: str = "both"  # video input: "landmarks" (+ blendshapes), "crops" (mouth pixels), "both"
    n_lip: int = N_LIP_FEATURES  # per-frame landmark + blendshape features (z-scored per clip)
    n_mels: int = N_MELS  # log-mel bands of the audio input
    crop_pool: int = 2  # mouth crops are average-pooled by this factor first (CPU budget)
    crop_channels: tuple[int, ...] = (16, 32, 64)  # conv widths of the mouth-crop CNN (stride 2 each)
    crop_dim: int = 128  # per-frame feature size out of the mouth-crop CNN
    width: int = 128  # channels of the temporal convolutions (both encoders)
    video_dilations: tuple[int, ...] = (1, 2, 4)  # at VIDEO_RATE: receptive field 19 frames, 0.76 s
    audio_dilations: tuple[int, ...] = (1, 2, 4, 8, 16)  # at FEATURE_RATE: 67 frames, 0.67 s
    embed_dim: int = 128  # size of the shared unit-norm embedding
    dropout: float = 0.1  # inside the residual blocks, training only
    name: str = field(default="lipsync")  # human-readable tag stored with the weights

    def __post_init__(self):
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, not {self.design!r}")

    @property
    def uses_lips(self) -> bool:
        return self.design in ("landmarks", "both")

    @property
    def uses_crops(self) -> bool:
        return self.design in ("crops", "both")


# ----------------------------------------------------------------------------------------------
# numpy features (shared by training and inference so they cannot drift apart)


def lip_features(lips: np.ndarray, blendshapes: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Landmarks + speech blendshapes, z-scored per clip over the frames with a face.

    lips : np.ndarray [shape=(n_frames, 40, 2)]; blendshapes : [shape=(n_frames, 52)];
    present : [shape=(n_frames,)] bool. Returns [shape=(n_frames, N_LIP_FEATURES)] float32; frames
    without a face are zero (the clip mean).
    """
    speech = blendshapes[:, list(SPEECH_BLENDSHAPES)]
    x = np.concatenate([lips.reshape(len(lips), -1), speech], axis=1).astype(np.float32)
    if present.sum() >= 2:
        mu = x[present].mean(axis=0)
        sd = x[present].std(axis=0) + 1e-3
        x = (x - mu) / sd
    else:
        x = np.zeros_like(x)
    x[~present] = 0.0
    return x.astype(np.float32)


def standardize_crops(crops: np.ndarray) -> np.ndarray:
    """Each grey crop to zero mean and unit spread: lighting and exposure drop out.

    crops : np.ndarray [shape=(n_frames, CROP_H, CROP_W)] uint8 or float. Returns float32.
    """
    c = crops.astype(np.float32)
    mu = c.mean(axis=(1, 2), keepdims=True)
    sd = c.std(axis=(1, 2), keepdims=True) + 4.0  # grey levels: flat crops stay near zero
    return (c - mu) / sd


def video_grid(duration: float) -> np.ndarray:
    """Times (s) of the VIDEO_RATE grid from picture time 0 to ``duration`` inclusive."""
    return np.arange(int(np.floor(duration * VIDEO_RATE + 1e-6)) + 1) / VIDEO_RATE


def resample_track(
    times: np.ndarray, present: np.ndarray, feats: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame features at their own ``times`` -> the ``grid`` times, by linear interpolation.

    Frames without a face are bridged from their neighbours with a face; grid points whose nearest
    source frame has no face are marked absent. feats : [shape=(n_frames, ...)].
    Returns (feats [shape=(len(grid), ...)] float32, present [shape=(len(grid),)] bool).
    """
    n = len(times)
    flat = feats.reshape(n, -1).astype(np.float32)
    plan = _interpolation(times, present, grid)
    if plan is None:
        out = np.zeros((len(grid), flat.shape[1]), np.float32)
    else:
        i0, i1, w = plan
        out = flat[i0] * (1 - w) + flat[i1] * w
    nearest = np.clip(np.searchsorted(times, grid), 1, max(1, n - 1))
    left = np.abs(grid - times[nearest - 1]) <= np.abs(times[np.minimum(nearest, n - 1)] - grid)
    idx = np.where(left, nearest - 1, np.minimum(nearest, n - 1))
    pres = present[idx] & (grid <= times[-1] + 1.0 / VIDEO_RATE)
    return out.reshape(len(grid), *feats.shape[1:]), pres


def _interpolation(
    times: np.ndarray, present: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """How resample_track makes each grid row: ``rows[i0] * (1 - w) + rows[i1] * w`` with
    (i0, i1 [shape=(len(grid),)] source frames with a face, w [shape=(len(grid), 1)] float32);
    None when no frame has a face."""
    ok = np.flatnonzero(present)
    if len(ok) == 0:
        return None
    if len(ok) == 1:
        return np.repeat(ok, len(grid)), np.repeat(ok, len(grid)), np.zeros((len(grid), 1), np.float32)
    t_ok = times[ok]
    j = np.clip(np.searchsorted(t_ok, grid), 1, len(ok) - 1)
    t0, t1 = t_ok[j - 1], t_ok[j]
    w = np.clip((grid - t0) / np.maximum(t1 - t0, 1e-9), 0.0, 1.0)[:, None].astype(np.float32)
    return ok[j - 1], ok[j], w


class _GridCrops:
    """``resample_track(times, present, standardize_crops(crops), grid)[0]``, made a slice of grid
    rows at a time (``crops[a:b]``; ``np.asarray`` makes all of it). The whole float copy and its
    temporaries took 1.5 GB for a 10-minute picture; the uint8 crops are 4.6 kB a frame."""

    def __init__(self, times: np.ndarray, present: np.ndarray, crops: np.ndarray, grid: np.ndarray):
        self.crops = crops
        self.plan = _interpolation(times, present, grid)
        self.shape = (len(grid), *crops.shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("grid crops are read a slice of rows at a time")
        n = len(range(*rows.indices(len(self))))
        if self.plan is None:
            return np.zeros((n, *self.shape[1:]), np.float32)
        i0, i1, w = (a[rows] for a in self.plan)
        w = w[:, :, None]  # (n, 1, 1) against (n, H, W)
        return standardize_crops(self.crops[i0]) * (1 - w) + standardize_crops(self.crops[i1]) * w

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[0:len(self)]
        return out if dtype is None else out.astype(dtype)


# ----------------------------------------------------------------------------------------------
# inference wrapper and checkpoints



class LipSyncModel:
    """The trained dual encoder for inference on numpy arrays (CPU, eval mode, no gradients).

    encoder : a :class:`dubalign.inference.NumpyEncoder` (what :func:`load_model` gives: torch is
        not imported) or a torch :class:`dubalign.encoder.SyncEncoder` (an encoder being trained or
        adapted), which is then run in eval mode without gradients.
    """

    def __init__(self, encoder: NumpyEncoder | SyncEncoder, name: str | None = None):
        self._numpy = encoder if isinstance(encoder, NumpyEncoder) else None
        self._torch = None if self._numpy is not None else encoder.eval()
        self.cfg = encoder.cfg
        self.name = name or f"{self.cfg.name} ({self.cfg.design})"

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def logit_scale(self) -> float:
        """The trained inverse temperature of the contrastive loss, log-scaled (as in CLIP)."""
        if self._numpy is not None:
            return self._numpy.logit_scale
        return float(self._torch.logit_scale.detach())

    @property
    def encoder(self) -> SyncEncoder:
        """The torch encoder, for training and adaptation; for a model read from numpy weights it is
        built from them on first use, which imports torch. Inference keeps to the numpy weights:
        adapt a copy of this module and wrap it in a new LipSyncModel rather than changing it in place.
        """
        if self._torch is None:
            from .encoder import encoder_from_state

            self._torch = encoder_from_state(self.cfg, self._numpy.state)
        return self._torch

    def embed_video(self, track: LipTrack, *, times: np.ndarray | None = None) -> np.ndarray:
        """One unit embedding per picture frame of ``track`` (or per time of ``times``).

        times : optional [shape=(n,)] picture times (s) to embed at instead of the track's own
            frames, e.g. the PATH_RATE grid; the model's VIDEO_RATE output is interpolated linearly
            to them (the same interpolation training uses), saving a second interpolation.
        Returns np.ndarray [shape=(track.n_frames or n, embed_dim)] float32 unit rows; rows of
        frames without a face are bridged from their neighbours (callers mask them).
        """
        out_t = times
        if track.n_frames == 0:
            return np.zeros((0 if out_t is None else len(out_t), self.embed_dim), np.float32)
        times = np.asarray(track.times, dtype=np.float64)
        t0 = float(times[0])
        grid = t0 + video_grid(float(times[-1]) - t0)
        lips = crops = None
        if self.cfg.uses_lips:
            feats = lip_features(track.lips, track.blendshapes, track.present)
            lips, _ = resample_track(times, track.present, feats, grid)
        if self.cfg.uses_crops:
            crops = _GridCrops(times, track.present, track.crops, grid)
        emb = self._run("embed_video", lips, crops)  # (T_grid, E)
        # back to the track's own frame times or the requested ones (linear), renormalised
        out_times = times if out_t is None else np.asarray(out_t, dtype=np.float64)
        pos = np.clip((out_times - t0) * VIDEO_RATE, 0, len(grid) - 1)
        k0 = np.floor(pos).astype(int)
        k1 = np.minimum(k0 + 1, len(grid) - 1)
        w = (pos - k0)[:, None].astype(np.float32)
        out = emb[k0] * (1 - w) + emb[k1] * w
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-8
        return out.astype(np.float32)

    def embed_audio(self, mel: np.ndarray) -> np.ndarray:
        """mel : np.ndarray [shape=(n_frames, N_MELS)] raw ``log_mel`` at FEATURE_RATE.

        Returns np.ndarray [shape=(n_frames, embed_dim)] float32 unit rows, one per audio frame.
        """
        if mel.ndim != 2 or mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"mel must have shape (n_frames, {self.cfg.n_mels}), not {mel.shape}")
        if len(mel) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        return self._run("embed_audio", normalize_mel(mel)).astype(np.float32)

    def _run(self, method: str, *arrays: np.ndarray | None) -> np.ndarray:
        """``encoder.<method>`` on one clip of numpy arrays (each [shape=(T, ...)]) -> [shape=(T, E)]."""
        if self._numpy is not None:
            return getattr(self._numpy, method)(*arrays)
        import torch  # a torch encoder was given: torch is loaded already

        with torch.no_grad():
            batch = [None if a is None else torch.from_numpy(np.asarray(a))[None] for a in arrays]
            return getattr(self._torch, method)(*batch)[0].numpy()


def _default_path() -> Path:
    return Path(str(importlib.resources.files("dubalign.models") / MODEL_FILE))


def load_model(path: str | os.PathLike | None = None) -> LipSyncModel:
    """Load a checkpoint (default: the shipped ``models/lipsync.pt``), verified by its sha256.

    The digest is read from ``<path>.sha256`` beside the weights. The checkpoint is the file
    ``save_checkpoint`` writes with ``torch.save``; it is read without torch, and only tensors and
    plain values are unpickled (:func:`dubalign.inference.read_checkpoint`). The model runs on numpy.
    Raises MediaError when the file or its checksum is missing, does not match, or does not hold a
    SyncEncoder checkpoint.
    """
    p = Path(path) if path is not None else _default_path()
    # the shipped weights are part of the installation; a user's own file is the user's to fix
    fix = "reinstall dubalign" if path is None else "give a checkpoint written by scripts/train.py"
    if not p.is_file():
        where = "is not a file" if p.exists() else "not found"
        raise MediaError(f"lip-sync model {where}: {p}; {fix}")
    sums = Path(str(p) + ".sha256")
    if not sums.is_file():
        hint = fix if path is None else (
            f"scripts/train.py writes one; if you trust the file, create it with 'sha256sum {p.name} > {sums.name}'"
        )
        raise MediaError(f"checksum file {sums.name} missing beside {p.name}: {hint}")
    try:
        words = sums.read_bytes().decode("ascii", errors="replace").split()
        actual = hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError as e:
        raise MediaError(f"cannot read the lip-sync model {p.name}: {(e.strerror or str(e)).lower()}") from None
    expected = words[0].lower() if words else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise MediaError(f"checksum file {sums.name} holds no sha256 digest; {fix}")
    if actual != expected:
        again = "download the weights again" if path is None else "copy the file again"
        raise MediaError(
            f"lip-sync model {p.name} is corrupt: its sha256 ({actual[:12]}...) does not match {sums.name} "
            f"({expected[:12]}...); {fix} or {again}"
        )
    try:
        ckpt = read_checkpoint(p)
    except Exception:  # unpickling errors name byte codes and classes: none of it helps here
        raise MediaError(f"cannot load the lip-sync model {p.name}: not a PyTorch checkpoint; {fix}") from None
    if not isinstance(ckpt, dict) or not {"config", "state_dict"} <= set(ckpt):
        raise MediaError(
            f"cannot load the lip-sync model {p.name}: a PyTorch file, but not a dubalign checkpoint "
            f"(no 'config' and 'state_dict'); {fix}"
        )
    try:
        raw = dict(ckpt["config"])
        cfg = EncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except Exception:
        raise MediaError(
            f"cannot load the lip-sync model {p.name}: its model configuration is not one this version of "
            f"dubalign knows; {fix}"
        ) from None
    try:
        encoder = NumpyEncoder(cfg, fit_state(ckpt["state_dict"], cfg))
    except Exception:
        raise MediaError(
            f"cannot load the lip-sync model {p.name}: its weights do not fit its configuration; {fix}"
        ) from None
    return LipSyncModel(encoder)
