"""Running one cue: analyse its picture region once, align every take, rank them, write outputs.

The picture analysis is cached on disk (keyed on the picture file, the region and what the
analysis reads of the settings), so a cue run again, or another cue on the same region, does
not track the lips again. Each take is aligned with the batch's settings as its row's controls
change them (:func:`take_config`). Each aligned take is written as a Broadcast WAV stamped with
the region's timecode, with its sync plot and preview when asked for (all of a take's files land
together or none does), and one report JSON per cue holds every take's alignment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .bwf import bwf_subtype, write_bwf
from .cuelist import Cue
from .errors import DubalignError
from .files import atomic_outputs_by_path, write_json
from .pipeline import AlignConfig, AlignmentResult, PictureAnalysis, align_dub, analyze_picture
from .plan import CueJob, TakeJob
from .preview import CONTAINERS, write_preview

# Take ranking: score = confidence - STRETCH_WEIGHT * ln(max stretch). A take that needs 1.5x
# stretching somewhere in its speech gives up 0.1 of confidence: strong warps sound worse, so
# between takes that fit the lips equally the one closer to the picture's timing wins.
STRETCH_WEIGHT = 0.25


@dataclass(frozen=True)
class TakeOutcome:
    take: str
    dub: str
    output: str | None
    status: str  # "ok" | "failed" | "skipped"
    best: bool = False
    rank: int | None = None  # 1 = best among the cue's aligned takes
    score: float | None = None  # ranking score (see STRETCH_WEIGHT)
    confidence: float | None = None  # the aligner's in-sync estimate, 0..1
    max_stretch: float | None = None  # largest stretch or squeeze of the take's speech (>= 1)
    time_reference: int | None = None  # BWF TimeReference written (samples since midnight)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    plot: str | None = None  # the sync plot written with the take (PNG)
    preview: str | None = None  # the preview written with the take (.mp4)


@dataclass(frozen=True)
class CueOutcome:
    cue: Cue
    status: str  # "ok" (all takes ok) | "partial" | "failed" | "skipped"
    takes: tuple[TakeOutcome, ...]
    best_take: str | None
    report: str | None
    start_tc: str = ""
    warnings: tuple[str, ...] = ()
    error: str | None = None
    seconds: float = 0.0  # wall time spent on the cue

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def failed_outcome(job: CueJob, message: str, *, seconds: float = 0.0) -> CueOutcome:
    """Every take of the cue failed with ``message`` (labelled with the cue's row if it is not)."""
    msg = message if message.startswith("row ") else f"{job.cue.label}: {message}"
    takes = tuple(TakeOutcome(take=t.take, dub=t.dub, output=None, status="failed", error=msg) for t in job.takes)
    return CueOutcome(cue=job.cue, status="failed", takes=takes, best_take=None, report=job.report,
                      start_tc=job.start_tc, warnings=job.warnings, error=msg, seconds=seconds)


def max_stretch(result: AlignmentResult) -> float:
    """Largest factor by which the take's speech is stretched or squeezed (>= 1).

    Pauses are left out (``stretch_range`` covers speech only): a pause may stretch freely and
    says nothing about how the take sounds.
    """
    lo, hi = result.stretch_range
    if not (lo > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return math.inf
    return max(hi, 1.0 / lo, 1.0)


def take_score(confidence: float, stretch: float) -> float:
    """Ranking score of an aligned take: fit to the lips, less a penalty for strong warps."""
    return float(confidence) - STRETCH_WEIGHT * math.log(max(stretch, 1.0))


def rank_takes(results: dict[str, AlignmentResult]) -> list[str]:
    """The take names, best first (ties keep the cue list's order)."""
    scores = {name: take_score(r.overall_confidence, max_stretch(r)) for name, r in results.items()}
    return sorted(scores, key=lambda name: -scores[name])


def analysis_key(picture: str, start: float | None, end: float | None, config: AlignConfig) -> str:
    """Cache key of a picture analysis: the file as it is on disk, the region, and the one
    setting :func:`~dubalign.pipeline.analyze_picture` reads (``workers``: how the lips are split
    between threads). The aligner's other settings (shift, stretch, model, renderer) act after
    the analysis, so changing them reuses it."""
    st = os.stat(picture)
    payload = {
        "picture": str(Path(picture).resolve()), "mtime_ns": st.st_mtime_ns, "size": st.st_size,
        "start": start, "end": end, "workers": config.workers,
        "version": __version__,  # another release may track the lips differently
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def take_config(config: AlignConfig, take: TakeJob) -> AlignConfig:
    """The batch's settings as the take's row changes them (sync points, protected spans,
    tightness, stretch limits); checked, so a bad combination fails the take before any work."""
    changes = take.controls.align_changes()
    if not changes:
        return config
    cfg = dataclasses.replace(config, **changes)
    cfg.check()
    return cfg


def load_or_analyze(job: CueJob, config: AlignConfig, cache_dir: Path) -> PictureAnalysis:
    """The picture analysis of the cue's region, from ``cache_dir`` or computed and cached."""
    path = cache_dir / f"{analysis_key(job.picture, job.start, job.end, config)}.npz"
    if path.is_file():
        try:
            return PictureAnalysis.load(path)
        except Exception:  # a damaged cache entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    pic = analyze_picture(job.picture, config, start=job.start, end=job.end)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pic.save(path)  # atomic: a killed run leaves no half entry
    return pic


def run_cue(job: CueJob, config: AlignConfig, cache_dir: Path) -> CueOutcome:
    """Analyse the cue's picture region, align and rank every take, write outputs and report.

    Never raises for a problem of the cue itself: it comes back as a failed outcome.
    """
    t0 = time.perf_counter()
    if job.error:
        return _reported(job, failed_outcome(job, job.error), {})
    errors: dict[str, str] = {t.take: t.error for t in job.takes if t.error}
    configs: dict[str, AlignConfig] = {}
    for t in job.takes:
        if t.take in errors:
            continue
        try:
            configs[t.take] = take_config(config, t)
        except Exception as e:  # the row's controls do not fit the batch's settings
            errors[t.take] = f"{_label(job, t)}: {_short_error(e)}"
    usable = [t for t in job.takes if t.take not in errors]
    if not usable:  # no take can run: the picture is not worth analysing
        return _reported(job, failed_outcome(job, errors[job.takes[0].take], seconds=time.perf_counter() - t0),
                         {})
    try:
        pic = load_or_analyze(job, config, cache_dir)
    except Exception as e:
        return _reported(job, failed_outcome(job, f"picture: {_short_error(e)}", seconds=time.perf_counter() - t0),
                         {})

    results: dict[str, AlignmentResult] = {}
    drawn: dict[str, dict[str, object]] = {}  # what each take's plot draws (align_dub's hook)
    for t in usable:
        seen = drawn[t.take] = {}

        def keep(stage: str, value: object, seen: dict = seen) -> None:
            if stage == "placement":
                seen[stage] = value

        try:
            results[t.take] = align_dub(pic, t.dub, configs[t.take], hook=keep if t.plot else None)
        except Exception as e:
            errors[t.take] = f"{_label(job, t)}: {_short_error(e)}"
    order = rank_takes(results)
    best = order[0] if order else None

    outcomes = []
    for t in job.takes:
        if t.take not in results:
            outcomes.append(TakeOutcome(take=t.take, dub=t.dub, output=None, status="failed", error=errors[t.take]))
            continue
        res = results[t.take]
        measured = dict(confidence=float(res.overall_confidence), max_stretch=max_stretch(res))
        measured["score"] = take_score(measured["confidence"], measured["max_stretch"])
        tref = int(round(job.origin_s * res.sr))
        try:
            _write_take(job, t, res, configs[t.take], drawn[t.take], tref, best=t.take == best)
        except Exception as e:
            outcomes.append(TakeOutcome(take=t.take, dub=t.dub, output=None, status="failed", **measured,
                                        error=f"{_label(job, t)}: {_short_error(e)}"))
            continue
        outcomes.append(TakeOutcome(take=t.take, dub=t.dub, output=t.output, status="ok", best=t.take == best,
                                    rank=order.index(t.take) + 1, **measured, time_reference=tref,
                                    warnings=tuple(res.warnings), plot=t.plot, preview=t.preview))

    n_ok = sum(o.status == "ok" for o in outcomes)
    status = "ok" if n_ok == len(outcomes) else ("partial" if n_ok else "failed")
    if not any(o.best for o in outcomes):
        best = None  # the best take's file could not be written
    outcome = CueOutcome(
        cue=job.cue, status=status, takes=tuple(outcomes), best_take=best, report=job.report,
        start_tc=job.start_tc, warnings=job.warnings,
        error=None if n_ok else next(o.error for o in outcomes if o.error),
        seconds=time.perf_counter() - t0,
    )
    return _reported(job, outcome, results)


def _write_take(job: CueJob, t: TakeJob, res: AlignmentResult, config: AlignConfig, drawn: dict[str, object],
                time_reference: int, *, best: bool) -> None:
    """The take's Broadcast WAV, and its sync plot and preview when asked for: all land or none."""
    paths = [p for p in (t.output, t.plot, t.preview) if p is not None]
    for p in paths:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    with atomic_outputs_by_path(*paths) as tmp:
        write_bwf(tmp[t.output], res.audio, res.sr, subtype=bwf_subtype(res.subtype),
                  time_reference=time_reference, description=_description(job.cue, t.take, best),
                  originator_reference=f"{job.cue.cue_id}/{t.take}"[:32])
        if t.plot is not None:
            from .plot import plot_alignment  # matplotlib loads only when a plot is asked for

            # the axis reads the picture's timecode: time 0 of the take is the region start
            placement = drawn["placement"]
            plot_alignment(tmp[t.plot], placement.features, placement.path, res, rate=job.fps,
                           origin_s=job.origin_s, stretch_limits=(config.min_stretch, config.max_stretch))
        if t.preview is not None:
            start = job.start or 0.0
            write_preview(job.picture, res.audio, res.sr, tmp[t.preview], start_s=start,
                          duration_s=None if job.end is None else job.end - start,
                          container=CONTAINERS[Path(t.preview).suffix.lower()])


def _reported(job: CueJob, outcome: CueOutcome, results: dict[str, AlignmentResult]) -> CueOutcome:
    """Write the cue's report (what happened, the region, every take's alignment); return ``outcome``.

    A report that cannot be written becomes a warning of the cue (its takes are written; without
    the report ``--resume`` runs the cue again).
    """
    report = {
        "dubalign": __version__,
        **outcome.to_dict(),
        "picture": job.picture,
        "region": {"start": job.start, "end": job.end, "start_tc": job.start_tc, "origin_s": job.origin_s},
        # what each take was asked for: --resume runs the cue again when its row's controls change
        "requests": [{"controls": take_controls(t), "plot": t.plot, "preview": t.preview} for t in job.takes],
        "alignments": {name: res.to_json() for name, res in results.items()},
    }
    try:
        Path(job.report).parent.mkdir(parents=True, exist_ok=True)
        write_json(job.report, report)
    except (OSError, DubalignError) as e:
        return dataclasses.replace(outcome, report=None, warnings=(*outcome.warnings, f"report: {_short_error(e)}"))
    return outcome


def take_controls(take: TakeJob) -> dict:
    """The alignment controls of the take's row as the report stores them (JSON types); the plot
    and preview requests are left out: they change what is written, not the alignment."""
    controls = {k: v for k, v in dataclasses.asdict(take.controls).items() if k not in ("plot", "preview")}
    return json.loads(json.dumps(controls, default=str))


def _label(job: CueJob, take: TakeJob) -> str:
    return f"row {take.row} (cue {job.cue.cue_id}) take {take.take}"  # the row an editor fixes


def _short_error(e: BaseException) -> str:
    if isinstance(e, DubalignError):
        return str(e)
    return f"internal error ({type(e).__name__}: {e}); please report it"


def _description(cue: Cue, take: str, best: bool) -> str:
    text = f"cue {cue.cue_id} take {take}{' [best]' if best else ''}"
    if cue.character:
        text += f" - {cue.character}"
    if cue.line:
        text += f": {cue.line}"
    return text[:256]
