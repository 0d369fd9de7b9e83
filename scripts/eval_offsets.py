"""Offset accuracy of a lip-sync model on held-out clips (the SyncNet protocol).

    python scripts/eval_offsets.py --feats /work/cache/feats/dev --model models/lipsync.pt

For every window of CONTEXT consecutive picture frames with a face, the audio is tried at every
offset of -MAX_OFFSET..+MAX_OFFSET picture frames; the distance at an offset is 1 - cos between the
video embedding of each frame and the audio embedding at that frame's time plus the offset,
averaged over the window. The window counts as correct when the best offset is within +-1 frame
of 0 (the clips' own audio is in sync). Chance is about 3/31 = 10 %. Embeddings come from the same
numpy wrapper the pipeline uses (LipSyncModel.embed_video / embed_audio).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dubalign.lips import LipTrack  # noqa: E402
from dubalign.model import load_model  # noqa: E402
from dubalign.units import FEATURE_RATE  # noqa: E402

MAX_OFFSET = 15  # picture frames either side
CONTEXTS = (5, 15)  # picture frames averaged per decision


def load_track(d) -> LipTrack:
    return LipTrack(
        times=d["times"], present=d["present"].astype(bool), lips=d["lips"],
        blendshapes=d["blendshapes"], crops=d["crops"], face=0, n_faces=1, face_x=0.5,
    )


def offset_distances(video: np.ndarray, audio: np.ndarray, times: np.ndarray, fps: float):
    """1 - cos per picture frame and offset.

    Returns (dist [shape=(n_frames, 2 * MAX_OFFSET + 1)], ok [same shape] bool: audio exists).
    """
    offsets = np.arange(-MAX_OFFSET, MAX_OFFSET + 1)
    idx = np.round((times[:, None] + offsets[None] / fps) * FEATURE_RATE).astype(int)
    ok = (idx >= 0) & (idx < len(audio))
    a = audio[np.clip(idx, 0, len(audio) - 1)]  # (n, n_off, E)
    dist = 1.0 - np.einsum("ne,nke->nk", video, a)
    return dist, ok


def clip_windows(dist: np.ndarray, ok: np.ndarray, present: np.ndarray, context: int) -> np.ndarray:
    """Chosen offset (frames) of every complete window of ``context`` frames."""
    chosen = []
    centre = MAX_OFFSET
    for s in range(len(dist) - context + 1):
        sl = slice(s, s + context)
        if not present[sl].all() or not ok[sl].all():
            continue
        chosen.append(int(np.argmin(dist[sl].mean(axis=0))) - centre)
    return np.asarray(chosen, dtype=int)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feats", type=Path, required=True, help="folder of npz (prepare_data.py)")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: shipped)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    model = load_model(args.model)
    per_ctx = {c: [] for c in CONTEXTS}
    per_clip = {c: [] for c in CONTEXTS}
    t_embed, cpu_embed, seconds = 0.0, 0.0, 0.0
    files = sorted(args.feats.glob("*.npz"))
    for f in files:
        d = np.load(f)
        track = load_track(d)
        if track.present.sum() < max(CONTEXTS):
            continue
        t, c = time.perf_counter(), time.process_time()
        v = model.embed_video(track)
        a = model.embed_audio(d["mel"])
        t_embed += time.perf_counter() - t
        cpu_embed += time.process_time() - c
        seconds += float(track.times[-1])
        fps = 1.0 / float(np.median(np.diff(track.times)))
        dist, ok = offset_distances(v, a, track.times, fps)
        for c in CONTEXTS:
            ch = clip_windows(dist, ok, track.present, c)
            if len(ch):
                per_ctx[c].append(np.abs(ch) <= 1)
                per_clip[c].append(float(np.mean(np.abs(ch) <= 1)))
    out = {"model": model.name, "clips": len(per_clip[CONTEXTS[0]]),
           "embed_wall_s_per_picture_s": t_embed / max(seconds, 1e-9),
           "embed_cpu_s_per_picture_s": cpu_embed / max(seconds, 1e-9)}
    for c in CONTEXTS:
        allw = np.concatenate(per_ctx[c]) if per_ctx[c] else np.zeros(0)
        out[f"acc_ctx{c}"] = float(allw.mean()) if len(allw) else float("nan")
        out[f"acc_ctx{c}_clip_mean"] = float(np.mean(per_clip[c])) if per_clip[c] else float("nan")
        out[f"windows_ctx{c}"] = int(len(allw))
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
