"""The sync plot: what an editor looks at instead of reading the report.

Three panels on one picture-time axis (seconds, or the picture's timecode):

    costs       the fused sync costs, dub time against picture time, with the solver's path
    confidence  how sure the alignment is, per second of the dub
    stretch     how much the speech is slowed down or sped up

Spans without a face, seconds of low confidence and speech stretched to a limit are marked where
they happen; the report's warnings are listed underneath.

:func:`draw_check_plot` draws ``dubalign check``'s result: the offset per window over time against
the BT.1359 windows, with the drift line.

matplotlib is imported inside :func:`sync_figure` and :func:`draw_check_plot` (``import dubalign``
stays fast), through its object interface and the Agg canvas: no pyplot state, no display, safe in
worker processes.
Writes straight to the path given: the caller makes it atomic (:func:`dubalign.files.atomic_outputs`).
"""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING

import numpy as np

from .errors import ParameterError
from .units import PATH_RATE, frames_to_seconds

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .check import SyncCheck
    from .path import WarpPath
    from .pipeline import AlignmentResult
    from .sync import SyncFeatures
    from .timecode import FrameRate

PLOT_SIZE = (10.0, 7.5)  # inches; at PLOT_DPI the PNG is 1000 x 750 px, a laptop screen's width
PLOT_DPI = 100
MAX_IMAGE_CELLS = 600  # the cost image is pooled to at most this many cells on each axis
# Costs are shown as exp(-(cost - row's best) / AGREEMENT_SCALE): costs are negative log
# probabilities summed over the sources, and at 3 both a peaky guide and smooth lips stay readable.
AGREEMENT_SCALE = 3.0
MIN_FACELESS_S = 0.1  # shorter spans without a face are not marked (the last frame's edge is one)
SPEECH_ACTIVITY = 0.5  # dub frames at or above this speech activity (outside pauses) are speech
STRETCH_VIEW = (0.4, 2.2)  # stretch axis range: pauses may go far beyond, speech stays inside
EXTREME_MARGIN = 0.03  # a speech stretch within 3 % of a limit is marked (pipeline.EXTREME_STRETCH_MARGIN)
MAX_WARNING_LINES = 4  # warnings listed under the panels; more are counted
FORMATS = ("png", "svg", "pdf")
CHECK_PLOT_SIZE = (9.0, 3.6)  # inches, at CHECK_PLOT_DPI: a strip as wide as an editor's timeline
CHECK_PLOT_DPI = 110
CHECK_TITLE_CHARS = 120  # the check's summary line wraps at this width in the plot's title


def plot_alignment(
    path: str | os.PathLike,
    features: SyncFeatures,
    warp: WarpPath,
    result: AlignmentResult,
    *,
    rate: FrameRate | None = None,
    origin_s: float = 0.0,
    stretch_limits: tuple[float, float] | None = None,
    title: str | None = None,
    format: str = "png",  # noqa: A002 (matplotlib's name for it)
) -> None:
    """Write the sync plot (see :func:`sync_figure`) to ``path``: PNG of PLOT_SIZE x PLOT_DPI.

    format : "png", "svg" or "pdf" (not taken from ``path``, which may be a temporary name)

    Writes non-atomically: wrap the call in :func:`dubalign.files.atomic_outputs`.
    """
    if format not in FORMATS:
        raise ParameterError(f"plot format must be one of {', '.join(FORMATS)}, not {format!r}")
    fig = sync_figure(features, warp, result, rate=rate, origin_s=origin_s, stretch_limits=stretch_limits,
                      title=title)
    fig.savefig(path, format=format, dpi=PLOT_DPI)


