"""Batch ADR: align every take of a reel's cue list, rank the takes, write Broadcast WAVs.

The storyboard of :func:`run_batch`:

1. :func:`read_cue_list` reads the CSV/TSV (or XLSX) cue list into :class:`Cue` records;
2. :func:`plan_batch` turns each cue into a :class:`CueJob`: the picture region (timecode in/out
   plus handles, clipped to the picture), the output file of each take, and any problem found
   so far (bad timecode, missing file) -- a cue with a problem fails alone;
3. each job runs in a worker (:func:`run_cue`): the picture region is analysed once (cached on
   disk in ``OUTDIR/.cache``), every take is aligned to it, the takes are ranked by fit to the
   lips and written as Broadcast WAVs stamped with the region's timecode, plus one report JSON;
4. a reel summary (CSV + JSON) lists every take: status, best take, confidence, stretch.

Nothing here prints or exits; progress goes to ``hook(event, value)``. Ctrl-C (KeyboardInterrupt)
cancels pending cues, stops the workers, removes temporary files, writes the summary of what
completed and raises :class:`BatchInterrupted`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .bwf import TEMP_MARK, bwf_subtype, write_bwf
from .console import mute_native_stderr
from .errors import DubalignError, MediaError, ParameterError
from .timecode import (
    FrameRate,
    parse_rate,
    parse_timecode,
    timecode_to_seconds,
)

if TYPE_CHECKING:
    from .align import AlignConfig, PictureAnalysis

Hook = Callable[[str, Any], None]

# Cue list columns we understand, and the header names (normalised) that mean each one.
FIELDS = ("cue", "take", "picture", "tc_in", "tc_out", "character", "line")
SYNONYMS = {
    "cue": ("cue", "cue_id", "cueid", "id", "cue_no", "cue_number", "cue_name"),
    "take": ("take", "takes", "dub", "dubs", "file", "files", "take_file", "dub_file", "audio"),
    "picture": ("picture", "video", "pic", "movie", "picture_file", "video_file"),
    "tc_in": ("tc_in", "tcin", "in", "start", "timecode_in", "start_tc", "record_in"),
    "tc_out": ("tc_out", "tcout", "out", "end", "timecode_out", "end_tc", "record_out"),
    "character": ("character", "char", "role"),
    "line": ("line", "text", "dialogue", "dialog"),
}
DELIMITERS = ",\t;|"  # candidate cue list delimiters, sniffed from the header line
TAKE_SEPARATOR = ";"  # several take files in one cell

DEFAULT_TEMPLATE = "{cue}_{take}.wav"
TEMPLATE_FIELDS = ("cue", "take", "index", "character", "row")
DEFAULT_HANDLES = 1.0  # seconds of picture kept either side of the cue's timecode range
CACHE_DIR = ".cache"  # under OUTDIR: picture analyses (npz)
REPORT_DIR = "reports"  # under OUTDIR: one JSON per cue
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
FPS_MISMATCH = 0.01  # frames/s: a picture whose stored rate differs more from --fps is flagged

# Take ranking: score = confidence - STRETCH_WEIGHT * ln(max stretch). A take that needs 1.5x
# stretching somewhere gives up 0.1 of confidence: strong warps sound worse, so between takes
# that fit the lips equally the one closer to the picture's timing wins.
STRETCH_WEIGHT = 0.25

_SAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BatchConfig:
    """Everything a batch run needs; the CLI builds it from its options."""

    cues: Path  # the cue list (CSV, TSV, XLSX)
    out_dir: Path  # outputs, reports, summary, .cache
    align: AlignConfig | None = None  # the aligner's settings; None = AlignConfig()
    picture: Path | None = None  # the reel picture, for cues without their own picture
    fps: FrameRate | None = None  # timecode rate; required whenever a cue uses timecode
    column_map: tuple[tuple[str, str], ...] = ()  # (field, header) pairs overriding detection
    template: str = DEFAULT_TEMPLATE  # output file name, relative to out_dir
    handles: float = DEFAULT_HANDLES  # seconds of picture kept either side of tc_in/tc_out
    jobs: int = 1  # worker processes; 1 runs in this process
    resume: bool = False  # skip cues whose report and outputs already exist
    reel_start: str | None = None  # timecode of the reel's first frame; None: from the file, else 0


def parse_column_map(text: str | None) -> tuple[tuple[str, str], ...]:
    """``"cue=Cue Number,take=Audio File"`` -> ``(("cue", "Cue Number"), ("take", "Audio File"))``.

    The field may be on either side of ``=``.
    """
    if not text:
        return ()
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ParameterError(f"--map item {item!r} needs the form field=header")
        left, right = (s.strip() for s in item.split("=", 1))
        if left.lower() in FIELDS:
            pairs.append((left.lower(), right))
        elif right.lower() in FIELDS:
            pairs.append((right.lower(), left))
        else:
            raise ParameterError(
                f"--map item {item!r} names no known field: use one of {', '.join(FIELDS)}"
            )
    return tuple(pairs)


# ----------------------------------------------------------------------------- cue list


@dataclass(frozen=True)
class Cue:
    """One cue of the list (several rows with the same id are merged into one cue)."""

    cue_id: str
    row: int  # line number of the cue's first row in the cue list (the header is line 1)
    takes: tuple[str, ...]  # take file paths, resolved against the cue list's folder
    picture: str | None  # the cue's own picture file, resolved; None: use the reel picture
    tc_in: str
    tc_out: str
    character: str
    line: str
    error: str | None = None  # a problem found while reading; the cue fails with it

    @property
    def label(self) -> str:
        return f"row {self.row} (cue {self.cue_id})"


@dataclass(frozen=True)
class CueList:
    path: str
    columns: tuple[tuple[str, str], ...]  # (field, header) actually used
    cues: tuple[Cue, ...]


def _norm_header(name: str) -> str:
    return re.sub(r"[\s\-./#]+", "_", str(name).strip().lower()).strip("_")


def _read_rows(path: Path) -> list[list[str]]:
    """All rows of the cue list as strings (header first)."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            import openpyxl  # optional: only for cue lists kept as spreadsheets
        except ImportError:
            raise ParameterError(
                f"{path.name}: reading XLSX needs openpyxl (pip install openpyxl), "
                "or save the cue list as CSV"
            ) from None
        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            rows = [["" if v is None else str(v) for v in r]
                    for r in wb.worksheets[0].iter_rows(values_only=True)]
            wb.close()
        except Exception as e:  # openpyxl raises many types for damaged files
            raise MediaError(f"cannot read the cue list {path}: {e}") from None
        return rows
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise MediaError(f"cannot read the cue list {path}: {e.strerror or e}") from None
    header = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not header:
        raise ParameterError(f"the cue list {path} is empty")
    # The header line has no timecodes or take lists in it, so the delimiter is the candidate
    # that occurs most there (a sniffer over data rows is fooled by ';' in drop-frame timecode).
    counts = {d: header.count(d) for d in DELIMITERS}
    delimiter = max(counts, key=counts.get)
    if counts[delimiter] == 0:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if path.suffix.lower() == ".tsv" and counts["\t"]:
        delimiter = "\t"
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]


