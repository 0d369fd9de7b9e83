"""``--resume``: which cues an earlier run in the same OUTDIR already finished.

A cue counts as done when its report says every take is ok, lists the same take files, picture
region and per-take controls (sync points, protected spans, tightness, stretch limits) as the
cue has now, and every output file it names is still there, and so are the plots and previews
asked for now. Anything less runs the cue again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .plan import CueJob
from .takes import CueOutcome, TakeOutcome, take_controls

SKIPPED_DONE = "skipped: done in an earlier run (--resume)"


def previous_outcome(job: CueJob) -> CueOutcome | None:
    """The outcome recorded by an earlier run if the cue is done (see the module docstring), as
    skipped takes; None when the cue has to run."""
    try:
        rep = json.loads(Path(job.report).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rep, dict):
        return None
    takes = rep.get("takes") or []
    if rep.get("status") != "ok" or [t.get("dub") for t in takes] != [t.dub for t in job.takes]:
        return None
    region = rep.get("region") or {}
    if (rep.get("picture"), region.get("start"), region.get("end")) != (job.picture, job.start, job.end):
        return None
    if [r.get("controls") for r in rep.get("requests") or []] != [take_controls(t) for t in job.takes]:
        return None
    for t, j in zip(takes, job.takes, strict=True):
        if t.get("output") != j.output or not Path(j.output).is_file():
            return None
        for kind in ("plot", "preview"):  # asked for now: written then; not asked for: no matter
            want = getattr(j, kind)
            if want is not None and (t.get(kind) != want or not Path(want).is_file()):
                return None
    fields = {f.name for f in dataclasses.fields(TakeOutcome)}
    outs = tuple(
        TakeOutcome(**{**{k: v for k, v in t.items() if k in fields}, "status": "skipped",
                       "warnings": tuple(t.get("warnings") or ()), "error": SKIPPED_DONE,
                       **{kind: _existing(t.get(kind)) for kind in ("plot", "preview")}})
        for t in takes
    )
    return CueOutcome(cue=job.cue, status="skipped", takes=outs, best_take=rep.get("best_take"),
                      report=job.report, start_tc=job.start_tc, warnings=job.warnings, error=SKIPPED_DONE)


def _existing(path: str | None) -> str | None:
    """A plot or preview of the earlier run, still linked while it is there."""
    return path if path and Path(path).is_file() else None