def sync_figure(
    features: SyncFeatures,
    warp: WarpPath,
    result: AlignmentResult,
    *,
    rate: FrameRate | None = None,
    origin_s: float = 0.0,
    stretch_limits: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """The sync cost matrix with the path, the confidence and the stretch over picture time.

    features : the sync features the path was solved on (hook stage ``"sync_features"``, or
        ``Placement.features`` with the guide's final weight)
    warp : the solver's path (hook stage ``"path"``): rows dub frames, columns picture frames at
        PATH_RATE, column j = picture time ``j / PATH_RATE - features.pad``
    result : the alignment (confidence per dub second, time map, warnings)
    rate, origin_s : with a frame rate, the axis shows timecode, picture time 0 being ``origin_s``
        seconds since midnight (a batch region's start); without, seconds from ``origin_s``
    stretch_limits : the (min, max) stretch the alignment allowed; drawn, and speech at a limit marked

    Returns a matplotlib Figure on an Agg canvas (axes: costs, confidence, stretch).
    """
    if len(warp) == 0 or np.max(warp.dub_frames) >= features.n_dub or np.max(warp.pic_frames) >= features.n_pic:
        raise ParameterError("the path does not belong to these sync features (it leaves their grid)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    duration = len(result.audio) / result.sr  # the picture (region) the dub was placed on
    fig = Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 1, height_ratios=(3.0, 1.0, 1.3), hspace=0.12,
                            left=0.08, right=0.98, top=0.93, bottom=0.1 + 0.025 * _n_warning_lines(result))
    ax_cost = fig.add_subplot(grid[0])
    ax_conf = fig.add_subplot(grid[1], sharex=ax_cost)
    ax_str = fig.add_subplot(grid[2], sharex=ax_cost)

    _draw_costs(ax_cost, features, warp, origin_s)
    _draw_confidence(ax_conf, result, origin_s)
    _draw_stretch(ax_str, features, result, origin_s, stretch_limits)
    faceless = _faceless_spans(features, duration)
    for ax in (ax_cost, ax_conf, ax_str):
        for k, (start, end) in enumerate(faceless):
            ax.axvspan(origin_s + start, origin_s + end, color="0.5", alpha=0.25, hatch="//", lw=0,
                       label="no face" if k == 0 and ax is ax_cost else None)
        for edge in (0.0, duration):
            ax.axvline(origin_s + edge, color="0.3", lw=0.8, ls=":")
        if ax is not ax_cost:  # no grid over the image
            ax.grid(alpha=0.25)
    for ax in (ax_cost, ax_conf):
        ax.tick_params(labelbottom=False)
    ax_cost.legend(loc="upper left", fontsize=8, framealpha=0.85)
    ax_cost.set_xlim(origin_s - features.pad, origin_s + duration + features.pad)

    if rate is not None:
        ax_str.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _timecode_label(x, rate)))
        ax_str.set_xlabel(f"picture timecode ({rate} fps)")
    else:
        ax_str.set_xlabel("picture time (s)")
    fig.suptitle(title or _default_title(result), fontsize=11)
    _list_warnings(fig, result)
    return fig


