"""A reel's cue list (CSV, TSV or XLSX) read into :class:`Cue` records.

The header names the columns (case-insensitive synonyms, see :data:`SYNONYMS`, or ``--map``).
Rows with the same cue id are merged into one cue. A problem of one row (no take, a timecode
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
# Several take files in one cell are separated by either of these. A cell that holds the list's
# own delimiter must be quoted (spreadsheets do that when saving); an unquoted take list in a
# ';'-separated list spills into the next columns and is reported, with '|' as the fix.
TAKE_SEPARATORS = "|;"
_TAKE_SPLIT = re.compile("[" + re.escape(TAKE_SEPARATORS) + "]")


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

    @property
    def label(self) -> str:
        return f"row {self.row} (cue {self.cue_id})"


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
        self.values: dict[str, tuple[str, int]] = {}  # field -> (value, row it came from)
        self.errors: list[str] = []

    def add(self, line_no: int, get, base: Path) -> None:
        for text in _TAKE_SPLIT.split(get("take")):
            if not text.strip():
                continue
            take = _resolve(text, base)
            if take in self.takes:
                self.errors.append(f"row {line_no} (cue {self.cue_id}): take {text.strip()} is listed again "
                                   f"(first on row {self.takes[take]}): remove one")
            else:
                self.takes[take] = line_no
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
            error=errors[0] if errors else None,
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
