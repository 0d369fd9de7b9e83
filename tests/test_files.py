"""files.py: outputs land together or not at all, and an overwritten output comes back on failure."""

import os
from pathlib import Path

import pytest

from dubalign import files
from dubalign.errors import MediaError, ParameterError


def _write_both(a: Path, b: Path) -> None:
    with files.atomic_outputs(a, b) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_failed_rename_puts_the_old_outputs_back(tmp_path, monkeypatch, hard_links):
    a, b = tmp_path / "a.wav", tmp_path / "b.json"
    a.write_text("old a")
    b.write_text("old b")
    real = os.replace
    failed = []

    def replace(src, dst):  # the new b.json fails to land, once; putting the old one back works
        if Path(dst) == b and Path(src).read_text() == "new b" and not failed:
            failed.append(src)
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    if not hard_links:
        def no_link(*args):
            raise OSError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    with pytest.raises(MediaError, match="no space left on device; nothing was written"):
        _write_both(a, b)
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.json"]  # no temp or aside left


def test_outputs_land_together(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.json"
    _write_both(a, b)
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    a.write_text("old a")
    _write_both(a, b)  # replacing existing files (--overwrite) leaves no aside behind
    assert a.read_text() == "new a" and sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.json"]


def test_an_error_in_the_block_writes_nothing(tmp_path):
    a = tmp_path / "a.wav"
    with pytest.raises(ZeroDivisionError), files.atomic_output(a) as tmp:
        tmp.write_text("half")
        1 / 0  # noqa: B018
    assert list(tmp_path.iterdir()) == []


def test_collisions_and_folders_are_refused_first(tmp_path):
    with pytest.raises(ParameterError, match="same file"):
        files.check_distinct({"output": tmp_path / "x.wav", "report": tmp_path / "x.wav"})
    with pytest.raises(ParameterError, match="would overwrite the dub"):
        files.check_distinct({"output": tmp_path / "d.wav"}, {"dub": tmp_path / "d.wav"})
    with pytest.raises(ParameterError, match="does not exist"):
        files.check_writable(tmp_path / "missing" / "x.wav")
    with pytest.raises(ParameterError, match="is a folder"):
        files.check_writable(tmp_path)


def test_outputs_by_path_skip_the_ones_not_asked_for(tmp_path):
    wav, plot = tmp_path / "a.wav", str(tmp_path / "p.png")  # keys are the paths as given, str or Path
    with files.atomic_outputs_by_path(wav, None, plot) as tmp:
        assert list(tmp) == [wav, plot] and all(files.TEMP_MARK in t.name for t in tmp.values())
        tmp[wav].write_text("a")
        tmp[plot].write_text("p")
    assert (wav.read_text(), Path(plot).read_text()) == ("a", "p")
    assert not list(tmp_path.glob(f"*{files.TEMP_MARK}*"))
    with pytest.raises(MediaError, match="nothing was written"), files.atomic_outputs_by_path(wav, None) as tmp:
        tmp[wav].write_text("b")
        raise OSError(28, "No space left on device")
    assert wav.read_text() == "a" and not list(tmp_path.glob(f"*{files.TEMP_MARK}*"))