def _detect_columns(
    header: Sequence[str], column_map: Sequence[tuple[str, str]], path: Path
) -> dict[str, int]:
    normed = [_norm_header(h) for h in header]
    columns: dict[str, int] = {}
    for fld, name in column_map:
        if fld not in FIELDS:
            raise ParameterError(f"--map: unknown field {fld!r}: use one of {', '.join(FIELDS)}")
        matches = [i for i, h in enumerate(header) if h.strip().lower() == name.strip().lower()]
        if not matches:
            raise ParameterError(
                f"--map {fld}={name}: no column {name!r} in {path.name} "
                f"(columns: {', '.join(h for h in header if h.strip())})"
            )
        columns[fld] = matches[0]
    for fld in FIELDS:
        if fld in columns:
            continue
        hits = [i for i, h in enumerate(normed) if h in SYNONYMS[fld] and i not in columns.values()]
        if len(hits) > 1:
            names = ", ".join(repr(header[i]) for i in hits)
            raise ParameterError(
                f"{path.name}: columns {names} could all be {fld!r}; pick one with --map {fld}=NAME"
            )
        if hits:
            columns[fld] = hits[0]
    missing = [f for f in ("cue", "take") if f not in columns]
    if missing:
        raise ParameterError(
            f"{path.name}: no {' or '.join(repr(m) for m in missing)} column found in the header "
            f"({', '.join(h for h in header if h.strip())}); name it with --map, e.g. "
            f"--map {missing[0]}=\"Your Column\""
        )
    return columns


def _resolve(text: str, base: Path) -> str:
    p = Path(os.path.expanduser(text.strip()))
    return str(p if p.is_absolute() else (base / p))


