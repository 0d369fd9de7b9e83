"""Writing files safely: every output dubalign writes goes through here.

An output is written to a temporary file beside it (its name contains :data:`TEMP_MARK`, so a
sweep after a killed process finds it), then renamed over the final name. Several outputs of
one job (the aligned audio and its report, a preview, a plot) land together or not at all.
A failed write (read-only folder, full disk) becomes a :class:`~dubalign.errors.MediaError`
with one line of explanation, and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import MediaError, ParameterError

TEMP_MARK = ".dubalign-tmp"  # every temporary file we create contains this, so a sweep finds it


def current_umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_path(path: str | os.PathLike) -> Path:
    """A new, empty temporary file beside ``path`` with the mode a plain new file would get."""
    out = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=TEMP_MARK, dir=out.parent.resolve())
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the usual mode
    return Path(tmp)


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail now, before any slow work, if ``path`` cannot be written: folder missing, not a
    folder, or not writable; ``path`` itself a folder."""
    out = Path(path)
    folder = out.parent.resolve()
    if out.is_dir():
        raise ParameterError(f"the {what} {path} is a folder: give a file name")
    if not folder.is_dir():
        raise ParameterError(f"the {what} folder {folder} does not exist: create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ParameterError(f"cannot write the {what} in {folder}: the folder is read-only")
    return out


def check_distinct(
    named: dict[str, str | os.PathLike | None], inputs: dict[str, str | os.PathLike] | None = None
) -> None:
    """Refuse outputs that name the same file as each other or as an input.

    named : {what: path} of the outputs (None entries are ignored); inputs : {what: path}.
    """
    seen: dict[Path, str] = {}
    for what, p in (inputs or {}).items():
        seen[Path(p).resolve()] = what
    for what, p in named.items():
        if p is None:
            continue
        key = Path(p).resolve()
        if key in seen:
            other = seen[key]
            if other in (inputs or {}):
                raise ParameterError(f"the {what} {p} would overwrite the {other}: choose another name")
            raise ParameterError(f"the {what} and the {other} are the same file ({p}): give each its own name")
        seen[key] = what


def check_outputs(
    outputs: dict[str, str | os.PathLike | None],
    inputs: dict[str, str | os.PathLike],
    *,
    overwrite: bool = True,
) -> None:
    """Everything that can be known about the outputs before any work: no output names an input
    or another output, every folder exists and is writable, and (``overwrite`` False) no output
    exists yet. None entries are outputs not asked for."""
    check_distinct(outputs, inputs)
    for what, path in outputs.items():
        if path is None:
            continue
        check_writable(path, what)
        if not overwrite and Path(path).exists():
            raise ParameterError(f"{path} already exists: choose another name or pass --overwrite")


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Temporary paths for ``paths``, renamed over them together when the block succeeds.

        with atomic_outputs(out_wav, report_json) as (tmp_wav, tmp_json):
            write_audio_to(tmp_wav); write_json_to(tmp_json)

    If the block raises (including Ctrl-C), every temporary file is removed and no output is
    touched. An ``OSError`` or a codec's ``RuntimeError`` while writing becomes a one-line
    :class:`MediaError`. If a rename fails half way, the outputs already renamed are removed
    again, so either all outputs land or none does.
    """
    finals = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for p in finals:
            temps.append(temp_path(p))
        yield list(temps)
        _land_together(temps, finals)
    except (OSError, RuntimeError) as e:
        target = _failed_target(e, finals)
        raise MediaError(f"could not write {target}: {_reason(e)}; nothing was written") from e
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _land_together(temps: list[Path], finals: list[Path]) -> None:
    """Rename each temp over its final name; if one rename fails, undo the ones done.

    A final that already exists (``--overwrite``) is kept aside first (a hard link, or moved where
    the file system has none), so that undoing puts the old file back rather than leaving none.
    """
    kept: dict[Path, Path] = {}  # final -> the old file kept aside
    moved: set[Path] = set()  # finals whose old file was moved aside (no hard links), not linked
    landed: list[Path] = []
    try:
        for final in finals:
            if len(finals) > 1 and final.is_file():
                aside = temp_path(final)
                aside.unlink()
                try:
                    os.link(final, aside)
                except OSError:  # no hard links on this file system: move it aside instead
                    os.replace(final, aside)
                    moved.add(final)
                kept[final] = aside
        for tmp, final in zip(temps, finals, strict=True):
            os.replace(tmp, final)
            landed.append(final)
    except BaseException:
        for final in finals:
            with contextlib.suppress(OSError):  # put back what can be put back, whatever fails
                if final in kept and (final in landed or final in moved):
                    os.replace(kept.pop(final), final)
                elif final in landed:
                    final.unlink()
        raise
    finally:
        for aside in kept.values():
            aside.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_outputs_by_path(*paths: str | os.PathLike | None) -> Iterator[dict[str | os.PathLike, Path]]:
    """:func:`atomic_outputs` for the outputs asked for, the temporary paths keyed by final path.

        with atomic_outputs_by_path(out_wav, plot) as tmp:  # plot may be None: not asked for
            write_audio_to(tmp[out_wav])
            if plot is not None:
                draw_to(tmp[plot])

    None entries are skipped; the keys are the paths exactly as given.
    """
    given = [p for p in paths if p is not None]
    with atomic_outputs(*given) as temps:
        yield dict(zip(given, temps, strict=True))


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """One output: see :func:`atomic_outputs`."""
    with atomic_outputs(path) as (tmp,):
        yield tmp


def write_json(path: str | os.PathLike, data: Any, *, indent: int = 1) -> None:
    """Write ``data`` as JSON, atomically (numpy values and paths become plain JSON)."""
    with atomic_output(path) as tmp:
        write_json_to(tmp, data, indent=indent)


def write_json_to(path: Path, data: Any, *, indent: int = 1) -> None:
    """Write ``data`` as JSON to ``path`` directly (the caller makes it atomic)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent, default=_json_default)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def sweep_temp_files(folder: str | os.PathLike) -> int:
    """Remove temporary files we left under ``folder`` (a killed process cannot clean up)."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    n = 0
    for p in root.rglob(f"*{TEMP_MARK}*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _failed_target(e: BaseException, finals: list[Path]) -> str:
    name = getattr(e, "filename", None)
    if name:
        for p in finals:
            if Path(name).parent.resolve() == p.parent.resolve():
                return str(p)
    return str(finals[0]) if len(finals) == 1 else ", ".join(str(p) for p in finals)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[0].lower() + e.strerror[1:]
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "System error" in text:  # libsndfile's word for a failed write(2): usually a full disk
        return "the disk refused the write (is it full?)"
    return text
