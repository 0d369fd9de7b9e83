"""The reel summary: ``summary.csv`` (one row per take) and ``summary.json`` (one entry per cue)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .files import atomic_outputs, write_json_to
from .plan import CueJob
from .takes import CueOutcome, TakeOutcome

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_COLUMNS = (
    "cue", "row", "character", "line", "take", "take_file", "output", "status", "best", "rank",
    "confidence", "max_stretch", "start_tc", "warnings", "error",
)
SKIPPED_INTERRUPTED = "skipped: interrupted before this cue ran"


@dataclass(frozen=True)
class BatchResult:
    outcomes: tuple[CueOutcome, ...]  # one per cue, in cue list order
    summary_csv: str
    summary_json: str
    interrupted: bool = False
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)  # take status -> number of takes
    warnings: tuple[str, ...] = ()  # about the whole run (cue list, pictures), each once


def write_summary(jobs: Sequence[CueJob], outcomes: dict[int, CueOutcome], out_dir: Path, *, interrupted: bool,
                  seconds: float, warnings: Sequence[str] = ()) -> BatchResult:
    """Write both summaries (together: either both are new or neither is) and return the result.

    outcomes : {index in ``jobs``: outcome}; cues without one (Ctrl-C) are listed as skipped.
    """
    full = tuple(outcomes[i] if i in outcomes else _not_run(job) for i, job in enumerate(jobs))
    rows = []
    counts: dict[str, int] = {}
    for o in full:
        for t in o.takes or (TakeOutcome(take="", dub="", output=None, status=o.status, error=o.error),):
            counts[t.status] = counts.get(t.status, 0) + 1
            rows.append({
                "cue": o.cue.cue_id, "row": o.cue.row, "character": o.cue.character, "line": o.cue.line,
                "take": t.take, "take_file": t.dub, "output": t.output or "", "status": t.status,
                "best": "yes" if t.best else "", "rank": t.rank or "",
                "confidence": "" if t.confidence is None else f"{t.confidence:.3f}",
                "max_stretch": "" if t.max_stretch is None else f"{t.max_stretch:.3f}",
                "start_tc": o.start_tc, "warnings": "; ".join(o.warnings + t.warnings), "error": t.error or "",
            })
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path = out_dir / SUMMARY_CSV, out_dir / SUMMARY_JSON
    with atomic_outputs(csv_path, json_path) as (tmp_csv, tmp_json):
        tmp_csv.write_text(buf.getvalue(), encoding="utf-8", newline="")
        write_json_to(tmp_json, {
            "dubalign": __version__, "interrupted": interrupted, "seconds": round(seconds, 3), "counts": counts,
            "warnings": list(warnings), "cues": [o.to_dict() for o in full],
        })
    return BatchResult(outcomes=full, summary_csv=str(csv_path), summary_json=str(json_path),
                       interrupted=interrupted, seconds=seconds, counts=counts, warnings=tuple(warnings))


def _not_run(job: CueJob) -> CueOutcome:
    takes = tuple(TakeOutcome(take=t.take, dub=t.dub, output=None, status="skipped", error=SKIPPED_INTERRUPTED)
                  for t in job.takes)
    return CueOutcome(cue=job.cue, status="skipped", takes=takes, best_take=None, report=None,
                      start_tc=job.start_tc, warnings=job.warnings, error=SKIPPED_INTERRUPTED)
