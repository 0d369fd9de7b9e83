"""The ``dubalign`` command: a thin click layer over :mod:`dubalign.align`.

Options become a frozen config, the library does the work, errors come back as one line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click

from . import __version__
from .align import AlignConfig, Progress, align
from .cli_batch import batch as _batch
from .console import alignment_options, fail, mute_native_stderr
from .errors import DubalignError
from .media import current_umask


class _ProgressBars:
    """Progress bars on stderr for the long stages (a hook for :func:`dubalign.align.align`)."""

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


@click.group()
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
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report (time map, confidence, warnings, timings).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT (and REPORT) if they exist.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def align_command(picture, dub, output, guide, report, max_shift, model, renderer, overwrite, quiet):
    """Align DUB (WAV/BWF/FLAC/AIFF) to the lips in PICTURE and write OUTPUT."""
    config = AlignConfig(guide=guide, max_shift=max_shift, model=model, renderer=renderer)
    for path in filter(None, (output, report)):
        if Path(path).exists() and not overwrite:
            fail(f"{path} already exists: choose another name or pass --overwrite")
    if report and Path(report).resolve() in (Path(picture).resolve(), Path(dub).resolve()):
        fail(f"the report {report} would overwrite an input")
    bars = _ProgressBars(enabled=not quiet and sys.stderr.isatty())
    started = time.perf_counter()
    try:
        result = align(picture, dub, output, config, hook=bars)
    except DubalignError as e:
        bars.close()
        fail(str(e))
    except KeyboardInterrupt:
        bars.close()
        fail("interrupted: nothing was written", code=130)
    bars.close()
    if report:
        _write_json(report, {"picture": str(picture), "dub": str(dub), "output": str(output),
                             **result.to_json()})
    if not quiet:
        total = time.perf_counter() - started
        click.echo(
            f"wrote {output}: model {result.model.split(' (')[0]}, renderer {result.renderer}, "
            f"confidence {result.overall_confidence:.2f}, stretch {result.stretch_range[0]:.2f}x.."
            f"{result.stretch_range[1]:.2f}x, {total:.1f} s",
            err=True,
        )
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)


main.add_command(_batch)


def _write_json(path: str, obj: dict) -> None:
    out = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent.resolve())
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    main()
