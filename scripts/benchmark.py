#!/usr/bin/env python3
"""The dubalign benchmark (BENCHMARK.md): build cases, run dubalign and the reference methods,
score every output from its audio, write results.md and results.json. The code lives in the
repository's benchmarks/ folder, outside the installed package; run this from a checkout.

    python scripts/benchmark.py ../shared/data/dev --grid ../shared/data/grid_s1 \
        --babble ../shared/data/lrc_ar --out results/                 # every track
    python scripts/benchmark.py ../shared/data/dev --tracks natural --methods none,true-warp --out r/
    python scripts/benchmark.py --cases /work/bench/warped --methods none,oracle-shift --out r/
    python scripts/benchmark.py --cases /work/bench/warped --score-existing   # score out_*.wav

Tracks (--tracks, default: every track whose inputs are given):
  warped   CLIPS_DIR: talking clips whose audio is in sync with the lips (at least --min-dur long)
  spliced  --grid: a GRID speaker folder (video/, align/, split.tsv); its first --grid-cases `test`
           clips re-said with every word from another take and new pauses
  fluent   the same GRID clips re-said with the picture take's own pauses (jittered)
  natural  --natural-words (default CLIPS_DIR/crema_dfa_words.tsv): every ordered pair of the takes
           it lists (files beside it), one take's audio as the dub of another's picture
--babble: other speakers' clips for the noisy pictures (default: the other clips of the same kind;
for GRID that is the same speaker). Built cases are cached (default OUT/cases) so that re-runs do
not rebuild them.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import soundfile as sf  # noqa: E402

import benchmarks as B  # noqa: E402
from dubalign.errors import DubalignError, MediaError, ParameterError  # noqa: E402

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".mpg", ".mpeg", ".flv", ".webm", ".m4v"}
NATURAL_WORDS = "crema_dfa_words.tsv"  # the natural track's word table, looked for in CLIPS_DIR


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("clips", nargs="?", type=Path, help="folder of in-sync talking clips")
    ap.add_argument("--grid", type=Path, help="GRID folder for the spliced and fluent tracks")
    ap.add_argument("--natural-words", type=Path, help="word table of the natural track's takes (TSV)")
    ap.add_argument("--tracks", help=f"comma-separated, some of {','.join(B.TRACKS)} (default: all given)")
    ap.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    ap.add_argument("--cache", type=Path, help="case cache (default OUT/cases)")
    ap.add_argument("--babble", type=Path, help="folder of other speakers' clips for the noisy pictures")
    ap.add_argument("--babble-clips", type=int, default=16, help="how many --babble clips to use")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--limit", type=int, default=0, help="at most N cases of each track (0: all)")
    ap.add_argument("--grid-cases", type=int, default=30, help="GRID test clips re-performed (spliced, fluent)")
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
    ap.add_argument(
        "--speed",
        action="store_true",
        help="measure speed instead (benchmarks/speed.py): whole align on a >= 20 s 720p30 picture made from "
        "CLIPS_DIR's clips (default: the bundled GRID clips), the decode floor, the bundled example",
    )
    ap.add_argument("--speed-baseline", type=Path, help="with --speed: a folder holding an older dubalign/ to time too")
    return ap.parse_args(argv)


def natural_words_path(args: argparse.Namespace) -> Path | None:
    """The natural track's word table: --natural-words, else the one in CLIPS_DIR, if any."""
    if args.natural_words is not None:
        return args.natural_words
    if args.clips is not None and (args.clips / NATURAL_WORDS).is_file():
        return args.clips / NATURAL_WORDS
    return None


