"""Batch ADR: align every take of a reel's cue list, rank the takes, write Broadcast WAVs.

The front door of the batch modules, in the order the data flows through them:

    cuelist   the CSV/TSV/XLSX cue list -> Cue records              read_cue_list
    plan      Cue -> CueJob: picture region, timecode, output names  plan_batch
    takes     one cue: analyse the picture once, align, rank, write  run_cue
    resume    which cues an earlier run finished                     previous_outcome
    reel      every cue, here or in a crash-tolerant worker pool     run_batch
    summary   summary.csv and summary.json                           write_summary

Callers use :func:`run_batch` with a :class:`BatchConfig`; the names below stay importable from
here so they need not know the split.
"""

from .cuelist import Cue, CueList, parse_column_map, read_cue_list
from .plan import DEFAULT_HANDLES, DEFAULT_TEMPLATE, BatchConfig, CueJob, TakeJob, plan_batch, safe_name
from .reel import BatchInterrupted, run_batch
from .resume import previous_outcome
from .summary import SUMMARY_CSV, SUMMARY_JSON, BatchResult, write_summary
from .takes import CueOutcome, TakeOutcome, load_or_analyze, max_stretch, rank_takes, run_cue, take_score

__all__ = [
    "DEFAULT_HANDLES", "DEFAULT_TEMPLATE", "SUMMARY_CSV", "SUMMARY_JSON", "BatchConfig", "BatchInterrupted",
    "BatchResult", "Cue", "CueJob", "CueList", "CueOutcome", "TakeJob", "TakeOutcome", "load_or_analyze",
    "max_stretch", "parse_column_map", "plan_batch", "previous_outcome", "rank_takes", "read_cue_list",
    "run_batch", "run_cue", "safe_name", "take_score", "write_summary",
]
