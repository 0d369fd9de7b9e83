"""The reel: every cue of a cue list, run in this process or in a crash-tolerant pool of workers.

The storyboard of :func:`run_batch`:

1. :func:`~dubalign.cuelist.read_cue_list` reads the cue list into cues;
2. :func:`~dubalign.plan.plan_batch` turns each cue into a job (picture region, timecode, outputs);
3. with ``--resume``, :func:`~dubalign.resume.previous_outcome` skips the cues already done;
4. :func:`~dubalign.takes.run_cue` runs each remaining cue, here or in a worker process;
5. :func:`~dubalign.summary.write_summary` writes the reel summary and the review page
   (``index.html``, linking each take's sync plot and preview where ``--plots``/``--previews`` or
   the cue list's plot/preview columns asked for them).

Nothing here prints or exits; progress goes to ``hook(event, value)``. Ctrl-C (KeyboardInterrupt)
cancels pending cues, stops the workers, removes temporary files, writes the summary of what
completed and raises :class:`BatchInterrupted`.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from .console import mute_native_stderr
from .cuelist import read_cue_list
from .errors import ParameterError
from .files import check_writable, sweep_temp_files
from .pipeline import AlignConfig, load_lip_model
from .plan import BatchConfig, CueJob, plan_batch
from .resume import previous_outcome
from .summary import SUMMARY_CSV, BatchResult, write_summary
from .takes import CueOutcome, failed_outcome, run_cue

Hook = Callable[[str, Any], None]
CACHE_DIR = ".cache"  # under OUTDIR: picture analyses (npz)


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_batch`; ``.result`` holds what completed (summary written)."""

    def __init__(self, result: BatchResult):
        super().__init__("interrupted")
        self.result = result


def run_batch(config: BatchConfig, *, hook: Hook | None = None) -> BatchResult:
    """Run a reel's cue list; see the module docstring. Returns what happened to every take.

    hook(stage, value) is called with ("warning", text) for each warning about the whole run
    (a cue list without cues, a picture whose frame rate is not --fps), then ("plan", tuple of
    CueJob) once, then ("cue", CueOutcome) as each cue completes (including failed and resumed
    ones), in completion order.
    """
    t0 = time.perf_counter()
    config.check()
    cue_list = read_cue_list(config.cues, column_map=config.column_map)
    jobs = plan_batch(cue_list, config)
    # each picture's warnings once, not once per cue on it; they also stay with every cue's takes
    warnings = tuple(dict.fromkeys([*cue_list.warnings, *(w for job in jobs for w in job.warnings)]))
    out_dir = Path(config.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ParameterError(f"cannot create the output folder {out_dir}: {e.strerror or e}") from None
    check_writable(out_dir / SUMMARY_CSV, "summary")
    cache_dir = out_dir / CACHE_DIR
    title = f"dubalign review: {Path(config.cues).name}"
    sweep_temp_files(out_dir)
    for w in warnings:
        _emit(hook, "warning", w)
    _emit(hook, "plan", jobs)

    outcomes: dict[int, CueOutcome] = {}

    def done(i: int, outcome: CueOutcome) -> None:
        outcomes[i] = outcome
        _emit(hook, "cue", outcome)

    try:
        todo = []
        for i, job in enumerate(jobs):
            prev = previous_outcome(job) if config.resume and not job.error else None
            if prev is not None:
                done(i, prev)
            elif job.error:  # fails at once (and writes its report): no picture is analysed
                done(i, run_cue(job, config.align, cache_dir))
            else:
                todo.append(i)
        if config.jobs == 1 or len(todo) <= 1:
            for i in todo:
                done(i, run_cue(jobs[i], config.align, cache_dir))
        else:
            _run_pool(jobs, todo, config, cache_dir, done)
    except KeyboardInterrupt:
        sweep_temp_files(out_dir)
        raise BatchInterrupted(write_summary(jobs, outcomes, out_dir, interrupted=True, title=title,
                                             seconds=time.perf_counter() - t0, warnings=warnings)) from None
    return write_summary(jobs, outcomes, out_dir, interrupted=False, seconds=time.perf_counter() - t0,
                         warnings=warnings, title=title)


def _emit(hook: Hook | None, stage: str, value: Any) -> None:
    if hook is not None:
        hook(stage, value)


# ----------------------------------------------------------------------------- worker pool


def _init_worker(config: AlignConfig) -> None:
    # Ctrl-C is handled by the parent alone: it cancels, stops the workers and cleans up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mute_native_stderr()  # MediaPipe's native log lines would clutter the parent's progress bar
    try:  # load the model once per worker, not once per cue
        load_lip_model(config.model)
    except Exception:  # a failed warm-up resurfaces as a per-cue error
        pass


def _stop_executor(executor: ProcessPoolExecutor) -> None:
    """Cancel what is queued and stop the workers now, mid-cue if need be."""
    procs = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=10)


def _run_pool(jobs: Sequence[CueJob], todo: list[int], config: BatchConfig, cache_dir: Path,
              done: Callable[[int, CueOutcome], None]) -> None:
    """Run the cues ``todo`` on ``config.jobs`` spawned workers; ``done(i, outcome)`` as each ends.

    At most one cue per worker is submitted at a time, so when a worker dies (killed, out of
    memory) only the cues in flight are suspects: each is retried alone in a fresh pool, and a
    cue that kills its worker when alone fails; the rest of the reel goes on.
    """
    ctx = multiprocessing.get_context("spawn")
    n_workers = min(config.jobs, len(todo))

    def new_executor() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(config.align,))

    queue = deque(todo)
    suspects: set[int] = set()
    in_flight: dict[Future, int] = {}
    executor = new_executor()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < n_workers:
                if queue[0] in suspects and in_flight:
                    break  # a suspect runs alone
                i = queue.popleft()
                in_flight[executor.submit(run_cue, jobs[i], config.align, cache_dir)] = i
                if i in suspects:
                    break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            lost: list[int] = []
            for fut in finished:
                i = in_flight.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    lost.append(i)
                    continue
                except Exception as e:  # pickling trouble and the like: this cue only
                    outcome = failed_outcome(jobs[i], f"worker error ({type(e).__name__}: {e})")
                done(i, outcome)
            if not lost:
                continue
            # The pool is broken: every cue still in flight is lost with it.
            lost += list(in_flight.values())
            in_flight.clear()
            _stop_executor(executor)
            for i in reversed(lost):
                if i in suspects and len(lost) == 1:
                    done(i, failed_outcome(jobs[i], "the worker process died on this cue (killed or out of memory)"))
                else:
                    suspects.add(i)
                    queue.appendleft(i)
            executor = new_executor()
    except BaseException:
        # Ctrl-C: workers ignore SIGINT and may be mid-cue; stop them rather than wait.
        _stop_executor(executor)
        raise
    executor.shutdown(wait=True)
