#!/usr/bin/env python3
"""The dubalign benchmark (BENCHMARK.md): build cases, run dubalign and the reference methods,
score every output from its audio, write results.md and results.json.

    python scripts/benchmark.py ../shared/data/dev --grid ../shared/data/grid_s1 --out results/
    python scripts/benchmark.py --cases /work/bench/warped --methods none,oracle-shift --out r/
    python scripts/benchmark.py --cases /work/bench/warped --score-existing   # score out_*.wav

CLIPS_DIR: talking clips whose audio is in sync with the lips (warped-performance cases).
--grid: a GRID speaker folder (video/, align/, split.tsv): re-performance cases from its `test`
clips. --babble: other speakers' clips for the noisy pictures (default: the other clips of the
same kind; for GRID that is the same speaker). Built cases are cached (default OUT/cases) so that
re-runs do not rebuild them.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import soundfile as sf  # noqa: E402

from dubalign import benchmark as B  # noqa: E402

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".mpg", ".mpeg", ".flv", ".webm", ".m4v"}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("clips", nargs="?", type=Path, help="folder of in-sync talking clips")
    ap.add_argument("--grid", type=Path, help="GRID folder for re-performance cases")
    ap.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    ap.add_argument("--cache", type=Path, help="case cache (default OUT/cases)")
    ap.add_argument("--babble", type=Path, help="folder of other speakers' clips for the noisy pictures")
    ap.add_argument("--babble-clips", type=int, default=16, help="how many --babble clips to use")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--limit", type=int, default=0, help="at most N clips of each kind (0: all)")
    ap.add_argument("--grid-cases", type=int, default=30, help="re-performance cases (test clips)")
    ap.add_argument("--min-dur", type=float, default=2.5, help="skip shorter clips (seconds)")
    ap.add_argument("--methods", default=",".join(B.METHODS), help="comma-separated")
    ap.add_argument("--conditions", default=",".join(B.CONDITIONS), help="comma-separated")
    ap.add_argument("--cases", type=Path, action="append", default=[], help="pre-built case folders to run")
    ap.add_argument(
        "--score-existing",
        action="store_true",
        help="only score the out_*.wav files found in the --cases folders (e.g. from eval/run.py)",
    )
    ap.add_argument("--keep-outputs", action="store_true", help="write outputs under OUT/outputs")
    return ap.parse_args(argv)


def collect_cases(args: argparse.Namespace) -> list[B.Case]:
    cases: list[B.Case] = []
    for root in args.cases:
        found = B.find_cases(root)
        cases += found[: args.limit] if args.limit else found
    if args.clips is None and args.grid is None:
        return cases
    clips = []
    if args.clips is not None:
        for p in sorted(args.clips.iterdir()):
            if p.suffix.lower() in VIDEO_SUFFIXES and B.picture_duration(p) >= args.min_dur:
                clips.append(p)
        if args.limit:
            clips = clips[: args.limit]
    grid, grid_clips = None, []
    if args.grid is not None:
        grid = B.GridCorpus.open(args.grid)
        n = min(args.grid_cases, args.limit) if args.limit else args.grid_cases
        grid_clips = list(grid.test[:n])
    babble = []
    if args.babble is not None:
        babble = [p for p in sorted(args.babble.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES]
        babble = babble[: args.babble_clips]
    cache = args.cache or args.out / "cases"
    return cases + B.build_cases(
        clips, cache, seed=args.seed, grid=grid, grid_clips=grid_clips, babble_clips=babble, progress=_progress
    )


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def score_existing(cases: list[B.Case]) -> None:
    """Score every out_*.wav already in the case folders; print pooled in-sync per output name."""
    scores: dict[tuple[str, str], list[B.Score]] = {}
    for case in cases:
        cache: dict = {}
        for wav in sorted(case.path.glob("out_*.wav")):
            y, sr = sf.read(wav, dtype="float32", always_2d=True)
            scores.setdefault((wav.stem[4:], case.kind), []).append(B.score_case(case, y, sr, cache=cache))
    print("| output | kind | in-sync % | acceptable % | tight % | median ms | p95 ms | n |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, kind), s in sorted(scores.items()):
        m = B.pool(s)
        print(
            f"| {name} | {kind} | {m.insync_pct:.1f} | {m.acceptable_pct:.1f} | "
            f"{m.tight_pct:.1f} | {m.median_abs_ms:.1f} | {m.p95_abs_ms:.1f} | {len(s)} |"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.clips is None and args.grid is None and not args.cases:
        print("give CLIPS_DIR, --grid or --cases", file=sys.stderr)
        return 2
    try:
        cases = collect_cases(args)
        if args.score_existing:
            score_existing(cases)
            return 0
        results = B.evaluate(
            cases,
            methods=[m for m in args.methods.split(",") if m],
            conditions=[c for c in args.conditions.split(",") if c],
            seed=args.seed,
            output_dir=args.out / "outputs" if args.keep_outputs else None,
            progress=_progress,
        )
    except B.DubalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results.to_json(), indent=1))
    md = results.to_markdown()
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
