"""Train the lips-speech dual encoder (dubalign.encoder.SyncEncoder) on cached front-end features.

    python scripts/train.py --feats /work/cache/feats --out /work/cache/runs/both0 --design both \
        --seed 0 --minutes 25

Data: every npz under FEATS/<source>/ made by scripts/prepare_data.py, except FEATS/dev (the
evaluation set is never read here). Each step takes segments of SEG_S seconds from random clips,
embeds video (upsampled to FEATURE_RATE as the pipeline does) and audio, and applies a symmetric
InfoNCE: for a video moment the positive is the audio frame at the same time; the negatives are
every other audio frame of the batch, i.e. the same clip at every other offset (the hard ones) and
the other clips. Frames within NEAR_FRAMES of the positive are left out of the negatives.

Augmentation: audio rooms (reverb-like smearing, EQ tilt, coloured noise, level); landmark noise and
gains; crop geometry (shift, scale, rotation, flip), lighting (brightness, contrast, gamma), blur
and noise. Runs from --seed; with --minutes the schedule follows wall time, so the exact number of
steps (and thus the result) depends on the machine's speed; pass --steps for a bit-exact rerun.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clip_offsets import in_fold, parse_fold  # noqa: E402

from dubalign.encoder import SyncEncoder, save_checkpoint  # noqa: E402
from dubalign.model import (  # noqa: E402
    AUDIO_PER_VIDEO,
    EncoderConfig,
    lip_features,
    resample_track,
    video_grid,
)
from dubalign.units import FEATURE_RATE  # noqa: E402

SEG_S = 1.6  # seconds of each training segment
NORM_CONTEXT_S = 4.0  # seconds either side of a segment that its audio is normalised over
NEAR_FRAMES = 2  # audio frames (20 ms) either side of the positive that are not negatives
# share of each step drawn from each source. GRID s1 is one speaker: more of it lowered dev accuracy
# (round 3 in models/MODEL_CARD.md), so it is kept small; lrc_ar and extra bring the speakers.
SOURCE_WEIGHTS = {"grid_s1": 0.15, "lrc_ar": 0.45, "extra": 0.4}
EVAL_ONLY = ("dev",)


class Clip:
    """One training clip on the VIDEO_RATE grid (features) and the FEATURE_RATE grid (mel)."""

    def __init__(self, path: Path, want_crops: bool, offset_s: float = 0.0):
        d = np.load(path)
        times, present, mel = d["times"], d["present"].astype(bool), d["mel"]
        mel = retime_mel(mel, offset_s)
        duration = min(float(times[-1]), (len(mel) - 1) / FEATURE_RATE)
        grid = video_grid(duration)
        self.lips, self.present = resample_track(
            times, present, lip_features(d["lips"], d["blendshapes"], present), grid
        )
        self.crops = None
        if want_crops:
            c, _ = resample_track(times, present, d["crops"], grid)
            self.crops = np.clip(np.round(c), 0, 255).astype(np.uint8)
        self.mel = mel[: len(grid) * AUDIO_PER_VIDEO].astype(np.float32)
        self.n = min(len(grid), len(self.mel) // AUDIO_PER_VIDEO)
        self.ok = self.n >= 8 and self.present[: self.n].mean() > 0.5


def retime_mel(mel: np.ndarray, offset_s: float) -> np.ndarray:
    """The clip's sound moved ``offset_s`` earlier (a clip whose sound comes late by that much is
    brought into sync): frames cut at the start, or the quietest frame repeated there."""
    k = int(round(offset_s * FEATURE_RATE))
    if k > 0:
        return mel[k:]
    if k < 0:
        quiet = mel[np.argmin(mel.sum(axis=1))]
        return np.concatenate([np.repeat(quiet[None], -k, axis=0), mel])
    return mel


def read_offsets(path: Path, min_confidence: float) -> dict[tuple[str, str], float]:
    """``clip_offsets.py``'s table -> {(source, clip): offset_s} of the clips measured off by two
    picture frames or more with at least ``min_confidence``."""
    with open(path) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {(r["source"], r["clip"]): float(r["offset_s"]) for r in rows
            if abs(int(r["offset_frames"])) >= 2 and float(r["confidence"]) >= min_confidence}


def load_clips(feats: Path, want_crops: bool, limit: int | None, *, fraction: float = 1.0,
               seed: int = 0, skip_fold: tuple[int, int] | None = None,
               offsets: dict[tuple[str, str], float] | None = None) -> dict[str, list[Clip]]:
    """Every training clip under ``feats``, by source; ``fraction`` keeps a seeded random share of
    each source's clips (for learning curves); ``skip_fold`` leaves that fold out (see in_fold),
    so that a model can measure the clips it was not trained on; ``offsets`` re-times clips
    (read_offsets)."""
    sources = {}
    rng = np.random.default_rng(seed)
    offsets = offsets or {}
    for src in sorted(p for p in feats.iterdir() if p.is_dir()):
        if src.name in EVAL_ONLY:
            continue
        files = sorted(src.glob("*.npz"))[:limit]
        if fraction < 1.0:
            keep = rng.permutation(len(files))[: max(1, round(fraction * len(files)))]
            files = [files[i] for i in sorted(keep)]
        if skip_fold is not None:
            files = [f for f in files if not in_fold(f.stem, skip_fold)]
        clips = [c for c in (Clip(f, want_crops, offsets.get((src.name, f.stem), 0.0))
                             for f in files) if c.ok]
        if clips:
            sources[src.name] = clips
    return sources


# ----------------------------------------------------------------------------------------------
# augmentation


def augment_mel(mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another room and microphone for raw log-mel [shape=(n, n_mels)], then per-utterance norm."""
    p = np.exp(mel.astype(np.float64))
    n, b = p.shape
    if rng.random() < 0.5:  # reverberant tail: smear power forward in time
        tau = rng.uniform(2, 15)
        h = np.exp(-np.arange(1, int(5 * tau) + 1) / tau)
        tail = np.stack([np.convolve(p[:, k], h)[:n] for k in range(b)], axis=1) / h.sum()
        p = p + rng.uniform(0.2, 1.5) * tail
    tilt = rng.uniform(-1.5, 1.5) * np.linspace(-1, 1, b) + np.convolve(
        rng.normal(0, 0.3, b + 8), np.ones(9) / 9, mode="valid")  # EQ in natural-log units
    p = p * np.exp(tilt)[None]
    if rng.random() < 0.6:  # coloured, fluctuating noise at 0-30 dB SNR
        snr = rng.uniform(0, 30)
        colour = np.exp(rng.uniform(-2, 2) * np.linspace(-1, 1, b))
        level = p.mean() * 10 ** (-snr / 10) * colour / colour.mean()
        p = p + level[None] * rng.exponential(1.0, size=p.shape)
    p = p * 10 ** rng.uniform(-2, 1)  # level against the log floor
    m = np.log(p + 1e-6)
    centre = np.median(m, axis=0, keepdims=True)
    return ((m - centre) / (m.std(axis=0, keepdims=True) + 1e-3)).astype(np.float32)


