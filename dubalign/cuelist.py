"""A reel's cue list (CSV, TSV or XLSX) read into :class:`Cue` records.

The header names the columns (case-insensitive synonyms, see :data:`SYNONYMS`, or ``--map``).
Rows with the same cue id are merged into one cue. Optional control columns (:data:`CONTROL_FIELDS`:
sync points, protected spans, tightness, stretch limits, plot and preview requests) apply to the
takes listed on their row, read into :class:`Controls`. A problem of one row (no take, a timecode
that contradicts an earlier row of the cue, a take listed twice) marks that cue only, so the
rest of the reel still runs; a problem of the whole list (no header match, unreadable file)
raises.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import MediaError, ParameterError
from .timecode import Timecode, parse_timecode

# Optional per-take controls: they apply to the takes listed on the same row (see Controls).
CONTROL_FIELDS = ("sync_points", "protect", "tightness", "min_stretch", "max_stretch", "plot", "preview")
# Cue list columns we understand, and the header names (normalised) that mean each one.
FIELDS = ("cue", "take", "picture", "tc_in", "tc_out", "character", "line", *CONTROL_FIELDS)
SYNONYMS = {
    "cue": ("cue", "cue_id", "cueid", "id", "cue_no", "cue_number", "cue_name"),
    "take": ("take", "takes", "dub", "dubs", "file", "files", "take_file", "dub_file", "audio"),
    "picture": ("picture", "video", "pic", "movie", "picture_file", "video_file"),
    "tc_in": ("tc_in", "tcin", "in", "start", "timecode_in", "start_tc", "record_in"),
    "tc_out": ("tc_out", "tcout", "out", "end", "timecode_out", "end_tc", "record_out"),
    "character": ("character", "char", "role"),
    "line": ("line", "text", "dialogue", "dialog"),
    "sync_points": ("sync_points", "sync_point", "syncpoints", "sync"),
    "protect": ("protect", "protected", "protect_spans"),
    "tightness": ("tightness", "tight"),
    "min_stretch": ("min_stretch", "minstretch", "stretch_min"),
    "max_stretch": ("max_stretch", "maxstretch", "stretch_max"),
    "plot": ("plot", "plots"),
    "preview": ("preview", "previews"),
}
DELIMITERS = ",\t;|"  # candidate cue list delimiters, sniffed from the header line
# Several take files in one cell are separated by either of these. A cell that holds the list's
# own delimiter must be quoted (spreadsheets do that when saving); an unquoted take list in a
# ';'-separated list spills into the next columns and is reported, with '|' as the fix.
TAKE_SEPARATORS = "|;"
_TAKE_SPLIT = re.compile("[" + re.escape(TAKE_SEPARATORS) + "]")
# Items of a sync_points or protect cell are separated by spaces or commas (';' and ':' belong to
# timecode, '-' to a span).
_ITEM_SPLIT = re.compile(r"[\s,]+")
_SECONDS_RE = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")  # non-negative decimal seconds
_YES = ("yes", "y", "true", "1", "x")
_NO = ("no", "n", "false", "0")


@dataclass(frozen=True)
class Controls:
    """Per-take alignment controls from the optional cue-list columns (empty cells: not given).

    sync_points : (dub s, picture) pairs the map must pass through; picture is seconds from the
        start of the cue's picture region (tc_in less the handles: time 0 of the plot and preview)
        or a :class:`~dubalign.timecode.Timecode` on the picture's clock, which planning turns
        into region seconds (:func:`dubalign.plan.plan_batch`)
    protect : (start, end) dub s spans played at their recorded speed
    """

    sync_points: tuple[tuple[float, float | Timecode], ...] = ()
    protect: tuple[tuple[float, float], ...] = ()
    tightness: float | None = None  # 0 (one shift for the whole take) .. 1 (warp freely)
    min_stretch: float | None = None  # None: the batch's setting
    max_stretch: float | None = None
    plot: bool | None = None  # None: as --plots says
    preview: bool | None = None  # None: as --previews says

    def align_changes(self) -> dict[str, object]:
        """The AlignConfig fields these controls set (for ``dataclasses.replace``); sync points
        must already be in region seconds."""
        assert all(isinstance(p, float) for _, p in self.sync_points), "sync points not planned yet"
        changes: dict[str, object] = {}
        if self.sync_points:
            changes["sync_points"] = self.sync_points
        if self.protect:
            changes["protect"] = self.protect
        for name in ("tightness", "min_stretch", "max_stretch"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        return changes


def parse_sync_points(text: str) -> tuple[tuple[float, float | Timecode], ...]:
    """``"0.5=1.25 1.2=01:00:03:10"`` -> ``((0.5, 1.25), (1.2, Timecode(1, 0, 3, 10)))``.

    Each item is DUB=PICTURE: dub seconds, then picture seconds from the cue's region start or a
    timecode. Items are separated by spaces or commas, in any order (returned in dub time order;
    the aligner refuses points that contradict each other).
    """
    points: list[tuple[float, float | Timecode]] = []
    for item in _items(text):
        dub, sep, pic = item.partition("=")
        if not sep or not _SECONDS_RE.match(dub.strip()):
            raise ParameterError(f"sync point {item!r} needs the form DUB_S=PICTURE_S or DUB_S=HH:MM:SS:FF")
        pic = pic.strip()
        if _SECONDS_RE.match(pic):
            at: float | Timecode = float(pic)
        else:
            try:
                at = parse_timecode(pic)
            except ParameterError:
                raise ParameterError(f"sync point {item!r}: {pic!r} is neither seconds nor a timecode "
                                     "HH:MM:SS:FF") from None
        points.append((float(dub), at))
    return tuple(sorted(points, key=lambda p: p[0]))


def parse_protect(text: str) -> tuple[tuple[float, float], ...]:
    """``"0.2-0.6 1.0-1.3"`` -> ``((0.2, 0.6), (1.0, 1.3))``: dub-second spans, start before end,
    in order and not overlapping."""
    spans: list[tuple[float, float]] = []
    for item in _items(text):
        a, sep, b = item.partition("-")
        if not sep or not _SECONDS_RE.match(a.strip()) or not _SECONDS_RE.match(b.strip()):
            raise ParameterError(f"protect span {item!r} needs the form START-END in dub seconds, e.g. 0.2-0.6")
        start, end = float(a), float(b)
        if end <= start:
            raise ParameterError(f"protect span {item!r} ends before it starts")
        if spans and start < spans[-1][1]:
            raise ParameterError(f"protect span {item!r} overlaps or precedes the span before it")
        spans.append((start, end))
    return tuple(spans)


def parse_flag(text: str, name: str) -> bool:
    """``yes``/``no`` (also y/n, true/false, 1/0, x for yes) -> bool."""
    value = text.strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ParameterError(f"{name} {text!r} must be yes or no")


def parse_number(text: str, name: str) -> float:
    """A positive decimal number (tightness, stretch limits); ranges are checked by the aligner."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ParameterError(f"{name} {text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise ParameterError(f"{name} {text!r} must be a number >= 0")
    return value


def parse_controls(cells: dict[str, str]) -> Controls:
    """:class:`Controls` from ``{field: cell text}`` of one row (empty cells left out).

    Raises :class:`ParameterError` naming the column and value (the caller adds the row).
    """
    kw: dict[str, object] = {}
    for name, text in cells.items():
        if not text.strip():
            continue
        if name == "sync_points":
            kw[name] = parse_sync_points(text)
        elif name == "protect":
            kw[name] = parse_protect(text)
        elif name in ("plot", "preview"):
            kw[name] = parse_flag(text, name)
        elif name == "tightness":
            kw[name] = parse_number(text, name)
            if kw[name] > 1:
                raise ParameterError(f"tightness {text!r} must lie between 0 (one shift) and 1 (free warp)")
        elif name in ("min_stretch", "max_stretch"):
            kw[name] = parse_number(text, name)
        else:
            raise ParameterError(f"{name} is not a control column")
    return Controls(**kw)


def _items(text: str) -> list[str]:
    return [i for i in _ITEM_SPLIT.split(text.strip()) if i]


@dataclass(frozen=True)
class Cue:
    """One cue of the list (several rows with the same id are merged into one cue)."""

    cue_id: str
    row: int  # line number of the cue's first row in the cue list (the header is line 1)
    takes: tuple[str, ...]  # take file paths, resolved against the cue list's folder
    take_rows: tuple[int, ...]  # the row each take was listed on
    picture: str | None  # the cue's own picture file, resolved; None: use the reel picture
    tc_in: str
    tc_out: str
    character: str
    line: str
    error: str | None = None  # a problem found while reading; the cue fails with it
    take_controls: tuple[Controls, ...] = ()  # one per take, from its row's control columns

    @property
    def label(self) -> str:
        return f"row {self.row} (cue {self.cue_id})"

    def controls(self, index: int) -> Controls:
        """The controls of take ``index`` (none given: the batch's settings)."""
        return self.take_controls[index] if index < len(self.take_controls) else Controls()


@dataclass(frozen=True)
class CueList:
    path: str
    columns: tuple[tuple[str, str], ...]  # (field, header) actually used
    cues: tuple[Cue, ...]
    delimiter: str | None = None  # None for a spreadsheet
    warnings: tuple[str, ...] = ()  # about the whole list (e.g. a header without cues)


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
            raise ParameterError(f"--map item {item!r} names no known field: use one of {', '.join(FIELDS)}")
    return tuple(pairs)


def read_cue_list(path: str | os.PathLike, *, column_map: Sequence[tuple[str, str]] = ()) -> CueList:
    """Read a cue list: header auto-detected (case-insensitive synonyms) or named by ``column_map``.

    Rows with the same cue id are merged (their takes appended). Structural problems (no header
    match, unreadable file) raise :class:`ParameterError`/:class:`MediaError`; a problem in one
    row only marks that cue (``Cue.error``) so the rest of the reel still runs.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"cue list not found: {path}")
    rows, delimiter = _read_rows(path)
    rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ParameterError(f"the cue list {path} is empty")
    (_, header), body = rows[0], rows[1:]
    columns = _detect_columns(header, column_map, path)
    base = path.resolve().parent

    merged: dict[str, _CueRows] = {}
    for line_no, row in body:
        def get(fld: str, row: list[str] = row) -> str:
            j = columns.get(fld)
            return row[j].strip() if j is not None and j < len(row) else ""

        cue_id = get("cue") or f"row{line_no}"
        rec = merged.setdefault(cue_id, _CueRows(cue_id, line_no))
        rec.add(line_no, get, base)
        if not get("cue"):
            rec.errors.append(f"row {line_no}: empty cue id")
        spill = [c for c in row[len(header):] if c.strip()]
        if spill:
            other = next(s for s in TAKE_SEPARATORS if s != delimiter)
            if delimiter is None:
                hint = "give every column a header"
            elif delimiter in TAKE_SEPARATORS:
                hint = f"quote a cell that holds {delimiter!r}, and separate takes with {other!r}"
            else:
                hint = f"quote a cell that holds {delimiter!r}"
            rec.errors.append(f"row {line_no} (cue {cue_id}): {len(spill)} more cell(s) than the header has "
                              f"columns: {hint}")
    warnings = () if merged else (f"the cue list {path} has a header but no cues: nothing to do",)
    named = tuple((f, header[j]) for f, j in columns.items())
    return CueList(path=str(path), columns=named, cues=tuple(r.cue() for r in merged.values()),
                   delimiter=delimiter, warnings=warnings)


class _CueRows:
    """The rows of one cue id, gathered while reading (merged into one :class:`Cue`)."""

    def __init__(self, cue_id: str, row: int) -> None:
        self.cue_id = cue_id
        self.row = row
        self.takes: dict[str, int] = {}  # take path -> row it was listed on
        self.controls: dict[str, Controls] = {}  # take path -> the controls of its row
        self.values: dict[str, tuple[str, int]] = {}  # field -> (value, row it came from)
        self.errors: list[str] = []

    def add(self, line_no: int, get, base: Path) -> None:
        cells = {fld: get(fld) for fld in CONTROL_FIELDS if get(fld)}
        try:
            controls = parse_controls(cells)
        except ParameterError as e:
            self.errors.append(f"row {line_no} (cue {self.cue_id}): {e}")
            controls = Controls()
        if cells and not get("take").strip():
            self.errors.append(f"row {line_no} (cue {self.cue_id}): {', '.join(cells)} given without a take: "
                               "controls apply to the takes on their row")
        for text in _TAKE_SPLIT.split(get("take")):
            if not text.strip():
                continue
            take = _resolve(text, base)
            if take in self.takes:
                self.errors.append(f"row {line_no} (cue {self.cue_id}): take {text.strip()} is listed again "
                                   f"(first on row {self.takes[take]}): remove one")
            else:
                self.takes[take] = line_no
                self.controls[take] = controls
        for fld in ("picture", "tc_in", "tc_out", "character", "line"):
            value = get(fld)
            if not value:
                continue
            if fld == "picture":
                value = _resolve(value, base)
            if fld not in self.values:
                self.values[fld] = (value, line_no)
            elif self.values[fld][0] != value and fld not in ("character", "line"):
                first, at = self.values[fld]
                self.errors.append(f"row {line_no} (cue {self.cue_id}): {fld} {value!r} differs from {first!r} "
                                   f"given for the same cue on row {at}")

    def cue(self) -> Cue:
        errors = list(self.errors)
        if not self.takes:
            errors.append(f"row {self.row} (cue {self.cue_id}): no take file given")
        value = {fld: v for fld, (v, _) in self.values.items()}
        return Cue(
            cue_id=self.cue_id, row=self.row, takes=tuple(self.takes), take_rows=tuple(self.takes.values()),
            picture=value.get("picture"), tc_in=value.get("tc_in", ""), tc_out=value.get("tc_out", ""),
            character=value.get("character", ""), line=value.get("line", ""),
            error=errors[0] if errors else None, take_controls=tuple(self.controls[t] for t in self.takes),
        )


def _norm_header(name: str) -> str:
    return re.sub(r"[\s\-./#]+", "_", str(name).strip().lower()).strip("_")


def _read_rows(path: Path) -> tuple[list[tuple[int, list[str]]], str | None]:
    """(row number, cells) of every row, header first, and the delimiter (None for XLSX).

    Row numbers are the line (or sheet row) a record starts on, so messages point at the row an
    editor sees even when a quoted cell spans several lines.
    """
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            import openpyxl  # optional: only for cue lists kept as spreadsheets
        except ImportError:
            raise ParameterError(
                f"{path.name}: reading XLSX needs openpyxl (pip install openpyxl), or save the cue list as CSV"
            ) from None
        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            rows = [(i, ["" if v is None else str(v) for v in r])
                    for i, r in enumerate(wb.worksheets[0].iter_rows(values_only=True), start=1)]
            wb.close()
        except Exception as e:  # openpyxl raises many types for damaged files
            raise MediaError(f"cannot read the cue list {path}: {e}") from None
        return rows, None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise MediaError(f"cannot read the cue list {path}: {e.strerror or e}") from None
    if "\x00" in text or sum(not (c.isprintable() or c.isspace()) for c in text[:4096]) > 8:
        raise MediaError(f"the cue list {path} is not a text file: save it as CSV or TSV (or XLSX)")
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
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = []
    start = 1
    for cells in reader:
        rows.append((start, cells))
        start = reader.line_num + 1
    return rows, delimiter


def _detect_columns(header: Sequence[str], column_map: Sequence[tuple[str, str]], path: Path) -> dict[str, int]:
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
            raise ParameterError(f"{path.name}: columns {names} could all be {fld!r}; pick one with --map {fld}=NAME")
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
