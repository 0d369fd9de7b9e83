"""The lips-speech model: a dual encoder that maps lips and speech into one space.

Video (lip landmarks + blendshapes and/or grey mouth crops, resampled to VIDEO_RATE) and audio
(log-mel at FEATURE_RATE) each go through a stack of dilated temporal convolutions that see about
0.7 s around every frame, and come out as unit vectors. The audio embedding of a sound sits closest
to the video embedding of the picture moment it is lip-synced with: the sync cost between dub frame
d and picture time p is ``1 - cos(video(p), audio(d))``.

:class:`SyncEncoder` is the torch module (training); :class:`LipSyncModel` wraps it for inference on
numpy arrays (CPU, no grad) and :func:`load_model` loads the shipped, checksummed weights.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .audio import normalize_mel
from .errors import MediaError
from .files import atomic_outputs
from .lips import CROP_H, CROP_W, LIP_POINTS, LipTrack
from .units import FEATURE_RATE, N_MELS

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


# ----------------------------------------------------------------------------------------------
# building blocks


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each time step of a (B, C, T) tensor: padding does not leak."""

    def __init__(self, c: int):
        super().__init__()
        self.ln = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.transpose(1, 2)).transpose(1, 2)


class TemporalBlock(nn.Module):
    """Pre-norm residual block: dilated k=3 conv, GELU, 1x1 conv."""

    def __init__(self, c: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = ChannelNorm(c)
        self.conv = nn.Conv1d(c, c, 3, padding=dilation, dilation=dilation)
        self.proj = nn.Conv1d(c, c, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return x + self.drop(self.proj(F.gelu(self.conv(self.norm(x)))))


class TemporalEncoder(nn.Module):
    """(B, T, n_in) -> (B, T, embed_dim) unit vectors through dilated temporal convolutions."""

    def __init__(self, n_in: int, cfg: EncoderConfig, dilations: tuple[int, ...]):
        super().__init__()
        self.inp = nn.Conv1d(n_in, cfg.width, 5, padding=2)
        self.blocks = nn.ModuleList(TemporalBlock(cfg.width, d, cfg.dropout) for d in dilations)
        self.norm = ChannelNorm(cfg.width)
        self.out = nn.Conv1d(cfg.width, cfg.embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.transpose(1, 2))  # (B, C, T)
        for block in self.blocks:
            h = block(h)
        e = self.out(F.gelu(self.norm(h))).transpose(1, 2)  # (B, T, E)
        return F.normalize(e, dim=-1)


class CropCNN(nn.Module):
    """One grey mouth crop (CROP_H x CROP_W) -> crop_dim features, frame by frame."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        layers, c_in = [], 1
        for i, c in enumerate(cfg.crop_channels):
            k = 5 if i == 0 else 3
            conv = nn.Conv2d(c_in, c, k, stride=2, padding=k // 2)
            layers += [conv, nn.BatchNorm2d(c), nn.GELU()]
            c_in = c
        self.pool = cfg.crop_pool
        self.convs = nn.Sequential(*layers)
        h, w = CROP_H // self.pool, CROP_W // self.pool
        for _ in cfg.crop_channels:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.fc = nn.Linear(c_in * h * w, cfg.crop_dim)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:  # (N, H, W) standardised
        x = crops.unsqueeze(1)  # (N, 1, H, W)
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)  # (N, 1, H / pool, W / pool)
        h = self.convs(x)  # (N, C, h, w)
        return self.fc(h.flatten(1))  # (N, crop_dim)


class SyncEncoder(nn.Module):
    """Dual encoder: video frames at VIDEO_RATE, audio frames at FEATURE_RATE -> unit vectors."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, not {cfg.design!r}")
        self.cfg = cfg
        n_video = 0
        if cfg.design in ("landmarks", "both"):
            n_video += cfg.n_lip
        if cfg.design in ("crops", "both"):
            self.crop_cnn = CropCNN(cfg)
            n_video += cfg.crop_dim
        self.video = TemporalEncoder(n_video, cfg, cfg.video_dilations)
        self.audio = TemporalEncoder(cfg.n_mels, cfg, cfg.audio_dilations)
        # CLIP-style learnable temperature, log(1/0.07) at the start
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def uses_lips(self) -> bool:
        return self.cfg.design in ("landmarks", "both")

    @property
    def uses_crops(self) -> bool:
        return self.cfg.design in ("crops", "both")

    def embed_video(
        self, lips: torch.Tensor | None, crops: torch.Tensor | None,
        crop_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """lips (B, T, n_lip) z-scored; crops (B, T, H, W) standardised per frame -> (B, T, E).

        crop_mask (B, T) bool, optional: frames whose crop is worth running the CNN on (others get
        zero features), which saves the CNN's time on padding.
        """
        parts = []
        if self.uses_lips:
            parts.append(lips)
        if self.uses_crops:
            B, T = crops.shape[:2]
            if crop_mask is None:
                f = self.crop_cnn(crops.reshape(B * T, *crops.shape[2:])).reshape(B, T, -1)
            else:
                f = crops.new_zeros(B, T, self.cfg.crop_dim)
                f[crop_mask] = self.crop_cnn(crops[crop_mask])  # (N, crop_dim)
            parts.append(f)
        x = torch.cat(parts, dim=-1)  # (B, T, n_video)
        return self.video(x)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, T_a, n_mels) normalised per utterance -> (B, T_a, E)."""
        return self.audio(mel)

    def loss(
        self, lips: torch.Tensor | None, crops: torch.Tensor | None, vmask: torch.Tensor,
        mel: torch.Tensor, amask: torch.Tensor, *, n_query: int = 768,
        near: int = 2, generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, float]:
        """Symmetric InfoNCE on the FEATURE_RATE grid, the sync task itself.

        lips (B, T, n_lip), crops (B, T, H, W), vmask (B, T) bool face present, all at VIDEO_RATE;
        mel (B, 4T, n_mels), amask (B, 4T) bool real audio. The video embedding is upsampled to
        FEATURE_RATE as the pipeline does; for n_query random moments with a face the positive is
        the audio frame at the same time and the negatives every other audio frame of the batch:
        the same clip at every other offset (the hard negatives) and the other clips. Frames within
        ``near`` of the positive are neither (they sound the same). The same in the other direction.
        Returns (loss, share of queries whose best match is the positive).
        """
        v = self.embed_video(lips, crops, vmask if crops is not None else None)  # (B, T, E)
        a = self.embed_audio(mel)  # (B, Ta, E)
        B, Ta, _ = a.shape
        T = v.shape[1]
        vu = upsample_video(v, Ta)  # (B, Ta, E)
        k0 = (torch.arange(Ta, device=a.device) // AUDIO_PER_VIDEO).clamp(max=T - 1)
        k1 = (k0 + 1).clamp(max=T - 1)
        v_ok = (vmask[:, k0] & vmask[:, k1]).flatten()  # (B*Ta,) both video neighbours have a face
        a_ok = amask.flatten()
        q = torch.nonzero(v_ok & a_ok).squeeze(1)
        perm = torch.randperm(len(q), generator=generator)[:n_query].to(q.device)
        q = q[perm]  # (Q,) flat indices of the query moments
        clip = torch.arange(B * Ta, device=a.device) // Ta
        frame = torch.arange(B * Ta, device=a.device) % Ta
        close = (clip[q, None] == clip[None]) & ((frame[q, None] - frame[None]).abs() <= near)
        close &= q[:, None] != torch.arange(B * Ta, device=a.device)[None]
        scale = self.logit_scale.exp().clamp(max=100.0)
        flat_v, flat_a = vu.reshape(B * Ta, -1), a.reshape(B * Ta, -1)
        loss, acc = 0.0, 0.0
        for queries, keys, key_ok in ((flat_v, flat_a, a_ok), (flat_a, flat_v, v_ok)):
            logits = scale * queries[q] @ keys.T  # (Q, B*Ta)
            logits = logits.masked_fill(close | ~key_ok[None], float("-inf"))
            loss = loss + F.cross_entropy(logits, q) / 2
            acc += (logits.argmax(1) == q).float().mean().item() / 2
        return loss, acc


def upsample_video(emb: torch.Tensor, n_audio: int) -> torch.Tensor:
    """Video embeddings at VIDEO_RATE -> FEATURE_RATE by linear interpolation, renormalised.

    emb (B, T, E) with frame k at time k / VIDEO_RATE -> (B, n_audio, E) with frame j at time
    j / FEATURE_RATE; frames past the last video frame repeat it. This is what the pipeline does
    to build its cost matrix, so training sees the same thing.
    """
    T = emb.shape[1]
    pos = torch.arange(n_audio, device=emb.device, dtype=emb.dtype) / AUDIO_PER_VIDEO
    pos = pos.clamp(max=T - 1)
    k0 = pos.floor().long().clamp(max=T - 1)
    k1 = (k0 + 1).clamp(max=T - 1)
    w = (pos - k0.to(emb.dtype))[None, :, None]
    out = emb[:, k0] * (1 - w) + emb[:, k1] * w  # (B, n_audio, E)
    return F.normalize(out, dim=-1)


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
    ok = np.flatnonzero(present)
    if len(ok) == 0:
        return np.zeros((len(grid), *feats.shape[1:]), np.float32), np.zeros(len(grid), bool)
    t_ok = times[ok]
    j = np.clip(np.searchsorted(t_ok, grid), 1, max(1, len(ok) - 1))
    if len(ok) == 1:
        out = np.repeat(flat[ok], len(grid), axis=0)
    else:
        t0, t1 = t_ok[j - 1], t_ok[j]
        w = np.clip((grid - t0) / np.maximum(t1 - t0, 1e-9), 0.0, 1.0)[:, None].astype(np.float32)
        out = flat[ok[j - 1]] * (1 - w) + flat[ok[j]] * w
    nearest = np.clip(np.searchsorted(times, grid), 1, max(1, n - 1))
    left = np.abs(grid - times[nearest - 1]) <= np.abs(times[np.minimum(nearest, n - 1)] - grid)
    idx = np.where(left, nearest - 1, np.minimum(nearest, n - 1))
    pres = present[idx] & (grid <= times[-1] + 1.0 / VIDEO_RATE)
    return out.reshape(len(grid), *feats.shape[1:]), pres


# ----------------------------------------------------------------------------------------------
# inference wrapper and checkpoints


class LipSyncModel:
    """A trained :class:`SyncEncoder` for inference on numpy arrays (CPU, eval mode, no grad)."""

    def __init__(self, encoder: SyncEncoder, name: str | None = None):
        self.encoder = encoder.eval()
        self.cfg = encoder.cfg
        self.name = name or f"{self.cfg.name} ({self.cfg.design})"

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

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
        if self.encoder.uses_lips:
            feats = lip_features(track.lips, track.blendshapes, track.present)
            lips, _ = resample_track(times, track.present, feats, grid)
        if self.encoder.uses_crops:
            crops, _ = resample_track(times, track.present, standardize_crops(track.crops), grid)
        with torch.no_grad():
            emb = self.encoder.embed_video(
                None if lips is None else torch.from_numpy(lips)[None],
                None if crops is None else torch.from_numpy(crops)[None],
            )[0].numpy()  # (T_grid, E)
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
        x = torch.from_numpy(normalize_mel(mel))[None]
        with torch.no_grad():
            return self.encoder.embed_audio(x)[0].numpy().astype(np.float32)


def save_checkpoint(encoder: SyncEncoder, path: str | os.PathLike) -> str:
    """Write ``{"config", "state_dict"}`` to ``path`` and its sha256 to ``path.sha256``.

    Returns the hex digest.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    cfg = asdict(encoder.cfg)
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
    # the weights and their checksum land together: a stale .sha256 would make load_model refuse them
    with atomic_outputs(path, str(path) + ".sha256") as (tmp, tmp_sums):
        torch.save({"config": cfg, "state_dict": state}, tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp_sums.write_text(f"{digest}  {path.name}\n")
    return digest


def _default_path() -> Path:
    return Path(str(importlib.resources.files("dubalign.models") / MODEL_FILE))


def load_model(path: str | os.PathLike | None = None) -> LipSyncModel:
    """Load a checkpoint (default: the shipped ``models/lipsync.pt``), verified by its sha256.

    The digest is read from ``<path>.sha256`` beside the weights. Raises MediaError when the file
    or its checksum is missing, does not match, or does not hold a SyncEncoder checkpoint.
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
        with warnings.catch_warnings():  # torch warns about pickle protocols on foreign files
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # unpickling errors name byte codes and torch versions: none of it helps here
        raise MediaError(f"cannot load the lip-sync model {p.name}: not a PyTorch checkpoint; {fix}") from None
    if not isinstance(ckpt, dict) or not {"config", "state_dict"} <= set(ckpt):
        raise MediaError(
            f"cannot load the lip-sync model {p.name}: a PyTorch file, but not a dubalign checkpoint "
            f"(no 'config' and 'state_dict'); {fix}"
        )
    try:
        raw = dict(ckpt["config"])
        cfg = EncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        encoder = SyncEncoder(cfg)
    except Exception:
        raise MediaError(
            f"cannot load the lip-sync model {p.name}: its model configuration is not one this version of "
            f"dubalign knows; {fix}"
        ) from None
    try:
        encoder.load_state_dict(ckpt["state_dict"])
    except Exception:
        raise MediaError(
            f"cannot load the lip-sync model {p.name}: its weights do not fit its configuration; {fix}"
        ) from None
    return LipSyncModel(encoder)