def read_cue_list(
    path: str | os.PathLike, *, column_map: Sequence[tuple[str, str]] = ()
) -> CueList:
    """Read a cue list: header auto-detected (case-insensitive synonyms) or named by ``column_map``.

    Rows with the same cue id are merged (their takes appended). Structural problems (no header
    match, unreadable file) raise :class:`ParameterError`/:class:`MediaError`; a problem in one
    row only marks that cue (``Cue.error``) so the rest of the reel still runs.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"cue list not found: {path}")
    rows = _read_rows(path)
    header_at = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if header_at is None:
        raise ParameterError(f"the cue list {path} is empty")
    header = rows[header_at]
    columns = _detect_columns(header, column_map, path)
    base = path.resolve().parent

    merged: dict[str, dict] = {}
    for i in range(header_at + 1, len(rows)):
        row, line_no = rows[i], i + 1
        if not any(c.strip() for c in row):
            continue

        def get(fld: str, row=row) -> str:
            j = columns.get(fld)
            return row[j].strip() if j is not None and j < len(row) else ""

        cue_id = get("cue") or f"row{line_no}"
        takes = [t for t in (s.strip() for s in get("take").split(TAKE_SEPARATOR)) if t]
        rec = merged.setdefault(cue_id, {
            "row": line_no, "takes": [], "picture": "", "tc_in": "", "tc_out": "",
            "character": "", "line": "", "errors": [],
        })
        if not get("cue"):
            rec["errors"].append(f"row {line_no}: empty cue id")
        rec["takes"].extend(_resolve(t, base) for t in takes)
        for fld in ("picture", "tc_in", "tc_out", "character", "line"):
            value = get(fld)
            if fld == "picture" and value:
                value = _resolve(value, base)
            if value and rec[fld] and rec[fld] != value and fld not in ("character", "line"):
                rec["errors"].append(
                    f"row {line_no} (cue {cue_id}): {fld} {value!r} differs from "
                    f"{rec[fld]!r} given for the same cue on row {rec['row']}"
                )
            elif value and not rec[fld]:
                rec[fld] = value
    cues = []
    for cue_id, rec in merged.items():
        errors = list(rec["errors"])
        if not rec["takes"]:
            errors.append(f"row {rec['row']} (cue {cue_id}): no take file given")
        cues.append(Cue(
            cue_id=cue_id, row=rec["row"], takes=tuple(rec["takes"]),
            picture=rec["picture"] or None, tc_in=rec["tc_in"], tc_out=rec["tc_out"],
            character=rec["character"], line=rec["line"], error=errors[0] if errors else None,
        ))
    named = tuple((f, header[j]) for f, j in columns.items())
    return CueList(path=str(path), columns=named, cues=tuple(cues))


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class TakeJob:
    take: str  # the take's name in outputs: the file stem, made safe
    dub: str  # the take file
    output: str  # the Broadcast WAV to write
    error: str | None = None  # e.g. the file is missing: this take fails alone


@dataclass(frozen=True)
class CueJob:
    """A cue ready to run: its picture region, takes and where everything goes."""

    cue: Cue
    picture: str | None
    start: float | None  # picture region, seconds from the picture's first frame (handles in)
    end: float | None
    origin_s: float  # seconds since midnight of the region start (for the BWF TimeReference)
    start_tc: str  # the region start as timecode ("" when no frame rate is known)
    takes: tuple[TakeJob, ...]
    report: str
    warnings: tuple[str, ...] = ()
    error: str | None = None


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``: ASCII letters, digits, ``._-``; never empty."""
    return _SAFE_RE.sub("_", str(text)).strip("._") or "_"


def _format_output(template: str, values: dict[str, str]) -> str:
    try:
        name = template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise ParameterError(
            f"--template {template!r}: {e} is not a field; use "
            + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
        ) from None
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or not parts:
        raise ParameterError(f"--template {template!r} must give a relative path inside OUTDIR")
    if Path(name).suffix.lower() != ".wav":
        raise ParameterError(
            f"--template {template!r} must end in .wav (outputs are Broadcast WAV)"
        )
    return name


def _picture_start_label(path: str) -> str | None:
    """The start timecode stored in a picture file (QuickTime tmcd / MXF), if any."""
    import av  # only needed to read a picture's own timecode

    try:
        with av.open(path) as c:
            for meta in [c.metadata] + [s.metadata for s in c.streams]:
                if meta.get("timecode"):
                    return str(meta["timecode"])
    except (av.FFmpegError, OSError, ValueError):
        return None
    return None


