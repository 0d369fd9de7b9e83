"""The lips-speech dual encoder in torch: training (scripts/train.py) and run-time adaptation (adapt.py).

Alignment never imports this module: it runs the same weights on numpy (:mod:`dubalign.inference`).
The architecture is described in :mod:`dubalign.model`; :func:`dubalign.inference.state_shapes` lists
the weights these modules hold, and the tests check that the two agree.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .files import atomic_outputs
from .lips import CROP_H, CROP_W
from .model import AUDIO_PER_VIDEO, DESIGNS, EncoderConfig

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
        if cfg.uses_lips:
            n_video += cfg.n_lip
        if cfg.uses_crops:
            self.crop_cnn = CropCNN(cfg)
            n_video += cfg.crop_dim
        self.video = TemporalEncoder(n_video, cfg, cfg.video_dilations)
        self.audio = TemporalEncoder(cfg.n_mels, cfg, cfg.audio_dilations)
        # CLIP-style learnable temperature, log(1/0.07) at the start
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def uses_lips(self) -> bool:
        return self.cfg.uses_lips

    @property
    def uses_crops(self) -> bool:
        return self.cfg.uses_crops

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
        hard_weight: float = 0.0, hard_frames: int = 20,
    ) -> tuple[torch.Tensor, float]:
        """Symmetric InfoNCE on the FEATURE_RATE grid, the sync task itself.

        lips (B, T, n_lip), crops (B, T, H, W), vmask (B, T) bool face present, all at VIDEO_RATE;
        mel (B, 4T, n_mels), amask (B, 4T) bool real audio. The video embedding is upsampled to
        FEATURE_RATE as the pipeline does; for n_query random moments with a face the positive is
        the audio frame at the same time and the negatives every other audio frame of the batch:
        the same clip at every other offset (the hard negatives) and the other clips. Frames within
        ``near`` of the positive are neither (they sound the same). The same in the other direction.
        ``hard_weight`` > 0 adds that much of a second InfoNCE whose negatives are only the same
        clip within ``hard_frames`` of the positive (the offsets where alignment errors live).
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
        if hard_weight > 0:
            local = (clip[q, None] == clip[None]) & ((frame[q, None] - frame[None]).abs() <= hard_frames)
        loss, acc = 0.0, 0.0
        for queries, keys, key_ok in ((flat_v, flat_a, a_ok), (flat_a, flat_v, v_ok)):
            logits = scale * queries[q] @ keys.T  # (Q, B*Ta)
            logits = logits.masked_fill(close | ~key_ok[None], float("-inf"))
            loss = loss + F.cross_entropy(logits, q) / 2
            if hard_weight > 0:
                loss = loss + hard_weight * F.cross_entropy(logits.masked_fill(~local, float("-inf")), q) / 2
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
# checkpoints


def encoder_from_state(cfg: EncoderConfig, state: dict[str, np.ndarray]) -> SyncEncoder:
    """A torch :class:`SyncEncoder` in eval mode holding ``state`` (numpy weights, as
    :func:`dubalign.inference.read_checkpoint` returns them, already checked against ``cfg``)."""
    encoder = SyncEncoder(cfg)
    encoder.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return encoder.eval()


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
