"""``dubalign check``: the sync of a clip already laid, window by window (a thin click layer over
:func:`dubalign.check.check_sync`)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import click
import numpy as np

from .check import ACCEPTABILITY_S, DETECTABILITY_S, HOP_S, MAX_OFFSET_S, MIN_CONFIDENCE, WINDOW_S, SyncCheck
from .console import fail
from .errors import DubalignError, ParameterError
from .files import atomic_outputs, check_outputs, write_json_to

PLOT_SIZE_IN = (9.0, 3.6)  # inches, at PLOT_DPI: a strip as wide as an editor's timeline
PLOT_DPI = 110
PLOT_TITLE_CHARS = 120  # the summary line wraps at this width in the plot's title
PLOT_SUFFIXES = (".png", ".svg", ".pdf")  # formats matplotlib writes by name


@click.command("check")
@click.argument("picture", type=click.Path(dir_okay=False))
@click.option("--audio", type=click.Path(dir_okay=False), default=None,
              help="Check this audio (WAV/BWF/FLAC/AIFF, laid from the picture's start) instead of the "
                   "picture's own track.")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write the result as JSON (offsets in ms, > 0: audio late).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Draw the offset over time against the BT.1359 windows (PNG, SVG or PDF).")
@click.option("--window", type=float, default=WINDOW_S, show_default=True, help="Seconds per window.")
@click.option("--hop", type=float, default=HOP_S, show_default=True, help="Seconds between window starts.")
@click.option("--max-offset", type=float, default=MAX_OFFSET_S, show_default=True,
              help="Largest offset searched either way (s).")
@click.option("--model", default="shipped", show_default=True, metavar="shipped|PATH",
              help="Lip model: the shipped encoder, or a checkpoint written by scripts/train.py.")
@click.option("--overwrite", is_flag=True, help="Replace REPORT and PLOT if they exist.")
@click.option("-q", "--quiet", is_flag=True, help="Print the verdict line only.")
def check(picture, audio, report, plot, window, hop, max_offset, model, overwrite, quiet):
    """Measure the sync of PICTURE's audio (or of --audio) against its lips, over time.

    Prints the offset of every window (> 0: the audio is late) with its confidence, the drift over
    the clip and a verdict against ITU-R BT.1359: in sync (-45..+125 ms), detectable
    (beyond that, within -90..+185 ms), unacceptable, or unknown when nothing could be measured with confidence.
    Exit status 0 whatever the verdict; 1 on an error.
    """
    try:
        result = _run(picture, audio, report, plot, window, hop, max_offset, model, overwrite)
    except DubalignError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted: nothing was written", code=130)
    if not quiet:
        click.echo(format_table(result))
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)
    click.echo(result.summary())


def _run(picture, audio, report, plot, window, hop, max_offset, model, overwrite) -> SyncCheck:
    from . import media
    from .audio import to_analysis
    from .check import check_options, check_sync
    from .pipeline import AlignConfig, analyze_picture, load_lip_model

    inputs = {"picture": picture, **({"audio": audio} if audio else {})}
    outputs = {"report": report, "plot": plot}
    check_outputs(outputs, inputs, overwrite=overwrite)
    check_options(window_s=window, hop_s=hop, max_offset_s=max_offset)
    if plot is not None and Path(plot).suffix.lower() not in PLOT_SUFFIXES:
        raise ParameterError(f"the plot {plot} must be named .png, .svg or .pdf")
    config = AlignConfig(model=model)
    config.check()
    # fail fast, before the slow face tracking
    y16 = None
    if audio is not None:
        media.check_readable(audio, "audio")  # named as the user named it, before read_dub's "dub"
        dub = media.read_dub(audio)
        y16 = to_analysis(dub.samples, dub.sr)
    elif not media.probe_picture(picture).has_audio:
        raise ParameterError(f"{picture} has no audio track: give the audio to check with --audio FILE")
    lip_model = load_lip_model(config.model)
    analysis = analyze_picture(picture, config)
    result = check_sync(analysis, y16, model=lip_model, window_s=window, hop_s=hop, max_offset_s=max_offset)
    written = [p for p in (report, plot) if p is not None]
    if written:
        with atomic_outputs(*written) as temps:
            tmp = dict(zip(written, temps, strict=True))
            if report is not None:
                write_json_to(tmp[report], {"picture": str(picture), "audio": str(audio) if audio else None,
                                            **result.to_json()})
            if plot is not None:
                draw_plot(result, tmp[plot], fmt=Path(plot).suffix.lower()[1:], title=Path(picture).name)
    return result


def format_table(result: SyncCheck) -> str:
    """The windows as a small table for the terminal."""
    lines = ["  window (s)      offset (ms)  confidence  BT.1359"]
    for w in result.windows:
        span = f"{w.start_s:7.1f} - {w.end_s:6.1f}"
        if w.offset_s is None:
            lines.append(f"  {span}      --        --       (too little speech)")
            continue
        verdict = w.to_json()["verdict"]
        note = verdict if w.trusted else "unknown (low confidence)"
        lines.append(f"  {span}  {1000 * w.offset_s:+9.0f}     {w.confidence:8.2f}    {note}")
    if result.drift_s_per_min is not None:
        lines.append(f"  drift: {1000 * result.drift_s_per_min:+.0f} ms per minute")
    return "\n".join(lines)


def draw_plot(result: SyncCheck, path: Path, *, fmt: str = "png", title: str = "") -> None:
    """Offset per window (dots sized by confidence) over the BT.1359 windows, with the drift line."""
    # the object interface on an Agg canvas, as dubalign.plot: no pyplot state, no display
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLOT_SIZE_IN, dpi=PLOT_DPI)
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
    ax.set_title(f"{title}\n{textwrap.fill(result.summary(), PLOT_TITLE_CHARS)}".strip(), fontsize=8, loc="left")
    fig.legend(loc="lower center", fontsize=7, ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # room for the legend below the axes
    fig.savefig(path, format=fmt)