def _rate_from_file(fps: float) -> FrameRate | None:
    for name in ("23.976", "24", "25", "29.97ndf", "30"):
        r = parse_rate(name)
        if abs(float(r.exact) - fps) < FPS_MISMATCH:
            return r
    return None


def _picture_origin(path: str, rate: FrameRate | None, override: str | None, fps: float) -> float:
    """Seconds since midnight of the picture's first frame: --reel-start, else the file's own
    timecode, else 0."""
    label = override or _picture_start_label(path)
    if not label:
        return 0.0
    tc = parse_timecode(label)
    if rate is None:
        rate = _rate_from_file(fps)
        if rate is None:
            return 0.0
        if tc.drop_frame:
            rate = parse_rate("29.97df")
    return timecode_to_seconds(tc, rate)


def plan_batch(cue_list: CueList, config: BatchConfig) -> tuple[CueJob, ...]:
    """Check every cue against the files and the frame rate; return one job per cue.

    Raises :class:`ParameterError` only for problems of the whole run (template, output name
    clashes); a problem of one cue is stored in its job and fails that cue alone.
    """
    if not config.handles >= 0:
        raise ParameterError(f"--handles must be >= 0 seconds, got {config.handles}")
    out_dir = Path(config.out_dir)
    probes: dict[str, Any] = {}
    origins: dict[str, float] = {}
    outputs: dict[str, str] = {}
    reports: set[str] = set()
    jobs = []
    for cue in cue_list.cues:
        report = safe_name(cue.cue_id)
        if report in reports:
            report = f"{report}_row{cue.row}"
        reports.add(report)
        report_path = str(out_dir / REPORT_DIR / f"{report}.json")

        takes = []
        stems: dict[str, int] = {}
        for index, dub in enumerate(cue.takes, start=1):
            take = safe_name(Path(dub).stem)
            stems[take] = stems.get(take, 0) + 1
            name = _format_output(config.template, {
                "cue": safe_name(cue.cue_id), "take": take, "index": str(index),
                "character": safe_name(cue.character), "row": str(cue.row),
            })
            output = str(out_dir / name)
            if output in outputs:
                raise ParameterError(
                    f"--template {config.template!r} names {cue.label} take {take} and "
                    f"{outputs[output]} both {name}: add {{take}} or {{index}} to the template"
                )
            outputs[output] = f"{cue.label} take {take}"
            if Path(output).resolve() == Path(dub).resolve():
                raise ParameterError(
                    f"{cue.label}: the output {output} would overwrite the take itself: "
                    "choose another -o folder or --template"
                )
            error = None if Path(dub).is_file() else f"{cue.label}: take file not found: {dub}"
            takes.append(TakeJob(take=take, dub=dub, output=output, error=error))

        picture = cue.picture or (str(config.picture) if config.picture else None)
        base = dict(cue=cue, picture=picture, start=None, end=None, origin_s=0.0, start_tc="",
                    takes=tuple(takes), report=report_path)
        try:
            if cue.error:
                raise ParameterError(cue.error)
            start, end, origin, start_tc, warnings = _plan_region(
                cue, picture, config, probes, origins
            )
        except DubalignError as e:
            jobs.append(CueJob(**base, error=_with_label(str(e), cue)))
            continue
        base.update(start=start, end=end, origin_s=origin, start_tc=start_tc)
        jobs.append(CueJob(**base, warnings=warnings))
    return tuple(jobs)


def _with_label(message: str, cue: Cue) -> str:
    return message if message.startswith("row ") else f"{cue.label}: {message}"