def select_tracks(args: argparse.Namespace) -> list[str]:
    """The tracks to run: --tracks (checked against the inputs given), else every track whose
    inputs are given (every track, for pre-built --cases alone)."""
    given = {
        "warped": args.clips is not None,
        "spliced": args.grid is not None,
        "fluent": args.grid is not None,
        "natural": natural_words_path(args) is not None,
    }
    if args.tracks is None:
        if not any(given.values()):
            return list(B.TRACKS)
        return [t for t in B.TRACKS if given[t]]
    tracks = [t for t in args.tracks.split(",") if t]
    B.check_selection([], [], tracks)
    needs = {
        "warped": "CLIPS_DIR",
        "spliced": "--grid",
        "fluent": "--grid",
        "natural": f"--natural-words or a CLIPS_DIR holding {NATURAL_WORDS}",
    }
    building = args.clips is not None or args.grid is not None or args.natural_words is not None
    for t in tracks:
        if building and not given[t]:
            raise ParameterError(f"the {t} track needs {needs[t]}")
    return tracks


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MediaError(f"{path} is not a folder ({what}); check the path")
    return path


def collect_cases(args: argparse.Namespace, tracks: list[str]) -> list[B.Case]:
    cases: list[B.Case] = []
    for root in args.cases:
        found = [c for c in B.find_cases(root) if c.track in tracks]
        cases += found[: args.limit] if args.limit else found
    clips = []
    if args.clips is not None and "warped" in tracks:
        for p in sorted(_folder(args.clips, "CLIPS_DIR").iterdir()):
            if p.suffix.lower() in VIDEO_SUFFIXES and B.picture_duration(p) >= args.min_dur:
                clips.append(p)
        if args.limit:
            clips = clips[: args.limit]
    styles = [t for t in B.GRID_STYLES if t in tracks]
    grid, grid_clips = None, []
    if args.grid is not None and styles:
        grid = B.GridCorpus.open(args.grid)
        n = min(args.grid_cases, args.limit) if args.limit else args.grid_cases
        grid_clips = list(grid.test[:n])
    natural, words = [], None
    table = natural_words_path(args)
    if table is not None and "natural" in tracks:
        words = B.read_word_table(table)
        takes = [table.parent / name for name in words if (table.parent / name).is_file()]
        if len(takes) < 2:
            raise MediaError(f"the natural track needs two takes or more beside {table}; found {len(takes)}")
        natural = B.natural_pairs(takes)
        if args.limit:
            natural = natural[: args.limit]
    if not clips and not grid_clips and not natural:
        return cases
    babble = []
    if args.babble is not None:
        babble = [p for p in sorted(_folder(args.babble, "--babble").iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES]
        babble = babble[: args.babble_clips]
    cache = args.cache or args.out / "cases"
    return cases + B.build_cases(
        clips,
        cache,
        seed=args.seed,
        grid=grid,
        grid_clips=grid_clips,
        babble_clips=babble,
        progress=_progress,
        styles=styles,
        natural=natural,
        natural_words=words,
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
            scores.setdefault((wav.stem[4:], case.track), []).append(B.score_case(case, y, sr, cache=cache))
    print("| output | track | in-sync % | acceptable % | tight % | median ms | p95 ms | n |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, track), s in sorted(scores.items()):
        m = B.pool(s)
        print(
            f"| {name} | {track} | {m.insync_pct:.1f} | {m.acceptable_pct:.1f} | "
            f"{m.tight_pct:.1f} | {m.median_abs_ms:.1f} | {m.p95_abs_ms:.1f} | {len(s)} |"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.speed:
        from benchmarks.speed import run_speed

        clips = sorted(p for p in args.clips.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if args.clips else None
        print(run_speed(args.out, clips=clips, baseline=args.speed_baseline, progress=_progress))
        return 0
    if args.clips is None and args.grid is None and args.natural_words is None and not args.cases:
        print("give CLIPS_DIR, --grid, --natural-words or --cases", file=sys.stderr)
        return 2
    methods = [m for m in args.methods.split(",") if m]
    conditions = [c for c in args.conditions.split(",") if c]
    try:
        B.check_selection(methods, conditions)  # before building cases, which takes minutes
        tracks = select_tracks(args)
        cases = collect_cases(args, tracks)
        if args.score_existing:
            score_existing(cases)
            return 0
        results = B.evaluate(
            cases,
            methods=methods,
            conditions=conditions,
            seed=args.seed,
            output_dir=args.out / "outputs" if args.keep_outputs else None,
            progress=_progress,
        )
        md = B.write_results(results, args.out)
    except DubalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
