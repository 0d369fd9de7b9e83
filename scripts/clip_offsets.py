"""Each training clip's own audio offset, measured by a lip-sync model (the SyncNet recipe).

    python scripts/clip_offsets.py --feats /work/cache/feats --out /work/cache/offsets.tsv

Broadcast and web clips often carry an offset between their sound and their picture; an encoder
trained on them learns to blur. For every clip under FEATS/<source>/ (made by prepare_data.py;
FEATS/dev is skipped) the audio is tried at every offset of -MAX_OFFSET..+MAX_OFFSET picture
frames, and the distance (1 - cos between the video embedding of each picture frame with a face and
the audio embedding at that frame's time plus the offset) is averaged over the whole clip. The
clip's offset is the argmin; its confidence, as in SyncNet, is the median distance over the offsets
less the minimum. A positive offset means the sound comes late: the lips at picture time t match
the audio at t + offset.

The model should not have been trained on the clips it measures (it would have learnt their
offsets as the truth); with the shipped model, which was, the figures show how far it agrees with
its own training data, not the data's true offsets. ``train.py --offsets`` reads this table.
"""

from __future__ import annotations

import argparse
import csv
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_offsets import MAX_OFFSET, load_track, offset_distances  # noqa: E402

from dubalign.model import load_model  # noqa: E402

EVAL_ONLY = ("dev",)
MIN_FRAMES = 15  # picture frames with a face and audio at every offset tried
MIN_RANGE = 3  # picture frames either side: a clip too short for this is not measured


def parse_fold(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), fold K of a stable N-way split (see in_fold)."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"a fold must read K/N, e.g. 0/2, not {text!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"a fold K/N needs 0 <= K < N, not {text!r}")
    return k, n


def in_fold(name: str, fold: tuple[int, int] | None) -> bool:
    """Whether clip ``name`` belongs to fold ``(k, n)`` of a stable n-way split (None: all do)."""
    return fold is None or zlib.crc32(name.encode()) % fold[1] == fold[0]


def clip_offset(dist: np.ndarray, ok: np.ndarray, present: np.ndarray) -> tuple[int, float, int]:
    """(offset in picture frames, confidence, frames used).

    Offsets are tried over the widest range up to +-MAX_OFFSET that leaves MIN_FRAMES frames valid
    at every offset (short clips get a narrower one); (0, nan, 0) when even +-MIN_RANGE does not.
    """
    for r in range(MAX_OFFSET, MIN_RANGE - 1, -1):
        cols = slice(MAX_OFFSET - r, MAX_OFFSET + r + 1)
        use = present & ok[:, cols].all(axis=1)
        if use.sum() >= MIN_FRAMES:
            curve = dist[use][:, cols].mean(axis=0)
            return int(np.argmin(curve)) - r, float(np.median(curve) - curve.min()), int(use.sum())
    return 0, float("nan"), 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feats", type=Path, required=True, help="folder of source folders of npz")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: shipped)")
    ap.add_argument("--out", type=Path, required=True, help="TSV written here")
    ap.add_argument("--fold", default=None, metavar="K/N",
                    help="only the clips of fold K of N (measured by a model trained without them)")
    args = ap.parse_args()
    try:
        fold = parse_fold(args.fold) if args.fold else None
    except ValueError as e:
        ap.error(f"--fold: {e}")

    model = load_model(args.model)
    rows = []
    for src in sorted(p for p in args.feats.iterdir() if p.is_dir() and p.name not in EVAL_ONLY):
        for f in sorted(src.glob("*.npz")):
            if not in_fold(f.stem, fold):
                continue
            d = np.load(f)
            track = load_track(d)
            if track.present.sum() < MIN_FRAMES:
                continue
            fps = 1.0 / float(np.median(np.diff(track.times)))
            dist, ok = offset_distances(model.embed_video(track), model.embed_audio(d["mel"]),
                                        track.times, fps)
            offset, conf, n = clip_offset(dist, ok, track.present)
            if n == 0:
                continue
            rows.append({"source": src.name, "clip": f.stem, "frames": n, "fps": round(fps, 3),
                         "offset_frames": offset, "offset_s": round(offset / fps, 4),
                         "confidence": round(conf, 4)})
        done = [r for r in rows if r["source"] == src.name]
        off = np.array([r["offset_frames"] for r in done])
        if len(off):
            print(f"{src.name}: {len(done)} clips, offset 0: {np.mean(off == 0):.0%}, "
                  f"|offset| <= 1: {np.mean(np.abs(off) <= 1):.0%}, >= 2: {np.sum(np.abs(off) >= 2)}",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} clips to {args.out}")


if __name__ == "__main__":
    main()