def draw_check_plot(result: SyncCheck, path: str | os.PathLike, *, fmt: str = "png", title: str = "") -> None:
    """Write ``dubalign check``'s plot to ``path``: the offset per window (dots sized by confidence)
    over the BT.1359 windows, with the drift line.

    fmt : "png", "svg" or "pdf" (not taken from ``path``, which may be a temporary name)

    Writes non-atomically: wrap the call in :func:`dubalign.files.atomic_outputs`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .check import ACCEPTABILITY_S, DETECTABILITY_S, MIN_CONFIDENCE  # the verdict's own windows

    fig = Figure(figsize=CHECK_PLOT_SIZE, dpi=CHECK_PLOT_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ms = 1000.0
    ax.axhspan(ACCEPTABILITY_S[0] * ms, ACCEPTABILITY_S[1] * ms, color="#f3d9a0", alpha=0.6, lw=0,
               label="detectable")
    ax.axhspan(DETECTABILITY_S[0] * ms, DETECTABILITY_S[1] * ms, color="#b8e0b0", alpha=0.9, lw=0,
               label="in sync (BT.1359)")
    ax.axhline(0.0, color="0.5", lw=0.6)
    done = [w for w in result.windows if w.offset_s is not None]
    if done:
        t = np.array([w.time_s for w in done])
        y = np.array([w.offset_s for w in done]) * ms
        c = np.array([w.confidence for w in done])
        trusted = c >= MIN_CONFIDENCE
        span = np.array([[w.time_s - w.start_s, w.end_s - w.time_s] for w in done]).T
        ax.errorbar(t, y, xerr=span, fmt="none", ecolor="0.6", lw=0.8)
        ax.scatter(t[trusted], y[trusted], s=20 + 60 * c[trusted], color="#1f4e9c", zorder=3,
                   label="window offset")
        if (~trusted).any():
            ax.scatter(t[~trusted], y[~trusted], s=20 + 60 * c[~trusted], facecolors="none",
                       edgecolors="#1f4e9c", zorder=3, label=f"confidence < {MIN_CONFIDENCE}")
    if result.drift_s_per_min is not None and done:
        line_t = np.array([0.0, result.duration_s])
        line_y = result.drift_start_s + result.drift_s_per_min / 60.0 * line_t
        ax.plot(line_t, line_y * ms, color="#c0392b", lw=1.2,
                label=f"drift {result.drift_s_per_min * ms:+.0f} ms/min")
    lim = max(ACCEPTABILITY_S[1] * ms + 40, *(abs(w.offset_s) * ms + 40 for w in done))
    ax.set_ylim(-lim, lim)
    ax.set_xlim(0, max(result.duration_s, 1e-3))
    ax.set_xlabel("time in the clip (s)")
    ax.set_ylabel("audio offset (ms, > 0: late)")
    ax.set_title(f"{title}\n{textwrap.fill(result.summary(), CHECK_TITLE_CHARS)}".strip(), fontsize=8, loc="left")
    fig.legend(loc="lower center", fontsize=7, ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # room for the legend below the axes
    fig.savefig(path, format=fmt)


def _draw_costs(ax, features: SyncFeatures, warp: WarpPath, origin_s: float) -> None:
    """The fused costs of every dub frame against every picture frame, pooled to a few hundred
    cells a side, as agreement relative to each row's best cell; the path on top."""
    factor = max(1, int(np.ceil(max(features.n_dub, features.n_pic) / MAX_IMAGE_CELLS)))
    pooled = features.pooled(factor)
    costs = pooled.band(np.zeros(pooled.n_dub, np.int64), pooled.n_pic).costs.astype(np.float64)
    best = costs.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # rows without a finite cell stay blank
        agreement = np.exp(-(costs - np.where(np.isfinite(best), best, 0.0)) / AGREEMENT_SCALE)
    step = factor / PATH_RATE
    x0 = origin_s - features.pad - step / 2
    ax.imshow(
        agreement, origin="lower", aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest",
        extent=(x0, x0 + pooled.n_pic * step, -step / 2, pooled.n_dub * step - step / 2),
    )
    pic_t = origin_s + frames_to_seconds(warp.pic_frames, PATH_RATE) - features.pad
    ax.plot(pic_t, frames_to_seconds(warp.dub_frames, PATH_RATE), color="#00c8ff", lw=1.0, alpha=0.8,
            label="chosen path")
    ax.set_ylabel("dub time (s)")
    ax.set_ylim(0, features.n_dub / PATH_RATE)
    ax.set_title("sync costs (bright: dub and picture agree)", fontsize=9, loc="left")


def _draw_confidence(ax, result: AlignmentResult, origin_s: float) -> None:
    """One bar per dub second, placed where that second plays on the picture; silent seconds empty."""
    from .pipeline import HIGH_CONFIDENCE, LOW_CONFIDENCE  # the report's own levels

    conf = np.asarray(result.confidence, dtype=float)
    edges = origin_s + result.timemap.to_picture(np.arange(len(conf) + 1, dtype=float))
    colours = np.where(conf >= HIGH_CONFIDENCE, "#2e9e44", np.where(conf >= LOW_CONFIDENCE, "#e0a000", "#d62728"))
    ok = np.isfinite(conf)
    ax.bar(edges[:-1][ok], conf[ok], width=np.diff(edges)[ok], align="edge", color=colours[ok],
           edgecolor="white", lw=0.5)
    ax.axhline(LOW_CONFIDENCE, color="#d62728", lw=0.8, ls="--")
    low = ok & (conf < LOW_CONFIDENCE)
    if low.any():
        ax.plot((edges[:-1][low] + edges[1:][low]) / 2, np.full(low.sum(), 0.95), "v", color="#d62728", ms=7,
                label="low confidence")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("confidence")


