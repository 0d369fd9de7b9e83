"""``dubalign check``: the sync of a clip already laid, window by window (a thin click layer over
:func:`dubalign.check.check_sync`)."""

from __future__ import annotations

from pathlib import Path

import click

from .check import HOP_S, MAX_OFFSET_S, WINDOW_S, SyncCheck
from .console import fail
from .errors import DubalignError, ParameterError
from .files import atomic_outputs_by_path, check_outputs, write_json_to
from .plot import draw_check_plot

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
    with atomic_outputs_by_path(report, plot) as tmp:
        if report is not None:
            write_json_to(tmp[report], {"picture": str(picture), "audio": str(audio) if audio else None,
                                        **result.to_json()})
        if plot is not None:
            draw_check_plot(result, tmp[plot], fmt=Path(plot).suffix.lower()[1:], title=Path(picture).name)
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
