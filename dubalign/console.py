"""Terminal concerns of the command-line tools (never used by the library itself)."""

from __future__ import annotations

import os
import sys

import click


def mute_native_stderr() -> None:
    """Send what C/C++ libraries write to file descriptor 2 (MediaPipe's glog lines) to /dev/null.

    Python's ``sys.stderr`` keeps writing to the real terminal through a duplicate of the original
    descriptor, so our own messages and progress bars still show. Call once, at process start.
    """
    try:
        if sys.stderr.fileno() != 2:  # already redirected (e.g. captured by a test runner)
            return
        sys.stderr.flush()
        original = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(original, "w", buffering=1, encoding=sys.stderr.encoding, errors="replace")
    except (OSError, AttributeError, ValueError):  # no real stderr (embedded, captured): leave it be
        pass


def fail(message: str, code: int = 1):
    """Print ``dubalign: error: MESSAGE`` on stderr and exit with ``code`` (never returns)."""
    click.echo(f"dubalign: error: {message}", err=True)
    sys.exit(code)


def alignment_options(command):
    """The options `align` and `batch` share: they become an AlignConfig."""
    for option in reversed([
        click.option("--guide", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
                     help="Use the picture's own audio as a guide when it has a track ('off': lips only)."),
        click.option("--max-shift", type=float, default=1.5, show_default=True,
                     help="Seconds the dub's start may move against the picture's start."),
        click.option("--model", default="shipped", show_default=True, metavar="shipped|PATH",
                     help="Lip model: the shipped encoder, or a checkpoint written by scripts/train.py."),
        click.option("--renderer", type=click.Choice(["auto", "rubberband", "vocoder"]), default="auto",
                     show_default=True, help="Time-stretcher used to render the dub through the time map."),
    ]):
        command = option(command)
    return command
