"""The reel summary: ``summary.csv`` (one row per take), ``summary.json`` (one entry per cue) and
the review page ``index.html`` (one row per cue, linking each take's files; see :mod:`dubalign.review`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .files import atomic_outputs, write_json_to
from .plan import CueJob
from .review import REVIEW_PAGE, review_rows, write_review_page
from .takes import CueOutcome, TakeOutcome

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_COLUMNS = (
    "cue", "row", "character", "line", "take", "take_file", "output", "status", "best", "rank",
    "confidence", "max_stretch", "start_tc", "warnings", "error", "plot", "preview",
)
SKIPPED_INTERRUPTED = "skipped: interrupted before this cue ran"


@dataclass(frozen=True)
class BatchResult:
    outcomes: tuple[CueOutcome, ...]  # one per cue, in cue list order
    summary_csv: str
    summary_json: str
    review_page: str = ""  # index.html
    interrupted: bool = False
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)  # take status -> number of takes
    warnings: tuple[str, ...] = ()  # about the whole run (cue list, pictures), each once


def write_summary(jobs: Sequence[CueJob], outcomes: dict[int, CueOutcome], out_dir: Path, *, interrupted: bool,
                  seconds: float, warnings: Sequence[str] = (), title: str = "dubalign review") -> BatchResult:
    """Write both summaries and the review page (together: all three are new or none is) and
    return the result.

    outcomes : {index in ``jobs``: outcome}; cues without one (Ctrl-C) are listed as skipped.
    title : the review page's title (e.g. naming the cue list)
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
                "plot": t.plot or "", "preview": t.preview or "",
            })
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path, page_path = out_dir / SUMMARY_CSV, out_dir / SUMMARY_JSON, out_dir / REVIEW_PAGE
    page_rows = review_rows(full, out_dir,
                            plots={(o.cue.cue_id, t.take): t.plot for o in full for t in o.takes if t.plot},
                            previews={(o.cue.cue_id, t.take): t.preview for o in full for t in o.takes if t.preview})
    notes = [*(["interrupted: the cues marked skipped did not run; run again with --resume"] if interrupted else []),
             *warnings]
    with atomic_outputs(csv_path, json_path, page_path) as (tmp_csv, tmp_json, tmp_page):
        tmp_csv.write_text(buf.getvalue(), encoding="utf-8", newline="")
        write_json_to(tmp_json, {
            "dubalign": __version__, "interrupted": interrupted, "seconds": round(seconds, 3), "counts": counts,
            "warnings": list(warnings), "cues": [o.to_dict() for o in full],
        })
        write_review_page(tmp_page, page_rows, title=title, notes=notes)
    return BatchResult(outcomes=full, summary_csv=str(csv_path), summary_json=str(json_path),
                       review_page=str(page_path), interrupted=interrupted, seconds=seconds, counts=counts,
                       warnings=tuple(warnings))


def _not_run(job: CueJob) -> CueOutcome:
    takes = tuple(TakeOutcome(take=t.take, dub=t.dub, output=None, status="skipped", error=SKIPPED_INTERRUPTED)
                  for t in job.takes)
    return CueOutcome(cue=job.cue, status="skipped", takes=takes, best_take=None, report=None,
                      start_tc=job.start_tc, warnings=job.warnings, error=SKIPPED_INTERRUPTED)