def _draw_stretch(ax, features: SyncFeatures, result: AlignmentResult, origin_s: float,
                  limits: tuple[float, float] | None) -> None:
    """The time map's local stretch: grey everywhere, blue in speech (pauses stretch freely)."""
    tm = result.timemap
    stretch = tm.stretch()
    mid_pic = origin_s + (tm.pic_t[:-1] + tm.pic_t[1:]) / 2
    rows = np.clip(np.floor((tm.dub_t[:-1] + tm.dub_t[1:]) / 2 * PATH_RATE).astype(int), 0, features.n_dub - 1)
    speech = (features.dub_activity[rows] >= SPEECH_ACTIVITY) & ~features.dub_pause[rows]
    ax.plot(mid_pic, stretch, color="0.7", lw=0.8, label="pauses")
    ax.plot(mid_pic, np.where(speech, stretch, np.nan), color="#1f5fbf", lw=1.6, label="speech")
    ax.axhline(1.0, color="0.3", lw=0.8)
    if limits is not None:
        lo, hi = limits
        for limit in limits:
            ax.axhline(limit, color="#d62728", lw=0.8, ls="--")
        extreme = speech & ((stretch <= lo * (1 + EXTREME_MARGIN)) | (stretch >= hi * (1 - EXTREME_MARGIN)))
        if extreme.any():
            ax.plot(mid_pic[extreme], stretch[extreme], ".", color="#d62728", ms=4, label="at the limit")
    ax.set_ylim(*STRETCH_VIEW)
    ax.set_ylabel("stretch (x)")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.85, ncol=3)


def _faceless_spans(features: SyncFeatures, duration: float) -> list[tuple[float, float]]:
    """(start, end) picture seconds, inside the picture, where no face was found."""
    t = frames_to_seconds(np.arange(features.n_pic), PATH_RATE) - features.pad
    lost = ~features.lip_valid.astype(bool) & (t >= 0) & (t < duration)
    edges = np.flatnonzero(np.diff(np.r_[0, lost.astype(np.int8), 0]))
    spans = [(float(t[a]), float(t[b - 1]) + 1 / PATH_RATE) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return [(a, b) for a, b in spans if b - a >= MIN_FACELESS_S]


def _timecode_label(seconds: float, rate: FrameRate) -> str:
    """Timecode of a picture time given in seconds since midnight ('-' before midnight)."""
    from .timecode import seconds_to_timecode

    sign = "-" if seconds < 0 else ""
    return sign + str(seconds_to_timecode(abs(seconds), rate))


def _default_title(result: AlignmentResult) -> str:
    lo, hi = result.stretch_range
    return (f"confidence {result.overall_confidence:.2f}, speech stretched {lo:.2f}x to {hi:.2f}x, "
            f"{len(result.warnings) or 'no'} warning{'' if len(result.warnings) == 1 else 's'}")


def _n_warning_lines(result: AlignmentResult) -> int:
    n = len(result.warnings)
    return min(n, MAX_WARNING_LINES) + (n > MAX_WARNING_LINES)


def _list_warnings(fig, result: AlignmentResult) -> None:
    lines = [f"\u26a0 {w}" for w in result.warnings[:MAX_WARNING_LINES]]
    if len(result.warnings) > MAX_WARNING_LINES:
        lines.append(f"... and {len(result.warnings) - MAX_WARNING_LINES} more (see the report)")
    for k, line in enumerate(lines):
        fig.text(0.08, 0.02 + 0.025 * (len(lines) - 1 - k), line, fontsize=9, color="#b01c1c", va="bottom")
