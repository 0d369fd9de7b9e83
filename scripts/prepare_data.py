"""Run dubalign's own front end over talking-face clips and cache the features for training.

One npz per clip in OUT/<source>/<clip>.npz with
    times (n,) float64, present (n,) bool, lips (n, 40, 2) float32, blendshapes (n, 52) float32,
    crops (n, 48, 96) uint8   -- the LipTrack of the picture, at the frames' own times
    mel (m, N_MELS) float32    -- raw log-mel of the clip's own audio, FEATURE_RATE, picture time
Clips already in the cache are skipped, so the script can be stopped and restarted.

    python scripts/prepare_data.py ../shared/data/grid_s1 ../shared/data/lrc_ar \
        ../shared/data/extra --out /work/cache/feats --jobs 2
    python scripts/prepare_data.py ../shared/data/dev --out /work/cache/feats   # evaluation only

For GRID folders (a ``split.tsv`` beside ``video/``) only the clips marked ``train`` are taken,
unless ``--split`` says otherwise.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import traceback
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VIDEO_EXTS = (".mp4", ".mkv", ".mpg", ".avi", ".mov", ".flv", ".webm")


def list_clips(src: Path, split: str, limit: int | None, seed: int) -> list[Path]:
    """The clips of one source folder, GRID's split honoured, optionally a seeded subset."""
    split_file = src / "split.tsv"
    if split_file.is_file():
        with open(split_file) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        names = {r["clip"] for r in rows if r["split"] == split}
        clips = sorted(p for p in (src / "video").iterdir() if p.stem in names)
    else:
        clips = sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    if limit is not None and len(clips) > limit:
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(len(clips), size=limit, replace=False))
        clips = [clips[i] for i in keep]
    return clips


def process(job: tuple[str, str]) -> str | None:
    """Front end of one clip into one npz (written atomically). Returns an error line or None."""
    src, dst = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from dubalign.audio import log_mel
    from dubalign.files import atomic_output
    from dubalign.lips import track_lips
    from dubalign.media import iter_frames, read_picture_audio

    try:
        y = read_picture_audio(src)
        if y is None:
            return f"{src}: no audio track, skipped"
        track = track_lips(iter_frames(src))
        mel = log_mel(y)
        with atomic_output(dst) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f, times=track.times, present=track.present, lips=track.lips,
                blendshapes=track.blendshapes, crops=track.crops, mel=mel,
            )
    except Exception as e:  # one bad clip must not stop a long run
        return f"{src}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=2)}"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", nargs="+", type=Path, help="source folders of clips")
    ap.add_argument("--out", type=Path, required=True, help="cache (a folder per source)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many clips per source")
    ap.add_argument("--split", default="train", help="GRID split to take (default: train)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    args = ap.parse_args()

    jobs = []
    for src in args.src:
        out = args.out / src.name
        out.mkdir(parents=True, exist_ok=True)
        for clip in list_clips(src, args.split, args.limit, args.seed):
            dst = out / f"{clip.stem}.npz"
            if not dst.exists():
                jobs.append((str(clip), str(dst)))
    print(f"{len(jobs)} clips to prepare", flush=True)
    errors = []
    with Pool(args.jobs) as pool:
        for err in tqdm(pool.imap_unordered(process, jobs), total=len(jobs), mininterval=10):
            if err:
                errors.append(err)
                tqdm.write(err.splitlines()[0])
    print(f"done: {len(jobs) - len(errors)} prepared, {len(errors)} failed", flush=True)


if __name__ == "__main__":
    main()
