"""Accuracy of ``dubalign check`` on clips with planted offsets.

    python scripts/check_eval.py --data ../shared/data/dev --cache /work/bench/check_cache --json check_eval.json

Every clip's own audio is taken as in sync with its lips and shifted by each planted offset
(> 0: played later, silence in front; < 0: earlier, silence at the end; same length). The check
runs on the clip's lips and the shifted audio. Reported per planted offset and per source:
the median |error| of the clip's overall offset, the share within 20 and 40 ms, and how often the
BT.1359 verdict matches the planted offset's class; beside them, the same for every trusted window,
and the shift response: the error of (measured at the planted offset - measured at 0) against the
planted offset, which leaves out the clip's own sync (a source clip slightly out of sync, or the
model's error on that face, counts in the first figures but not in this one).
Face tracking is cached per clip (PictureAnalysis .npz) under --cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dubalign.check import check_sync, verdict_of  # noqa: E402
from dubalign.pipeline import AlignConfig, PictureAnalysis, analyze_picture, load_lip_model  # noqa: E402
from dubalign.units import ANALYSIS_SR  # noqa: E402

DEFAULT_OFFSETS_MS = (-200, -100, 0, 100, 200)
PICTURE_SUFFIXES = (".mp4", ".mpg", ".flv", ".mov", ".mkv", ".avi")


def delayed(y: np.ndarray, offset: float) -> np.ndarray:
    """``y`` played ``offset`` s later (earlier when negative), same length: silence fills the gap."""
    n = int(round(abs(offset) * ANALYSIS_SR))
    pad = np.zeros(n, np.float32)
    return np.concatenate([pad, y])[: len(y)] if offset >= 0 else np.concatenate([y[n:], pad])


def drifted(y: np.ndarray, rate: float) -> np.ndarray:
    """``y`` re-timed so that the sound of picture time t plays at ``t * (1 + rate)`` (offset
    ``rate * t``); linear interpolation, same length, silence where nothing maps."""
    src = np.arange(len(y)) / (1.0 + rate)
    return np.interp(src, np.arange(len(y)), y, left=0.0, right=0.0).astype(np.float32)


def source_of(path: Path) -> str:
    """The repository a dev clip comes from (the file name's first part)."""
    return path.name.split("__")[0]


def analysis(path: Path, cache: Path) -> PictureAnalysis:
    cached = cache / f"{path.stem}.npz"
    if cached.is_file():
        return PictureAnalysis.load(cached)
    result = analyze_picture(path, AlignConfig(workers=1))
    result.save(cached)
    return result


def summarise(rows: list[dict]) -> dict:
    """Figures over a list of per-clip rows (see main)."""
    err = np.array([r["error_ms"] for r in rows if r["error_ms"] is not None])
    win = np.concatenate([r["window_errors_ms"] for r in rows]) if rows else np.zeros(0)
    n_windows = sum(r["n_windows"] for r in rows)
    rel = np.array([r["shift_error_ms"] for r in rows if r.get("shift_error_ms") is not None])
    return {
        "clips": len(rows),
        "measured": int(len(err)),
        "median_abs_error_ms": round(float(np.median(np.abs(err))), 1) if len(err) else None,
        "within_20ms": round(float(np.mean(np.abs(err) <= 20)), 3) if len(err) else None,
        "within_40ms": round(float(np.mean(np.abs(err) <= 40)), 3) if len(err) else None,
        "verdict_correct": round(float(np.mean([r["verdict"] == r["truth_verdict"] for r in rows])), 3),
        "verdict_unknown": round(float(np.mean([r["verdict"] == "unknown" for r in rows])), 3),
        "shift_median_abs_error_ms": round(float(np.median(np.abs(rel))), 1) if len(rel) else None,
        "shift_within_20ms": round(float(np.mean(np.abs(rel) <= 20)), 3) if len(rel) else None,
        "windows": n_windows,
        "windows_trusted": round(len(win) / max(n_windows, 1), 3),
        "window_median_abs_error_ms": round(float(np.median(np.abs(win))), 1) if len(win) else None,
        "window_within_20ms": round(float(np.mean(np.abs(win) <= 20)), 3) if len(win) else None,
        "window_within_40ms": round(float(np.mean(np.abs(win) <= 40)), 3) if len(win) else None,
    }


def table(title: str, groups: dict[str, dict]) -> str:
    head = (f"| {title} | clips | median abs err (ms) | within 20 ms | within 40 ms | verdict correct | "
            "windows trusted | window within 20 ms | shift response: median abs err (ms) |")
    lines = [head, "|" + "---|" * 9]
    for name, s in groups.items():
        def pct(v):
            return "n/a" if v is None else f"{100 * v:.0f} %"

        lines.append(f"| {name} | {s['clips']} | {s['median_abs_error_ms']} | {pct(s['within_20ms'])} | "
                     f"{pct(s['within_40ms'])} | {pct(s['verdict_correct'])} | {pct(s['windows_trusted'])} | "
                     f"{pct(s['window_within_20ms'])} | {s['shift_median_abs_error_ms']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of talking clips with their own audio")
    ap.add_argument("--cache", type=Path, required=True, help="folder for the cached face tracking")
    ap.add_argument("--offsets", default=",".join(map(str, DEFAULT_OFFSETS_MS)),
                    help="planted offsets in ms, comma-separated (> 0: audio late)")
    ap.add_argument("--drift", type=float, default=600.0,
                    help="planted drift (ms per minute) on clips of at least --drift-min-s seconds")
    ap.add_argument("--drift-min-s", type=float, default=9.0, help="shortest clip given a planted drift (s)")
    ap.add_argument("--model", default="shipped", help="lip model: shipped or a checkpoint path")
    ap.add_argument("--json", type=Path, default=None, help="write every figure and per-clip row here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)  # shared machines: one core
    args.cache.mkdir(parents=True, exist_ok=True)
    offsets = [int(v) for v in args.offsets.split(",")]
    model = load_lip_model(args.model)
    rows, drifts, skipped, seconds = [], [], [], 0.0
    t_check = 0.0
    for path in sorted(p for p in args.data.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES):
        pic = analysis(path, args.cache)
        if pic.audio is None:
            skipped.append(path.name)
            continue
        for ms in offsets:
            t0 = time.perf_counter()
            result = check_sync(pic, delayed(pic.audio, ms / 1000), model=model)
            t_check += time.perf_counter() - t0
            seconds += pic.duration
            trusted = [w for w in result.windows if w.trusted]
            rows.append({
                "clip": path.name, "source": source_of(path), "duration_s": round(pic.duration, 2),
                "planted_ms": ms,
                "measured_ms": None if result.offset_s is None else round(1000 * result.offset_s, 1),
                "error_ms": None if result.offset_s is None else round(1000 * result.offset_s - ms, 1),
                "confidence": round(result.confidence, 3),
                "verdict": result.verdict, "truth_verdict": verdict_of(ms / 1000),
                "n_windows": len(result.windows),
                "window_errors_ms": [round(1000 * w.offset_s - ms, 1) for w in trusted],
                "drift_ms_per_min": None if result.drift_s_per_min is None else round(1000 * result.drift_s_per_min),
            })
        print(path.name, [(r["planted_ms"], r["measured_ms"], r["verdict"]) for r in rows[-len(offsets):]],
              flush=True)
        if args.drift and pic.duration >= args.drift_min_s:
            plain = check_sync(pic, model=model).drift_s_per_min
            result = check_sync(pic, drifted(pic.audio, args.drift / 60000), model=model)
            measured = None if result.drift_s_per_min is None else 1000 * result.drift_s_per_min
            drifts.append({
                "clip": path.name, "duration_s": round(pic.duration, 2), "planted_ms_per_min": args.drift,
                "measured_ms_per_min": None if measured is None else round(measured, 1),
                "unshifted_ms_per_min": None if plain is None else round(1000 * plain, 1),
                "error_over_clip_ms": None if measured is None else
                round((measured - args.drift) * pic.duration / 60, 1),
            })
            print("  drift", drifts[-1], flush=True)

    # the shift response: how the measured offset follows the planted one, whatever the clip's own sync
    at_zero = {r["clip"]: r["measured_ms"] for r in rows if r["planted_ms"] == 0}
    for r in rows:
        base = at_zero.get(r["clip"])
        if r["planted_ms"] != 0 and base is not None and r["measured_ms"] is not None:
            r["shift_error_ms"] = round(r["measured_ms"] - base - r["planted_ms"], 1)
    by_offset = {f"{ms:+d} ms": summarise([r for r in rows if r["planted_ms"] == ms]) for ms in offsets}
    by_source = {s: summarise([r for r in rows if r["source"] == s]) for s in sorted({r["source"] for r in rows})}
    overall = summarise(rows)
    confident = [r for r in rows if r["confidence"] >= 0.5]
    calibration = defaultdict(list)
    for r in rows:
        if r["error_ms"] is not None:
            band = "conf >= 0.9" if r["confidence"] >= 0.9 else "0.5 <= conf < 0.9" if r["confidence"] >= 0.5 \
                else "conf < 0.5"
            calibration[band].append(abs(r["error_ms"]) <= 40)
    out = {
        "data": str(args.data), "offsets_ms": offsets, "model": model.name, "skipped_no_audio": skipped,
        "overall": overall, "confident_clips": summarise(confident) if confident else None,
        "by_offset": by_offset, "by_source": by_source,
        "within_40ms_by_confidence": {k: [len(v), round(float(np.mean(v)), 3)] for k, v in calibration.items()},
        "drift": drifts,
        "check_s_per_clip_s": round(t_check / max(seconds, 1e-9), 4),
        "rows": rows,
    }
    print()
    print(table("planted", {**by_offset, "all": overall}))
    print()
    print(table("source", by_source))
    print()
    print("within 40 ms by confidence:", out["within_40ms_by_confidence"])
    for d in drifts:
        print(f"planted drift {d['planted_ms_per_min']:+.0f} ms/min on {d['clip']} ({d['duration_s']} s): measured "
              f"{d['measured_ms_per_min']} ms/min (unshifted clip: {d['unshifted_ms_per_min']}), error over the clip "
              f"{d['error_over_clip_ms']} ms")
    print("check time per clip second (model loaded, lips tracked):", out["check_s_per_clip_s"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
