"""The ``dubalign align`` command: a result on success, one line on stderr and no file on failure."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from helpers import (
    DUB_SR,
    black_picture,
    click_track,
    grid_analysis,
    grid_clip,
    mux_synthetic,
    shifted_dub,
    write_dub,
)

from dubalign import align as align_module
from dubalign.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dub_path(tmp_path_factory) -> Path:
    return write_dub(tmp_path_factory.mktemp("cli") / "dub.wav", shifted_dub(0.3))


def run(*args: str):
    return CliRunner().invoke(main, ["align", *map(str, args)])


def assert_one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dubalign: error: ")
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.slow
def test_align_writes_output_and_report(tmp_path, dub_path):
    out, report = tmp_path / "synced.wav", tmp_path / "report.json"
    result = run(grid_clip(), dub_path, "-o", out, "--report", report)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"wrote {out}")
    info = sf.info(str(out))
    assert (info.subtype, info.channels, info.samplerate) == ("PCM_24", 2, DUB_SR)
    assert info.frames == round(3.0 * DUB_SR)
    rep = json.loads(report.read_text())
    assert rep["output"] == str(out) and rep["dub"] == str(dub_path)
    assert set(rep["time_map"]) == {"dub_t", "pic_t"}

    # a second run must be told it may replace them
    again = run(grid_clip(), dub_path, "-o", out, "--report", report, "--overwrite", "--quiet",
                "--guide", "off")
    assert again.exit_code == 0, again.output
    assert again.stderr == ""


def _text(path: Path) -> Path:
    path.write_text("not audio at all\n" * 20)
    return path


def _silent(path: Path) -> Path:
    sf.write(str(path), np.zeros((DUB_SR, 2), np.float32), DUB_SR, subtype="PCM_24")
    return path


def _not_a_model(path: Path) -> Path:
    """A file with a matching checksum beside it that is no checkpoint."""
    path.write_bytes(b"not a checkpoint")
    Path(f"{path}.sha256").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    return path


def _audio_only(path: Path) -> Path:
    return mux_synthetic(path, seconds=1.0, audio=click_track(1.0, 0.5, 48000), video=False)


# (picture, dub, extra args, expected words in the message); "@dub" is the good dub, "@grid" the clip
ERRORS = {
    "missing-picture": (lambda d: d / "nope.mov", "@dub", [], "not found"),
    "missing-dub": ("@grid", lambda d: d / "nope.wav", [], "not found"),
    "picture-without-video": (lambda d: _audio_only(d / "sound.mka"), "@dub", [], "no video stream"),
    "dub-not-audio": ("@grid", lambda d: _text(d / "text.wav"), [], "not a WAV"),
    "unsupported-format": ("@grid", lambda d: _text(d / "dub.mp3"), [], "not a WAV"),
    "silent-dub": ("@grid", lambda d: _silent(d / "silent.wav"), [], "silent"),
    "no-face": (lambda d: black_picture(d / "black.mkv", seconds=0.4), "@dub", [], "no face"),
    "output-is-input": ("@grid", "@dub", ["-o", "@dub", "--overwrite"], "overwrite an input"),
    "output-folder-missing": ("@grid", "@dub", ["-o", "@tmp/missing/out.wav"], "does not exist"),
    "bad-max-shift": ("@grid", "@dub", ["--max-shift", "-2"], "max-shift"),
    "missing-model": ("@grid", "@dub", ["--model", "@tmp/nope.pt"], "no checkpoint"),
    "not-a-model": ("@grid", "@dub", ["--model", lambda d: _not_a_model(d / "m.pt")], "cannot load the lip-sync model"),
}


def _resolve(spec, tmp_path: Path, dub: Path) -> Path | str:
    if callable(spec):
        return spec(tmp_path)
    return {"@dub": dub, "@grid": grid_clip()}.get(spec, str(spec).replace("@tmp", str(tmp_path)))


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line_and_write_nothing(case, tmp_path, dub_path):
    picture, dub, extra, words = ERRORS[case]
    picture, dub = _resolve(picture, tmp_path, dub_path), _resolve(dub, tmp_path, dub_path)
    extra = [_resolve(a, tmp_path, dub_path) for a in extra]
    out = tmp_path / "out.wav"
    args = [picture, dub, *extra] if "-o" in extra else [picture, dub, "-o", out, *extra]
    before = sorted(p.name for p in tmp_path.iterdir())
    dub_bytes = Path(dub_path).read_bytes()
    result = run(*args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    line = assert_one_line_error(result.stderr)
    assert words in line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp files either
    assert Path(dub_path).read_bytes() == dub_bytes


def test_dub_much_longer_than_picture(tmp_path, monkeypatch):
    analysis = grid_analysis()  # the cached analysis: the dub is refused after it, MediaPipe need not run again
    monkeypatch.setattr(align_module, "analyze_picture", lambda *a, **k: analysis)
    long_dub = write_dub(tmp_path / "long.wav", np.tile(shifted_dub(0.0), (8, 1)))
    out = tmp_path / "out.wav"
    result = run(grid_clip(), long_dub, "-o", out)
    assert result.exit_code != 0
    assert "much longer than the picture" in assert_one_line_error(result.stderr)
    assert not out.exists()


@pytest.mark.parametrize("which", ["output", "report"])
def test_existing_output_needs_overwrite(tmp_path, dub_path, which):
    out, report = tmp_path / "out.wav", tmp_path / "r.json"
    (out if which == "output" else report).write_bytes(b"keep me")
    result = run(grid_clip(), dub_path, "-o", out, "--report", report)
    assert result.exit_code != 0
    assert "--overwrite" in assert_one_line_error(result.stderr)
    assert (out if which == "output" else report).read_bytes() == b"keep me"
    assert not (report if which == "output" else out).exists()


def test_unknown_guide_is_a_usage_error(tmp_path, dub_path):
    result = run(grid_clip(), dub_path, "-o", tmp_path / "out.wav", "--guide", "maybe")
    assert result.exit_code == 2
    assert not (tmp_path / "out.wav").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dubalign.cli", "align", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_process_exit_code_and_stderr(tmp_path, dub_path):
    proc = _cli(tmp_path / "nope.mov", dub_path, "-o", tmp_path / "out.wav")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "not found" in assert_one_line_error(proc.stderr)


@pytest.mark.slow
def test_process_stderr_is_one_line_after_face_tracking(tmp_path, dub_path):
    picture = black_picture(tmp_path / "black.mkv", seconds=0.4)
    proc = _cli(picture, dub_path, "-o", tmp_path / "out.wav")
    assert proc.returncode == 1
    assert "no face" in assert_one_line_error(proc.stderr)
