"""Terminal concerns of the command-line tools (never used by the library itself)."""

from __future__ import annotations

import os
import sys

import click

from .pipeline import AlignConfig


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


def one_line(message: str) -> str:
    """``message`` as a single printable line: control characters (a newline or a terminal escape in a
    file name, binary bytes in a library's message) are shown escaped, never sent to the terminal."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message.strip())


def fail(message: str, code: int = 1):
    """Print ``dubalign: error: MESSAGE`` on stderr and exit with ``code`` (never returns)."""
    click.echo(f"dubalign: error: {one_line(message)}", err=True)
    sys.exit(code)


# click >= 8.2 raises this for a group called without arguments; older versions print the help themselves
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OneLineErrors(click.Group):
    """A click group whose every error is one line, ``dubalign: error: ...``, with a non-zero exit.

    click prints usage errors in three lines ("Usage: ...", "Try ...", "Error: ..."): here they
    become one (exit 2, as click's). ``--help``, ``--version`` and the help shown for a bare
    ``dubalign`` are unchanged. An exception no command expected (a bug) is one line too, exit 1;
    set DUBALIGN_DEBUG=1 to see its traceback.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NO_ARGS_IS_HELP as e:  # a bare `dubalign`: the help, as click shows it
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            fail(_sentence(e.format_message()) + where, e.exit_code)
        except click.ClickException as e:
            fail(_sentence(e.format_message()), e.exit_code)
        except click.Abort:  # Ctrl-C that no command caught
            fail("interrupted", 130)
        except MemoryError:
            fail("out of memory: close other programs or give dubalign shorter files")
        except OSError as e:  # the system refused something no command expected to fail
            where = f" ({e.filename})" if e.filename else ""
            fail(f"{e.strerror or e}{where}")
        except Exception as e:
            if os.environ.get("DUBALIGN_DEBUG"):
                raise
            text = (str(e).strip().splitlines() or [""])[0]
            fail(f"unexpected {type(e).__name__}: {text} (a bug in dubalign: please report it with the command "
                 "line; DUBALIGN_DEBUG=1 shows the traceback)")
        sys.exit(rv if isinstance(rv, int) else 0)  # an int: the exit code of --help or --version


def _sentence(message: str) -> str:
    """click's "Invalid value for '--guide': ... ." in the house style: lower case, no final stop."""
    message = message.strip().rstrip(".")
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
    return message


def alignment_options(command):
    """The options `align` and `batch` share: they become an AlignConfig."""
    for option in reversed([
        click.option("--guide", type=click.Choice(["auto", "always", "off"]), default="auto", show_default=True,
                     help="Use the picture's own audio as a guide when it has a track and is in sync with its "
                          "lips ('always': even when it seems not; 'off': lips only)."),
        click.option("--max-shift", type=float, default=1.5, show_default=True,
                     help="Seconds the dub's start may move against the picture's start."),
        click.option("--model", default="shipped", show_default=True, metavar="shipped|PATH",
                     help="Lip model: the shipped encoder, or a checkpoint written by scripts/train.py."),
        click.option("--renderer", type=click.Choice(["auto", "rubberband", "vocoder"]), default="auto",
                     show_default=True, help="Time-stretcher used to render the dub through the time map."),
        click.option("--tightness", type=float, default=1.0, show_default=True,
                     help="How closely the dub follows the lips moment by moment (1) against keeping the "
                          "take's own timing: 0.5 makes every speed change half as large, 0 slides the whole "
                          "take unstretched to its best place."),
        click.option("--min-stretch", type=float, default=AlignConfig.min_stretch, show_default="0.67",
                     help="Smallest stretch inside words (picture time per dub time): the fastest the dub "
                          "may be played."),
        click.option("--max-stretch", type=float, default=AlignConfig.max_stretch, show_default=True,
                     help="Largest stretch inside words: the slowest the dub may be played."),
    ]):
        command = option(command)
    return command