def augment_crops(crops: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(B, T, H, W) float grey levels 0..255 -> augmented and standardised per frame."""
    B, T, H, W = crops.shape

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen)

    # geometry: one affine per segment plus a small per-frame jitter (tracking noise)
    ang = u(-0.1, 0.1, B, 1)
    scale = u(0.88, 1.12, B, 1)
    flip = torch.where(torch.rand(B, 1, generator=gen) < 0.5, -1.0, 1.0)
    tx = u(-0.08, 0.08, B, 1) + u(-0.02, 0.02, B, T)
    ty = u(-0.1, 0.1, B, 1) + u(-0.03, 0.03, B, T)
    cos = (torch.cos(ang) / scale).expand(B, T)
    sin = (torch.sin(ang) / scale).expand(B, T)
    flip = flip.expand(B, T)
    theta = torch.stack([
        torch.stack([cos * flip, -sin * H / W, tx], -1),
        torch.stack([sin * W / H * flip, cos, ty], -1),
    ], -2).reshape(B * T, 2, 3)
    x = crops.reshape(B * T, 1, H, W)
    grid = F.affine_grid(theta, (B * T, 1, H, W), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    # lighting
    x = x / 255.0
    gamma = u(0.6, 1.6, B, 1).repeat_interleave(T, 0)[:, :, None, None]
    x = x.clamp(1e-4, 1) ** gamma
    x = x * u(0.5, 1.5, B, 1).repeat_interleave(T, 0)[:, :, None, None] + u(
        -0.2, 0.2, B, 1).repeat_interleave(T, 0)[:, :, None, None]
    # blur: a 5-tap gaussian of random width per segment
    sigma = u(0.05, 1.6, B).repeat_interleave(T)
    k = torch.exp(-(torch.arange(-2, 3.0)[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (N, 5)
    x = _blur(x, k, dim=3)
    x = _blur(x, k, dim=2)
    noise = u(0, 0.04, B).repeat_interleave(T)[:, None, None, None]
    x = x + torch.randn(x.shape, generator=gen) * noise
    x = x.reshape(B, T, H, W)
    mu = x.mean(dim=(2, 3), keepdim=True)
    sd = x.std(dim=(2, 3), keepdim=True) + 4.0 / 255.0
    return (x - mu) / sd


def _blur(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-image 5-tap filter ``k`` (N, 5) along ``dim`` (2: rows, 3: columns) of (N, 1, H, W)."""
    n = x.shape[dim]
    xp = F.pad(x, (2, 2, 0, 0) if dim == 3 else (0, 0, 2, 2), mode="replicate")
    return sum(xp.narrow(dim, i, n) * k[:, i, None, None, None] for i in range(5))


# ----------------------------------------------------------------------------------------------
# batches and loss


def make_batch(sources, batch: int, rng: np.random.Generator, want_crops: bool, augment: bool):
    T = int(round(SEG_S * FEATURE_RATE / AUDIO_PER_VIDEO))
    Ta = T * AUDIO_PER_VIDEO
    names = list(sources)
    w = np.array([SOURCE_WEIGHTS.get(s, 0.3) for s in names])
    lips = np.zeros((batch, T, sources[names[0]][0].lips.shape[1]), np.float32)
    crops = np.zeros((batch, T, 48, 96), np.float32) if want_crops else None
    vmask = np.zeros((batch, T), bool)
    mel = np.zeros((batch, Ta, sources[names[0]][0].mel.shape[1]), np.float32)
    amask = np.zeros((batch, Ta), bool)
    for b in range(batch):
        src = sources[names[rng.choice(len(names), p=w / w.sum())]]
        lens = np.array([c.n for c in src], float)
        clip = src[rng.choice(len(src), p=lens / lens.sum())]
        n = min(T, clip.n)
        s = int(rng.integers(0, clip.n - n + 1))
        x = clip.lips[s:s + n]
        if augment:
            x = x * rng.uniform(0.8, 1.2, x.shape[1]) + rng.normal(0, 0.15, x.shape)
            if rng.random() < 0.15:
                x[:, 80:] = 0.0  # no blendshapes: lean on landmarks too
        lips[b, :n] = x
        vmask[b, :n] = clip.present[s:s + n]
        if want_crops:
            crops[b, :n] = clip.crops[s:s + n]
        # normalise over up to NORM_CONTEXT_S around the segment, as inference does over the dub
        a0, a1 = s * AUDIO_PER_VIDEO, (s + n) * AUDIO_PER_VIDEO
        c0 = max(0, a0 - int(NORM_CONTEXT_S * FEATURE_RATE))
        c1 = min(len(clip.mel), a1 + int(NORM_CONTEXT_S * FEATURE_RATE))
        m = clip.mel[c0:c1]
        if augment:
            m = augment_mel(m, rng)
        else:
            m = ((m - np.median(m, 0)) / (m.std(0) + 1e-3)).astype(np.float32)
        m = m[a0 - c0:a1 - c0]
        mel[b, :len(m)] = m
        amask[b, :len(m)] = True
    out = {
        "lips": torch.from_numpy(lips), "vmask": torch.from_numpy(vmask),
        "mel": torch.from_numpy(mel), "amask": torch.from_numpy(amask),
    }
    if want_crops:
        out["crops"] = torch.from_numpy(crops)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feats", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--design", choices=("landmarks", "crops", "both"), default="both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-time budget")
    ap.add_argument("--steps", type=int, default=None, help="fixed steps (exact rerun)")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--queries", type=int, default=768, help="query moments per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    # one thread measured faster than two on the shared 2-core machine (spinning threads contend)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--limit", type=int, default=None, help="at most this many clips per source")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights")
    ap.add_argument("--fraction", type=float, default=1.0,
                    help="train on this share of each source's clips (a learning curve)")
    ap.add_argument("--skip-fold", default=None, metavar="K/N",
                    help="leave out fold K of a stable N-way split of the clips (to measure them)")
    ap.add_argument("--offsets", type=Path, default=None,
                    help="clip_offsets.py table: re-time the clips measured off by 2+ frames")
    ap.add_argument("--hard-weight", type=float, default=0.0,
                    help="weight of a second loss against the same clip within --hard-frames only")
    ap.add_argument("--hard-frames", type=int, default=20,
                    help="audio frames (10 ms) either side of the positive for --hard-weight")
    ap.add_argument("--min-confidence", type=float, default=0.0,
                    help="with --offsets: re-time only clips measured with this confidence")
    args = ap.parse_args()
    if not 0.0 < args.fraction <= 1.0:
        ap.error("--fraction must be in (0, 1]")
    try:
        skip_fold = parse_fold(args.skip_fold) if args.skip_fold is not None else None
    except ValueError as e:
        ap.error(f"--skip-fold: {e}")
    offsets = read_offsets(args.offsets, args.min_confidence) if args.offsets else None

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    args.out.mkdir(parents=True, exist_ok=True)

    cfg = EncoderConfig(design=args.design, name=f"lipsync-{args.design}")
    want_crops = args.design in ("crops", "both")
    t_load = time.time()
    sources = load_clips(args.feats, want_crops, args.limit, fraction=args.fraction,
                         seed=args.seed, skip_fold=skip_fold, offsets=offsets)
    if offsets:
        print(f"{len(offsets)} clips re-timed from {args.offsets}", flush=True)
    summary = {s: (len(c), round(sum(x.n for x in c) / 25 / 60, 1)) for s, c in sources.items()}
    print(f"data (clips, minutes): {summary}, loaded in {time.time() - t_load:.0f} s", flush=True)

    model = SyncEncoder(cfg)
    if args.init is not None:
        ckpt = torch.load(args.init, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
        print(f"weights from {args.init}", flush=True)
    model = model.to(device)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    other = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=args.lr)
    warmup = 50
    t0 = time.time()
    step, log, ema = 0, [], None
    while True:
        frac = step / args.steps if args.steps else (time.time() - t0) / (60 * args.minutes)
        if frac >= 1.0:
            break
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        b = make_batch(sources, args.batch, rng, want_crops, augment=True)
        if want_crops:
            b["crops"] = augment_crops(b["crops"], gen)
        b = {k: v.to(device) for k, v in b.items()}
        model.train()
        loss, acc = model.loss(b["lips"], b.get("crops"), b["vmask"], b["mel"], b["amask"],
                               n_query=args.queries, near=NEAR_FRAMES, generator=gen,
                               hard_weight=args.hard_weight, hard_frames=args.hard_frames)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        step += 1
        if step % 25 == 0:
            el = time.time() - t0
            print(f"step {step} loss {ema:.3f} acc {acc:.3f} lr {lr:.2e} "
                  f"temp {1 / model.logit_scale.exp().item():.3f} {el / step:.2f} s/step",
                  flush=True)
            log.append({"step": step, "loss": ema, "acc": acc, "seconds": el})
    model.cpu().eval()
    digest = save_checkpoint(model, args.out / "lipsync.pt")
    (args.out / "train.json").write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(args).items()}, "config": asdict(cfg), "data": summary,
        "steps": step, "seconds": time.time() - t0, "sha256": digest, "log": log,
    }, indent=1))
    print(f"saved {args.out / 'lipsync.pt'} after {step} steps", flush=True)


if __name__ == "__main__":
    main()