def _plan_region(cue: Cue, picture: str | None, config: BatchConfig, probes: dict,
                 origins: dict) -> tuple[float | None, float | None, float, str, tuple[str, ...]]:
    from .media import probe_picture
    from .timecode import seconds_to_timecode

    if picture is None:
        raise ParameterError("no picture: give a picture column or --picture REEL")
    uses_tc = bool(cue.tc_in or cue.tc_out)
    if not cue.picture and not uses_tc:
        raise ParameterError("a reel picture needs tc_in and tc_out for each cue")
    if uses_tc and not (cue.tc_in and cue.tc_out):
        raise ParameterError("give both tc_in and tc_out (or neither)")
    if uses_tc and config.fps is None:
        raise ParameterError("the cue list uses timecode: give the frame rate with --fps")
    if picture not in probes:
        probes[picture] = probe_picture(picture)  # MediaError when missing or unreadable
    info = probes[picture]
    warnings: list[str] = []
    rate = config.fps
    if rate is not None and info.fps and abs(info.fps - float(rate.exact)) > FPS_MISMATCH:
        warnings.append(f"the picture runs at {info.fps:.3f} fps but --fps is {config.fps}")
    if picture not in origins:
        origins[picture] = _picture_origin(picture, config.fps, config.reel_start, info.fps)
    origin = origins[picture]
    if not uses_tc:
        start_tc = str(seconds_to_timecode(origin, config.fps)) if config.fps else ""
        return None, None, origin, start_tc, tuple(warnings)
    try:
        t_in = timecode_to_seconds(cue.tc_in, config.fps) - origin
    except ParameterError as e:
        raise ParameterError(f"tc_in: {e}") from None
    try:
        t_out = timecode_to_seconds(cue.tc_out, config.fps) - origin
    except ParameterError as e:
        raise ParameterError(f"tc_out: {e}") from None
    if t_out <= t_in:
        raise ParameterError(f"tc_out {cue.tc_out} is not after tc_in {cue.tc_in}")
    if t_in >= info.duration or t_out <= 0:
        start_label = seconds_to_timecode(origin, config.fps)
        raise ParameterError(
            f"{cue.tc_in}-{cue.tc_out} lies outside the picture {Path(picture).name} "
            f"(starts {start_label}, lasts {info.duration:.2f} s); check --reel-start and --fps"
        )
    start = max(0.0, t_in - config.handles)
    end = min(info.duration, t_out + config.handles)
    return start, end, origin + start, str(seconds_to_timecode(origin + start, config.fps)), \
        tuple(warnings)


# ----------------------------------------------------------------------------- running a cue


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
    max_stretch: float | None = None  # largest local stretch or squeeze factor (>= 1)
    time_reference: int | None = None  # BWF TimeReference written (samples since midnight)
    warnings: tuple[str, ...] = ()
    error: str | None = None


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
        d = dataclasses.asdict(self)
        d["cue"] = dataclasses.asdict(self.cue)
        return d


