"""The ``dubalign`` command: a thin click layer over :mod:`dubalign.pipeline`.

Options become a frozen config, the library does the work, errors come back as one line.
"""

from __future__ import annotations

import sys
import time

import click

from . import __version__
from .cli_batch import batch as _batch
from .cli_check import check as _check
from .console import OneLineErrors, alignment_options, fail, mute_native_stderr, one_line
from .cuelist import parse_protect, parse_sync_points
from .errors import DubalignError, ParameterError
from .files import check_outputs
from .pipeline import AlignConfig, Progress, align


class _ProgressBars:
    """Progress bars on stderr for the long stages (a hook for :func:`dubalign.pipeline.align`)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def __call__(self, stage: str, value: object) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if isinstance(value, Progress):
            if self.bar is None:
                self.bar = tqdm(total=value.total or None, desc=value.stage, unit="frame",
                                leave=False, file=sys.stderr)
            self.bar.update(value.done - self.bar.n)
            return
        self.close()
        if stage in ("lips", "path", "render"):
            click.echo(f"  {stage} done", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="dubalign")
def main() -> None:
    """Align re-recorded dialogue (ADR) to the lips on screen."""
    mute_native_stderr()


@main.command("align")
@click.argument("picture", type=click.Path(dir_okay=False))
@click.argument("dub", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the aligned dub (WAV, on the picture's timeline).")
@alignment_options
@click.option("--sync-point", "sync_points", multiple=True, metavar="DUB_S=PIC_S",
              help="The dub's moment DUB_S must play at picture time PIC_S (seconds); repeatable. "
                   "Your fix for a moment placed wrong.")
@click.option("--protect", multiple=True, metavar="START-END",
              help="Play this span of the dub (seconds) at its own speed: moved, never stretched "
                   "(a laugh, a breath, a musical phrase); repeatable.")
@click.option("--adapt-from", type=click.Path(dir_okay=False), default=None, metavar="PICTURE",
              help="Adapt the lip model first to the face and clean, in-sync sound of another picture of "
                   "the same speaker (another shot of the reel): for lines whose own sound is unusable.")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report (summary, time map, confidence, warnings, timings).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG: the sync costs with the chosen path, confidence and stretch over picture time.")
@click.option("--preview", type=click.Path(dir_okay=False), default=None,
              help="Write the picture with the aligned dub as its sound (.mov, .mp4 or .mkv; the video is copied "
                   "when the container can carry its codec, else re-encoded).")
@click.option("--preview-guide", is_flag=True,
              help="Put the picture's own sound on a second audio track of the preview.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT (and REPORT, PLOT, PREVIEW) if they exist.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def align_command(picture, dub, output, guide, max_shift, model, renderer, tightness, min_stretch, max_stretch,
                  sync_points, protect, adapt_from, report, plot, preview, preview_guide, overwrite, quiet):
    """Align DUB (WAV/BWF/FLAC/AIFF) to the lips in PICTURE and write OUTPUT.

    OUTPUT and REPORT are written together or not at all; inputs are never changed. Errors are one
    line on stderr with exit status 1 (2 for usage errors, 130 when interrupted).
    """
    outputs = {"output": output, "report": report, "plot": plot, "preview": preview}
    try:
        config = AlignConfig(
            guide=guide, max_shift=max_shift, model=model, renderer=renderer, tightness=tightness,
            min_stretch=min_stretch, max_stretch=max_stretch,
            sync_points=_seconds_only(parse_sync_points(" ".join(sync_points))),
            protect=parse_protect(" ".join(protect)), adapt_from=adapt_from,
        )
        config.check()
        inputs = {"picture": picture, "dub": dub, **({"--adapt-from picture": adapt_from} if adapt_from else {})}
        check_outputs(outputs, inputs, overwrite=overwrite)
    except DubalignError as e:
        fail(str(e))
    bars = _ProgressBars(enabled=not quiet and sys.stderr.isatty())
    started = time.perf_counter()
    try:
        result = align(picture, dub, output, config, report=report, plot=plot, preview=preview,
                       preview_guide=preview_guide, hook=bars)
    except DubalignError as e:
        bars.close()
        fail(str(e))
    except KeyboardInterrupt:
        bars.close()
        fail("interrupted: nothing was written", code=130)
    bars.close()
    if not quiet:
        total = time.perf_counter() - started
        click.echo(
            f"wrote {_listing([str(p) for p in outputs.values() if p])}: model {result.model.split(' (')[0]}, "
            f"renderer {result.renderer}, confidence {result.overall_confidence:.2f}, stretch "
            f"{result.stretch_range[0]:.2f}x..{result.stretch_range[1]:.2f}x, {total:.1f} s",
            err=True,
        )
        for w in result.warnings:
            click.echo(f"warning: {one_line(w)}", err=True)


def _listing(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _seconds_only(points) -> tuple[tuple[float, float], ...]:
    """Sync points as (dub s, picture s); a single line takes picture seconds, not timecode."""
    if any(not isinstance(pic, float) for _, pic in points):
        raise ParameterError("--sync-point takes picture seconds (DUB_S=PIC_S); timecodes are for batch cue lists")
    return tuple((float(dub), pic) for dub, pic in points)


main.add_command(_batch)
main.add_command(_check)


if __name__ == "__main__":
    main()
