"""The batch review page: one static, self-contained ``index.html`` for a reel's cues.

One row per cue: its takes ranked, the best take's confidence and stretch, the warnings, the sync
plot and a player for the preview, where those were written. Columns sort on a click. The page
needs no server and loads nothing from the network: styles and the sorting script are inline,
plots and previews are linked relative to the page, so the output folder can be moved or shared
as it is.

Every text that comes from a cue list or a file name is escaped. Writes straight to the path
given: the caller makes it atomic (:func:`dubalign.files.atomic_outputs`).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from .takes import CueOutcome

REVIEW_PAGE = "index.html"  # the page's name in the batch output folder
STRONG_STRETCH = 1.25  # a best take stretched or squeezed more than this is flagged
# Players load their preview with the page (showing its first frame) up to this many previews;
# past it only their length, so that a whole reel's page opens without reading every movie.
PRELOAD_MAX = 24


@dataclass(frozen=True)
class ReviewTake:
    """One take of a cue, as the page shows it. Links are relative to the page (URL-quoted here)."""

    take: str
    status: str  # "ok" | "failed" | "skipped"
    rank: int | None = None  # 1 = best among the cue's aligned takes
    confidence: float | None = None  # 0..1
    max_stretch: float | None = None  # largest stretch or squeeze of the speech (>= 1)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    output: str | None = None  # the aligned WAV
    plot: str | None = None  # the sync plot (PNG)
    preview: str | None = None  # the preview movie


@dataclass(frozen=True)
class ReviewRow:
    """One cue of the page."""

    cue_id: str
    status: str  # "ok" | "partial" | "failed" | "skipped"
    takes: tuple[ReviewTake, ...]
    character: str = ""
    line: str = ""
    start_tc: str = ""  # timecode of the cue's picture region
    warnings: tuple[str, ...] = ()  # about the cue itself (not one take)
    error: str | None = None
    report: str | None = None  # the cue's report JSON

    @property
    def ranked(self) -> list[ReviewTake]:
        """Takes best first; takes without a rank (failed, skipped) after, in list order."""
        return sorted(self.takes, key=lambda t: (t.rank is None, t.rank or 0))

    @property
    def best(self) -> ReviewTake | None:
        first = self.ranked[0] if self.takes else None
        return first if first is not None and first.rank is not None else None


def review_rows(
    outcomes: Iterable[CueOutcome],
    page_dir: str | os.PathLike,
    *,
    plots: Mapping[tuple[str, str], str | os.PathLike] | None = None,
    previews: Mapping[tuple[str, str], str | os.PathLike] | None = None,
) -> list[ReviewRow]:
    """Rows for :func:`write_review_page` from a batch's outcomes (:class:`dubalign.batch.CueOutcome`).

    plots, previews : {(cue id, take name): file} of what was written for each take
    Paths become links relative to ``page_dir``, the folder the page is written to.
    """
    plots, previews = plots or {}, previews or {}

    def link(p: str | os.PathLike | None) -> str | None:
        return None if p is None else os.path.relpath(Path(p).resolve(), Path(page_dir).resolve())

    rows = []
    for o in outcomes:
        takes = tuple(
            ReviewTake(
                take=t.take, status=t.status, rank=t.rank, confidence=t.confidence, max_stretch=t.max_stretch,
                warnings=tuple(t.warnings), error=t.error, output=link(t.output),
                plot=link(plots.get((o.cue.cue_id, t.take))), preview=link(previews.get((o.cue.cue_id, t.take))),
            )
            for t in o.takes
        )
        rows.append(ReviewRow(
            cue_id=o.cue.cue_id, status=o.status, takes=takes, character=o.cue.character, line=o.cue.line,
            start_tc=o.start_tc, warnings=tuple(o.warnings), error=o.error, report=link(o.report),
        ))
    return rows


def write_review_page(
    path: str | os.PathLike, rows: Sequence[ReviewRow], *, title: str = "dubalign review", notes: Sequence[str] = ()
) -> None:
    """Write the review page for ``rows`` (one per cue) to ``path`` (UTF-8 HTML).

    notes : lines about the whole run shown above the table (e.g. the batch's warnings)
    Writes non-atomically: wrap the call in :func:`dubalign.files.atomic_outputs`.
    """
    Path(path).write_text(review_html(rows, title=title, notes=notes), encoding="utf-8")


def review_html(rows: Sequence[ReviewRow], *, title: str = "dubalign review", notes: Sequence[str] = ()) -> str:
    """The review page as a string (see :func:`write_review_page`)."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    n_warned = sum(1 for r in rows if _all_warnings(r))
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no cues"
    nosort = ' class="nosort"'
    head = "".join(
        f'<th scope="col" data-type="{kind}"{nosort if kind == "none" else ""}>{_e(name)}</th>'
        for name, kind in COLUMNS
    )
    n_previews = sum(1 for r in rows if any(t.preview for t in r.takes))
    preload = "auto" if n_previews <= PRELOAD_MAX else "metadata"
    body = "\n".join(_row_html(r, preload) for r in rows) or f'<tr><td colspan="{len(COLUMNS)}">No cues.</td></tr>'
    note_html = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return PAGE.format(
        title=_e(title), n=len(rows), summary=_e(summary), warned=n_warned, head=head, body=body,
        notes=f'<ul class="notes">{note_html}</ul>' if note_html else "", css=CSS, js=JS,
    )


# (heading, how it sorts): "text", "num", or "none" (not sortable)
COLUMNS = (
    ("Cue", "text"), ("Timecode", "text"), ("Character", "text"), ("Line", "text"), ("Status", "text"),
    ("Confidence", "num"), ("Stretch", "num"), ("Warnings", "num"), ("Takes, best first", "none"),
    ("Plot and preview", "none"),
)


def _row_html(r: ReviewRow, preload: str) -> str:
    best = r.best
    conf, stretch = (best.confidence, best.max_stretch) if best is not None else (None, None)
    warnings = _all_warnings(r)
    plot = next((t.plot for t in r.ranked if t.plot), None)
    preview = next((t.preview for t in r.ranked if t.preview), None)
    cells = [
        _td(_e(r.cue_id), sort=r.cue_id, cls="cue"),
        _td(_e(r.start_tc), sort=r.start_tc, cls="tc"),
        _td(_e(r.character), sort=r.character),
        _td(_e(r.line), sort=r.line, cls="line"),
        _td(f'<span class="badge {_e(r.status)}">{_e(r.status)}</span>'
            + (f'<div class="error">{_e(r.error)}</div>' if r.error else "")
            + (f'<div><a href="{_url(r.report)}">report</a></div>' if r.report else ""), sort=r.status),
        _td(_confidence_html(conf), sort=_num(conf), cls="num"),
        _td(_stretch_html(stretch), sort=_num(stretch), cls="num"),
        _td(_warnings_html(warnings), sort=str(len(warnings)), cls="warnings"),
        _td("<ol>" + "".join(_take_html(t) for t in r.ranked) + "</ol>" if r.takes else "", cls="takes"),
        _td(_media_html(r.cue_id, plot, preview, preload), cls="media"),
    ]
    return f'<tr class="cue-row {_e(r.status)}">' + "".join(cells) + "</tr>"


def _take_html(t: ReviewTake) -> str:
    """One line per take: name, confidence, stretch, links; its warnings on hover, its error in full."""
    facts = [_confidence_html(t.confidence) if t.confidence is not None else "",
             _stretch_html(t.max_stretch) if t.max_stretch is not None else ""]
    if t.warnings:
        tip = _e("\n".join(t.warnings))
        facts.append(f'<span class="warn" title="{tip}">\u26a0 {len(t.warnings)}</span>')
    links = [f'<a href="{_url(p)}">{name}</a>' for name, p in (("wav", t.output), ("plot", t.plot),
                                                               ("preview", t.preview)) if p]
    parts = [
        f'<span class="take">{_e(t.take)}</span>',
        f'<span class="badge {_e(t.status)}">{_e(t.status)}</span>' if t.status != "ok" else "",
        " · ".join(f for f in facts if f), " ".join(links),
    ]
    error = f'<div class="error">{_e(t.error)}</div>' if t.error else ""
    return "<li>" + " ".join(p for p in parts if p) + error + "</li>"


def _media_html(cue_id: str, plot: str | None, preview: str | None, preload: str) -> str:
    """The best take's sync plot (a link to the full size) above its preview player."""
    parts = []
    if plot:
        parts.append(f'<a href="{_url(plot)}"><img src="{_url(plot)}" alt="sync plot of cue {_e(cue_id)}" '
                     'loading="lazy"></a>')
    if preview:
        parts.append(f'<video controls preload="{preload}" src="{_url(preview)}"></video>')
    return "".join(parts) or '<span class="none">none</span>'


def _confidence_html(c: float | None) -> str:
    if c is None or not math.isfinite(c):
        return '<span class="none">-</span>'
    from .pipeline import confidence_level  # the report's own levels

    level = confidence_level(c)
    return f'<span class="level {level}">{c:.2f}</span>'


def _stretch_html(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return '<span class="none">-</span>'
    return f'<span class="level {"low" if s > STRONG_STRETCH else "high"}">{s:.2f}x</span>'


def _warnings_html(warnings: list[str]) -> str:
    if not warnings:
        return '<span class="none">none</span>'
    return "<ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>"


def _all_warnings(r: ReviewRow) -> list[str]:
    """The cue's warnings, then its best take's (each once): what an editor should look at."""
    best = r.best
    out = list(r.warnings)
    for w in best.warnings if best is not None else ():
        if w not in out:
            out.append(w)
    return out


def _td(content: str, *, sort: str | None = None, cls: str = "") -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' data-sort="{_e(sort)}"' if sort is not None else "")
    return f"<td{attrs}>{content}</td>"


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _url(p: str | None) -> str:
    """A relative link, URL-quoted (file names may hold spaces, '#' or '?'), then HTML-escaped."""
    return _e(quote(Path(p).as_posix(), safe="/:"))


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


CSS = """
:root { --ok: #1e7d34; --partial: #a66b00; --failed: #b3261e; --skipped: #666; --line: #d8d8d8; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       background: #fafafa; }
header { padding: 16px 20px 8px; }
h1 { margin: 0 0 4px; font-size: 20px; }
.summary { color: #444; }
.hint { color: #777; font-size: 12px; }
.notes { color: var(--partial); margin: 6px 0; }
.wrap { padding: 0 20px 24px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
thead th { position: sticky; top: 0; background: #eef1f5; z-index: 1; white-space: nowrap; cursor: pointer;
           user-select: none; }
thead th.nosort { cursor: default; }
thead th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 10px; }
thead th[aria-sort=descending]::after { content: " \\25BC"; font-size: 10px; }
tbody tr:nth-child(even) { background: #f6f7f9; }
tbody tr.failed { background: #fdf1f0; }
td.cue { font-weight: 600; white-space: nowrap; }
td.tc, td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.line { max-width: 22em; }
td.takes ol { margin: 0; padding-left: 1.4em; }
td.takes li { margin-bottom: 4px; }
td.warnings ul { margin: 0; padding-left: 1.1em; color: var(--partial); }
td.warnings { min-width: 11em; max-width: 16em; font-size: 13px; }
td.takes { min-width: 14em; }
.take { font-weight: 600; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; color: #fff;
         background: var(--skipped); }
.badge.ok { background: var(--ok); } .badge.partial { background: var(--partial); }
.badge.failed { background: var(--failed); }
.level.high { color: var(--ok); } .level.medium { color: var(--partial); }
.level.low { color: var(--failed); font-weight: 600; }
.warn { color: var(--partial); cursor: help; } .error { color: var(--failed); font-size: 12px; }
.none { color: #999; }
td.media img, td.media video { width: 240px; display: block; }
td.media img { height: auto; border: 1px solid var(--line); margin-bottom: 4px; }
td.media video { background: #000; }
a { color: #0b57d0; }
"""

JS = """
(function () {
  var table = document.getElementById('cues');
  var heads = table.tHead.rows[0].cells;
  function key(row, i, type) {
    var v = row.cells[i] ? row.cells[i].getAttribute('data-sort') : null;
    if (v === null || v === '') return null;
    return type === 'num' ? parseFloat(v) : v.toLowerCase();
  }
  function sortBy(i, dir) {
    var type = heads[i].getAttribute('data-type');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, i, type), y = key(b, i, type);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   // blanks last, whichever the direction
      if (y === null) return -1;
      var c = type === 'num' ? x - y : x.localeCompare(y, undefined, {numeric: true});
      return dir === 'descending' ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var k = 0; k < heads.length; k++) heads[k].removeAttribute('aria-sort');
    heads[i].setAttribute('aria-sort', dir);
  }
  Array.prototype.forEach.call(heads, function (th, i) {
    if (th.getAttribute('data-type') === 'none') return;
    th.addEventListener('click', function () {
      sortBy(i, th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending');
    });
  });
  // #sort=confidence (or #sort=-confidence, descending): a link that opens the page sorted
  var m = /sort=(-?)([\\w ]+)/.exec(decodeURIComponent(location.hash));
  if (m) {
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].textContent.toLowerCase() === m[2].toLowerCase()) sortBy(i, m[1] ? 'descending' : 'ascending');
    }
  }
  document.body.setAttribute('data-ready', 'yes');
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<div class="summary">{n} cue(s): {summary}; {warned} with warnings.</div>
<div class="hint">Click a column heading to sort; click a plot to enlarge it.</div>
{notes}
</header>
<div class="wrap">
<table id="cues">
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</div>
<script>{js}</script>
</body>
</html>
"""