def _cache_key(picture: str, start: float | None, end: float | None, cfg: Any) -> str:
    st = os.stat(picture)
    payload = {
        "picture": str(Path(picture).resolve()), "mtime_ns": st.st_mtime_ns, "size": st.st_size,
        "start": start, "end": end, "version": __version__,
        # Every config field, not a hand-picked few: a stale analysis costs more than a re-run.
        "config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def load_or_analyze(job: CueJob, cfg: AlignConfig, cache_dir: Path) -> PictureAnalysis:
    """The picture analysis of the cue's region, from ``cache_dir`` or computed and cached."""
    from .align import PictureAnalysis, analyze_picture

    path = cache_dir / f"{_cache_key(job.picture, job.start, job.end, cfg)}.npz"
    if path.is_file():
        try:
            return PictureAnalysis.load(path)
        except Exception:  # a damaged cache entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    pic = analyze_picture(job.picture, cfg, start=job.start, end=job.end)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=TEMP_MARK + ".npz", dir=cache_dir)
    os.close(fd)
    try:
        pic.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return pic


def max_stretch(timemap: Any) -> float:
    """Largest factor by which the map stretches or squeezes the dub anywhere (>= 1)."""
    s = [float(x) for x in timemap.stretch() if x > 0 and math.isfinite(x)]
    if not s:
        return 1.0
    return max(max(s), 1.0 / min(s), 1.0)


def take_score(confidence: float, stretch: float) -> float:
    """Ranking score of an aligned take: fit to the lips, less a penalty for strong warps."""
    return float(confidence) - STRETCH_WEIGHT * math.log(max(stretch, 1.0))


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


class _NoTakes(Exception):
    """No take of the cue can run: the picture is not worth analysing."""


def run_cue(job: CueJob, cfg: AlignConfig | None, cache_dir: Path) -> CueOutcome:
    """Analyse the cue's picture region, align and rank every take, write outputs and report.

    Never raises for a problem of the cue itself: it comes back as a failed outcome.
    """
    t0 = time.perf_counter()
    cue = job.cue
    if job.error:
        takes = tuple(TakeOutcome(take=t.take, dub=t.dub, output=None, status="failed",
                                  error=job.error) for t in job.takes)
        outcome = CueOutcome(cue=cue, status="failed", takes=takes, best_take=None,
                             report=job.report, warnings=job.warnings, error=job.error)
        _write_report(job, outcome, {})
        return outcome

    from .align import AlignConfig, align_dub

    cfg = cfg or AlignConfig()
    try:
        if all(t.error for t in job.takes):
            raise _NoTakes(job.takes[0].error)
        pic = load_or_analyze(job, cfg, cache_dir)
    except Exception as e:
        msg = str(e) if isinstance(e, _NoTakes) else f"{cue.label}: picture: {_short_error(e)}"
        takes = tuple(TakeOutcome(take=t.take, dub=t.dub, output=None, status="failed", error=msg)
                      for t in job.takes)
        outcome = CueOutcome(cue=cue, status="failed", takes=takes, best_take=None,
                             report=job.report, start_tc=job.start_tc, warnings=job.warnings,
                             error=msg, seconds=time.perf_counter() - t0)
        _write_report(job, outcome, {})
        return outcome

    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for t in job.takes:
        if t.error:
            errors[t.take] = t.error
            continue
        try:
            results[t.take] = align_dub(pic, t.dub, cfg)
        except Exception as e:
            errors[t.take] = f"{cue.label} take {t.take}: {_short_error(e)}"

    metrics = {}
    for name, res in results.items():
        stretch = max_stretch(res.timemap)
        conf = float(res.overall_confidence)
        metrics[name] = (conf, stretch, take_score(conf, stretch))
    order = sorted(metrics, key=lambda n: -metrics[n][2])
    best = order[0] if order else None

    outcomes = []
    for t in job.takes:
        if t.take not in results:
            outcomes.append(TakeOutcome(take=t.take, dub=t.dub, output=None, status="failed",
                                        error=errors[t.take]))
            continue
        res = results[t.take]
        conf, stretch, score = metrics[t.take]
        tref = int(round(job.origin_s * res.sr))
        try:
            Path(t.output).parent.mkdir(parents=True, exist_ok=True)
            write_bwf(t.output, res.audio, res.sr, subtype=bwf_subtype(res.subtype),
                      time_reference=tref, description=_description(cue, t.take, t.take == best),
                      originator_reference=f"{cue.cue_id}/{t.take}"[:32])
        except Exception as e:
            outcomes.append(TakeOutcome(
                take=t.take, dub=t.dub, output=None, status="failed", confidence=conf,
                max_stretch=stretch, score=score,
                error=f"{cue.label} take {t.take}: writing {t.output}: {_short_error(e)}"))
            continue
        outcomes.append(TakeOutcome(
            take=t.take, dub=t.dub, output=t.output, status="ok", best=t.take == best,
            rank=order.index(t.take) + 1, score=score, confidence=conf, max_stretch=stretch,
            time_reference=tref, warnings=tuple(res.warnings)))

    n_ok = sum(o.status == "ok" for o in outcomes)
    status = "ok" if n_ok == len(outcomes) and n_ok else ("partial" if n_ok else "failed")
    if best is not None and not any(o.best for o in outcomes):
        best = None  # the best take's file could not be written
    outcome = CueOutcome(
        cue=cue, status=status, takes=tuple(outcomes), best_take=best, report=job.report,
        start_tc=job.start_tc, warnings=job.warnings,
        error=None if n_ok else next((o.error for o in outcomes if o.error), None),
        seconds=time.perf_counter() - t0,
    )
    _write_report(job, outcome, results)
    return outcome


def _alignment_json(res: Any) -> Any:
    d = res.to_json()
    return json.loads(d) if isinstance(d, str) else d


def _write_report(job: CueJob, outcome: CueOutcome, results: dict[str, Any]) -> None:
    report = {
        "dubalign": __version__,
        **outcome.to_dict(),
        "picture": job.picture,
        "region": {"start": job.start, "end": job.end, "start_tc": job.start_tc,
                   "origin_s": job.origin_s},
        "alignments": {name: _alignment_json(res) for name, res in results.items()},
    }
    write_json(job.report, report)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_MARK, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


# ----------------------------------------------------------------------------- resume


def previous_outcome(job: CueJob) -> CueOutcome | None:
    """The outcome recorded by an earlier run, if the cue is done: its report says every take
    is ok, lists the same take files and region, and every output file is there."""
    try:
        rep = json.loads(Path(job.report).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    takes = rep.get("takes") or []
    if rep.get("status") != "ok" or [t.get("dub") for t in takes] != [t.dub for t in job.takes]:
        return None
    region = rep.get("region") or {}
    if (rep.get("picture"), region.get("start"), region.get("end")) != \
            (job.picture, job.start, job.end):
        return None
    if any(t.get("output") != j.output or not Path(j.output).is_file()
           for t, j in zip(takes, job.takes, strict=True)):
        return None
    note = "skipped: done in an earlier run (--resume)"
    fields = {f.name for f in dataclasses.fields(TakeOutcome)}
    outs = tuple(
        TakeOutcome(**{**{k: v for k, v in t.items() if k in fields},
                       "status": "skipped", "warnings": tuple(t.get("warnings") or ()),
                       "error": note})
        for t in takes
    )
    return CueOutcome(cue=job.cue, status="skipped", takes=outs, best_take=rep.get("best_take"),
                      report=job.report, start_tc=job.start_tc, warnings=job.warnings,
                      error=note)


# ----------------------------------------------------------------------------- the reel


@dataclass(frozen=True)
class BatchResult:
    outcomes: tuple[CueOutcome, ...]
    summary_csv: str
    summary_json: str
    interrupted: bool = False
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)  # take status -> number of takes


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_batch`; ``.result`` holds what completed (summary written)."""

    def __init__(self, result: BatchResult):
        super().__init__("interrupted")
        self.result = result


def _emit(hook: Hook | None, stage: str, value: Any) -> None:
    if hook is not None:
        hook(stage, value)


def _init_worker(cfg: Any) -> None:
    # Ctrl-C is handled by the parent alone: it cancels, stops the workers and cleans up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mute_native_stderr()  # MediaPipe's native log lines would clutter the parent's progress bar
    try:  # load models once per worker, not once per cue, when the aligner offers it
        from . import align as _align

        _align.load_lip_model(cfg.model if cfg is not None else _align.SHIPPED_MODEL)
    except Exception:  # a failed warm-up resurfaces as a per-cue error
        pass


def sweep_temp_files(out_dir: Path) -> int:
    """Remove temporary files we left in ``out_dir`` (a killed worker cannot clean up)."""
    n = 0
    if not out_dir.is_dir():
        return 0
    for p in out_dir.rglob(f"*{TEMP_MARK}*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def run_batch(config: BatchConfig, *, hook: Hook | None = None) -> BatchResult:
    """Run a reel's cue list; see the module docstring. Returns what happened to every take.

    hook(stage, value) is called with ("plan", tuple of CueJob) once, then ("cue", CueOutcome)
    as each cue completes (including failed and resumed ones), in completion order.
    """
    t0 = time.perf_counter()
    if config.jobs < 1:
        raise ParameterError(f"--jobs must be >= 1, got {config.jobs}")
    if config.align is not None:
        config.align.check()
    if config.reel_start is not None:
        parse_timecode(config.reel_start)
    cue_list = read_cue_list(config.cues, column_map=config.column_map)
    jobs = plan_batch(cue_list, config)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = out_dir / CACHE_DIR
    sweep_temp_files(out_dir)
    _emit(hook, "plan", jobs)

    outcomes: dict[int, CueOutcome] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        prev = previous_outcome(job) if config.resume and not job.error else None
        if job.error or prev is not None:
            outcomes[i] = prev or run_cue(job, config.align, cache_dir)
            _emit(hook, "cue", outcomes[i])
        else:
            todo.append(i)

    def finish(interrupted: bool) -> BatchResult:
        return write_summary(jobs, outcomes, out_dir, interrupted=interrupted,
                             seconds=time.perf_counter() - t0)

    try:
        if config.jobs == 1 or len(todo) <= 1:
            for i in todo:
                outcomes[i] = run_cue(jobs[i], config.align, cache_dir)
                _emit(hook, "cue", outcomes[i])
        else:
            _run_pool(jobs, todo, outcomes, config, cache_dir, hook)
    except KeyboardInterrupt:
        sweep_temp_files(out_dir)
        raise BatchInterrupted(finish(True)) from None
    return finish(False)


def _failed_outcome(job: CueJob, message: str) -> CueOutcome:
    msg = f"{job.cue.label}: {message}"
    return CueOutcome(cue=job.cue, status="failed", best_take=None, report=None, error=msg,
                      takes=tuple(TakeOutcome(take=t.take, dub=t.dub, output=None,
                                              status="failed", error=msg) for t in job.takes))


def _stop_executor(executor: ProcessPoolExecutor) -> None:
    """Cancel what is queued and stop the workers now, mid-cue if need be."""
    procs = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=10)


def _run_pool(jobs: Sequence[CueJob], todo: list[int], outcomes: dict[int, CueOutcome],
              config: BatchConfig, cache_dir: Path, hook: Hook | None) -> None:
    """Run the cues ``todo`` on ``config.jobs`` spawned workers.

    At most one cue per worker is submitted at a time, so when a worker dies (killed, out of
    memory) only the cues in flight are suspects: each is retried alone in a fresh pool, and a
    cue that kills its worker when alone fails; the rest of the reel goes on.
    """
    ctx = multiprocessing.get_context("spawn")
    n_workers = min(config.jobs, len(todo))

    def new_executor() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx,
                                   initializer=_init_worker, initargs=(config.align,))

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
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            lost: list[int] = []
            for fut in done:
                i = in_flight.pop(fut)
                try:
                    outcomes[i] = fut.result()
                except BrokenProcessPool:
                    lost.append(i)
                    continue
                except Exception as e:  # pickling trouble and the like: this cue only
                    outcomes[i] = _failed_outcome(jobs[i], f"worker error: {_short_error(e)}")
                _emit(hook, "cue", outcomes[i])
            if not lost:
                continue
            # The pool is broken: every cue still in flight is lost with it.
            lost += list(in_flight.values())
            in_flight.clear()
            _stop_executor(executor)
            for i in reversed(lost):
                if i in suspects and len(lost) == 1:
                    outcomes[i] = _failed_outcome(
                        jobs[i], "the worker process died on this cue (killed or out of memory)")
                    _emit(hook, "cue", outcomes[i])
                else:
                    suspects.add(i)
                    queue.appendleft(i)
            executor = new_executor()
    except BaseException:
        # Ctrl-C: workers ignore SIGINT and may be mid-cue; stop them rather than wait.
        _stop_executor(executor)
        raise
    executor.shutdown(wait=True)


# ----------------------------------------------------------------------------- summary

SUMMARY_COLUMNS = (
    "cue", "row", "character", "line", "take", "take_file", "output", "status", "best", "rank",
    "confidence", "max_stretch", "start_tc", "warnings", "error",
)


def write_summary(jobs: Sequence[CueJob], outcomes: dict[int, CueOutcome], out_dir: Path, *,
                  interrupted: bool, seconds: float) -> BatchResult:
    """Write ``summary.csv`` (one row per take) and ``summary.json`` (one entry per cue).

    Cues that never ran (Ctrl-C) are listed as skipped.
    """
    note = "skipped: interrupted before this cue ran"
    full: list[CueOutcome] = []
    for i, job in enumerate(jobs):
        if i in outcomes:
            full.append(outcomes[i])
        else:
            full.append(CueOutcome(
                cue=job.cue, status="skipped", best_take=None, report=None, error=note,
                start_tc=job.start_tc,
                takes=tuple(TakeOutcome(take=t.take, dub=t.dub, output=None, status="skipped",
                                        error=note) for t in job.takes)))
    rows = []
    counts: dict[str, int] = {}
    for o in full:
        takes = o.takes or (TakeOutcome(take="", dub="", output=None, status=o.status,
                                        error=o.error),)
        for t in takes:
            counts[t.status] = counts.get(t.status, 0) + 1
            rows.append({
                "cue": o.cue.cue_id, "row": o.cue.row, "character": o.cue.character,
                "line": o.cue.line, "take": t.take, "take_file": t.dub, "output": t.output or "",
                "status": t.status, "best": "yes" if t.best else "", "rank": t.rank or "",
                "confidence": "" if t.confidence is None else f"{t.confidence:.3f}",
                "max_stretch": "" if t.max_stretch is None else f"{t.max_stretch:.3f}",
                "start_tc": o.start_tc, "warnings": "; ".join(o.warnings + t.warnings),
                "error": t.error or "",
            })
    csv_path = out_dir / SUMMARY_CSV
    json_path = out_dir / SUMMARY_JSON
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(csv_path, buf.getvalue())
    result = BatchResult(outcomes=tuple(full), summary_csv=str(csv_path),
                         summary_json=str(json_path), interrupted=interrupted, seconds=seconds,
                         counts=counts)
    write_json(json_path, {
        "dubalign": __version__, "interrupted": interrupted, "seconds": round(seconds, 3),
        "counts": counts, "cues": [o.to_dict() for o in full],
    })
    return result


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_MARK, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
