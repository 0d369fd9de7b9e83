"""``dubalign batch``: a reel's cue list in one command (a thin click layer over
:func:`dubalign.batch.run_batch`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .batch import (
    DEFAULT_HANDLES,
    DEFAULT_TEMPLATE,
    SUMMARY_JSON,
    BatchConfig,
    BatchInterrupted,
    BatchResult,
    CueOutcome,
    parse_column_map,
    run_batch,
)
from .console import alignment_options, fail, one_line
from .cuelist import CONTROL_FIELDS, FIELDS
from .errors import DubalignError
from .pipeline import AlignConfig
from .timecode import RATE_CHOICES, parse_rate

EXIT_FAILED_TAKES = 1  # the reel ran, but some takes failed (see the summary)
EXIT_ERROR = 2  # nothing ran: bad options or an unreadable cue list
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

_COLUMN_HELP = {
    "cue": "cue id; rows with the same id are one cue (required)",
    "take": "take file(s); several in one cell: a.wav|b.wav (required)",
    "picture": "the cue's own picture, else --picture REEL",
    "tc_in": "record in: timecode at --fps on the picture's clock",
    "tc_out": "record out; the region is in..out plus --handles",
    "character": "into the summary and the BWF description",
    "line": "the dialogue, likewise",
    "sync_points": "DUB=PICTURE pairs the map must pass through, e.g. 0.5=1.25 1.2=01:00:03:10",
    "protect": "dub spans played at their recorded speed, e.g. 0.2-0.6 1.0-1.3",
    "tightness": "0 (one shift for the whole take) .. 1 (warp freely)",
    "min_stretch": "slowest local rate for these takes (else the default)",
    "max_stretch": "fastest local rate for these takes",
    "plot": "yes/no: a sync plot for these takes (else as --plots says)",
    "preview": "yes/no: a preview for these takes (else as --previews says)",
}
assert set(_COLUMN_HELP) == set(FIELDS)
BATCH_HELP = "\n".join([
    "Align every take of the cue list CUES (CSV/TSV/XLSX) to its picture.",
    "",
    "Writes one Broadcast WAV per take (stamped with the cue's timecode), one report per cue, a reel "
    "summary (summary.csv, summary.json) marking the best take of each cue and a review page (index.html: "
    "open it in a browser, no server needed) with every cue's takes ranked and, with --plots and "
    "--previews, each take's sync plot and preview (in review/). A cue that fails is reported and skipped. "
    "Exit status: 0 all ok, 1 some takes failed, 2 bad options, 130 interrupted.",
    "",
    "\b",
    "Columns read (file paths are relative to CUES; the last seven are optional controls):",
    *(f"  {f:<12} {_COLUMN_HELP[f]}" for f in FIELDS),
    "",
    f"Controls ({', '.join(CONTROL_FIELDS)}) apply to the takes listed on their row; an empty cell keeps "
    "the command's setting. Sync points give dub seconds, then picture seconds counted from the start of "
    "the cue's region (tc_in less --handles: time 0 of its preview and plot) or a timecode on the picture's "
    "clock. Pairs and spans are separated by spaces or commas. A bad value fails that cue with its row "
    "named.",
    "",
    "Header names are matched in any case, with synonyms (e.g. id, dub, file, video, start, end, role, "
    "dialogue); name other headers with --map. The delimiter (comma, tab, ; or |) is read from the header. "
    "Takes in one cell are separated by | or ; (quote a cell that holds the delimiter).",
    "",
    "\b",
    "Example (a reel picture, so every cue has timecode):",
    "  cue,take,tc_in,tc_out,character,line",
    "  101,101_t1.wav|101_t2.wav,01:00:02:00,01:00:04:12,ANNA,Where were you?",
    "  $ dubalign batch cues.csv --picture reel.mov --fps 25 -o aligned/",
    "",
    "\b",
    "Example with controls (take t2 pinned at two moments, t3 kept close to one shift; both plotted):",
    "  cue,take,tc_in,tc_out,sync_points,protect,tightness,plot",
    "  101,101_t2.wav,01:00:02:00,01:00:04:12,0.35=01:00:02:05 1.9=2.9,0.8-1.1,,yes",
    "  101,101_t3.wav,,,,,0.3,yes",
    "  $ dubalign batch cues.csv --picture reel.mov --fps 25 --previews -o aligned/",
])


class _ReelProgress:
    """One overall bar on stderr, advanced as cues complete (a hook for ``run_batch``)."""

    def __init__(self, enabled: bool, quiet: bool) -> None:
        self.enabled = enabled
        self.quiet = quiet
        self.bar = None
        self.failed = 0

    def __call__(self, stage: str, value: object) -> None:
        if stage == "warning" and not self.quiet:
            click.echo(f"warning: {one_line(str(value))}", err=True)  # before the bar starts
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage == "plan":
            self.bar = tqdm(total=len(value), desc="cues", unit="cue", file=sys.stderr)
        elif stage == "cue" and self.bar is not None and isinstance(value, CueOutcome):
            self.failed += value.status in ("failed", "partial")
            self.bar.set_postfix_str(f"last {value.cue.cue_id}: {value.status}"
                                     + (f", {self.failed} with failures" if self.failed else ""))
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fail(message: str, code: int = EXIT_ERROR):
    fail(message, code)


def _report(result: BatchResult, quiet: bool) -> None:
    if quiet:
        return
    c = result.counts
    n_cues = len(result.outcomes)
    best = sum(o.best_take is not None for o in result.outcomes)
    click.echo(
        f"{n_cues} cues: {c.get('ok', 0)} takes ok, {c.get('failed', 0)} failed, "
        f"{c.get('skipped', 0)} skipped; best take marked for {best} cues; "
        f"{result.seconds:.1f} s. Summary: {result.summary_csv}; review page: {result.review_page}",
        err=True,
    )
    for o in result.outcomes:
        if o.status in ("failed", "partial"):
            for t in o.takes:
                if t.status == "failed" and t.error:
                    click.echo(f"failed: {one_line(t.error)}", err=True)
                    if o.status == "failed" and t.error == o.error:
                        break  # one line per cue that failed as a whole


@click.command("batch", help=BATCH_HELP)
@click.argument("cues", type=click.Path(dir_okay=False))
@click.option("--picture", type=click.Path(dir_okay=False), default=None,
              help="The reel picture, for cues without a picture column (needs tc_in/tc_out).")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: 'aligned' beside the cue list).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (each loads the models once).")
@click.option("--resume", is_flag=True,
              help="Skip cues whose outputs and report already exist from an earlier run.")
@click.option("--overwrite", is_flag=True, help="Redo every cue of an earlier run in OUT_DIR.")
@click.option("--fps", type=click.Choice(RATE_CHOICES, case_sensitive=False), default=None,
              help="Timecode frame rate; required when the cue list uses timecode "
                   "(29.97 = drop-frame, HH:MM:SS;FF).")
@click.option("--reel-start", default=None, metavar="TC",
              help="Timecode of the picture's first frame "
                   "(default: the file's own timecode, else 00:00:00:00).")
@click.option("--map", "column_map", default=None, metavar="FIELD=COLUMN,...",
              help="Name cue list columns, e.g. 'cue=Cue #,take=Audio File,tc_in=Rec In'.")
@click.option("--template", default=DEFAULT_TEMPLATE, show_default=True,
              help="Output name; fields {cue} {take} {index} {character} {row}.")
@click.option("--handles", type=float, default=DEFAULT_HANDLES, show_default=True,
              help="Seconds of picture kept either side of the cue's timecode range.")
@click.option("--plots", is_flag=True,
              help="Write a sync plot per take (review/CUE_TAKE.png, timecode axis), shown on the review page.")
@click.option("--previews", is_flag=True,
              help="Write a preview per take (review/CUE_TAKE.mp4: the cue's picture region with the aligned "
                   "take, re-encoded), played on the review page.")
@alignment_options
@click.option("--adapt-from", type=click.Path(dir_okay=False), default=None, metavar="PICTURE",
              help="Adapt the lip model first to the face and clean, in-sync sound of a picture of the "
                   "speaker (e.g. a shot of the reel with good production sound); every cue uses it, "
                   "adapted once per worker.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, warnings or summary on stderr.")
def batch(cues, picture, out_dir, jobs, resume, overwrite, fps, reel_start, column_map, template,
          handles, plots, previews, guide, max_shift, model, renderer, tightness, min_stretch, max_stretch,
          adapt_from, quiet):
    out = Path(out_dir) if out_dir else Path(cues).resolve().parent / "aligned"
    if resume and overwrite:
        _fail("--resume and --overwrite contradict each other: pick one")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY_JSON).exists() and not overwrite:
        _fail(f"{out} is not empty and holds no earlier dubalign run: choose an empty or new folder, "
              "or pass --overwrite to write into it")
    if (out / SUMMARY_JSON).exists() and not (resume or overwrite):
        _fail(f"{out} holds an earlier run: pass --resume to continue it or --overwrite to redo it")
    try:
        config = BatchConfig(
            cues=Path(cues), out_dir=out,
            # several cues at once already use the cores: each tracks its lips in one thread
            align=AlignConfig(guide=guide, max_shift=max_shift, model=model, renderer=renderer,
                              tightness=tightness, min_stretch=min_stretch, max_stretch=max_stretch,
                              adapt_from=adapt_from, workers=1 if jobs > 1 else 0),
            picture=Path(picture) if picture else None,
            fps=parse_rate(fps) if fps else None,
            column_map=parse_column_map(column_map), template=template, handles=handles,
            jobs=jobs, resume=resume, reel_start=reel_start, plots=plots, previews=previews,
        )
    except DubalignError as e:
        _fail(str(e))
    bar = _ReelProgress(enabled=not quiet and sys.stderr.isatty(), quiet=quiet)
    try:
        result = run_batch(config, hook=bar)
    except DubalignError as e:
        bar.close()
        _fail(str(e))
    except BatchInterrupted as e:
        bar.close()
        done = sum(o.status != "skipped" or o.report is not None for o in e.result.outcomes)
        _fail(f"interrupted: {done} of {len(e.result.outcomes)} cues done; run again with "
              f"--resume to finish. Summary: {e.result.summary_csv}", code=EXIT_INTERRUPTED)
    bar.close()
    _report(result, quiet)
    if result.counts.get("failed", 0):
        sys.exit(EXIT_FAILED_TAKES)
