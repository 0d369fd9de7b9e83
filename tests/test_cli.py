"""The ``dubalign`` command: a result on success; every error one line, ``dubalign: error: ...``.

Bad inputs, failed writes and interrupts are tested case by case in test_bad_input.py; this file
checks the command itself: what a success prints and writes, usage errors, help, the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from click.testing import CliRunner
from helpers import DUB_SR, black_picture, grid_clip, shifted_dub, write_dub

from dubalign.cli import main
from dubalign.console import one_line

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
    assert result.stderr.startswith(f"wrote {out} and {report}")
    assert result.stdout == ""
    info = sf.info(str(out))
    assert (info.subtype, info.channels, info.samplerate) == ("PCM_24", 2, DUB_SR)
    assert info.frames == round(3.0 * DUB_SR)
    rep = json.loads(report.read_text())
    assert rep["output"] == str(out) and rep["dub"] == str(dub_path)
    assert set(rep["time_map"]) >= {"dub_t", "pic_t"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "synced.wav"]  # no temp files

    # a second run must be told it may replace them
    again = run(grid_clip(), dub_path, "-o", out, "--report", report, "--overwrite", "--quiet",
                "--guide", "off")
    assert again.exit_code == 0, again.output
    assert again.stderr == ""


# click's usage errors, each in one line with exit status 2 (click prints them in three)
USAGE_ERRORS = {
    "missing-output": (["align", "p.mov", "d.wav"], "missing option '-o' / '--output'"),
    "missing-argument": (["align"], "missing argument 'PICTURE'"),
    "bad-choice": (["align", "p.mov", "d.wav", "-o", "o.wav", "--guide", "maybe"], "invalid value for '--guide'"),
    "bad-number": (["align", "p.mov", "d.wav", "-o", "o.wav", "--max-shift", "x"], "invalid value for '--max-shift'"),
    "unknown-option": (["align", "p.mov", "d.wav", "-o", "o.wav", "--fast"], "no such option '--fast'"),
    "unknown-command": (["synchronise"], "no such command 'synchronise'"),
    "batch-bad-jobs": (["batch", "cues.csv", "--jobs", "0"], "invalid value for '-j' / '--jobs'"),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors_are_one_line(case, tmp_path):
    args, words = USAGE_ERRORS[case]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    line = assert_one_line_error(result.stderr)
    assert words in line
    assert "--help" in line  # where to look next
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["--help"], ["align", "--help"], ["batch", "--help"]])
def test_help_is_unchanged(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    assert "Options:" in result.stdout and "dubalign: error" not in result.output


def test_bare_command_shows_help():
    result = CliRunner().invoke(main, [])
    assert "Usage: " in result.output and "Commands:" in result.output
    assert "dubalign: error" not in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("dubalign, version ")


def test_messages_are_printable_one_liners():
    assert one_line("bad name: take\n\x1b[2J.wav\x00") == "bad name: take\\n\\x1b[2J.wav\\x00"
    assert one_line("  café, 12 µs  ") == "café, 12 µs"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dubalign.cli", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_process_exit_code_and_stderr(tmp_path, dub_path):
    proc = _cli("align", tmp_path / "nope.mov", dub_path, "-o", tmp_path / "out.wav")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "not found" in assert_one_line_error(proc.stderr)
    usage = _cli("align", "--guide", "maybe")
    assert usage.returncode == 2
    assert "invalid value for '--guide'" in assert_one_line_error(usage.stderr)


@pytest.mark.slow
def test_process_stderr_is_one_line_after_face_tracking(tmp_path, dub_path):
    picture = black_picture(tmp_path / "black.mkv", seconds=0.4)
    proc = _cli("align", picture, dub_path, "-o", tmp_path / "out.wav")
    assert proc.returncode == 1
    assert "no face" in assert_one_line_error(proc.stderr)


def test_a_bug_shows_its_traceback_with_dubalign_debug(tmp_path, dub_path, monkeypatch):
    import dubalign.pipeline as align_module

    def bug(*args, **kwargs):
        raise KeyError("config")

    monkeypatch.setattr(align_module, "analyze_picture", bug)
    monkeypatch.setenv("DUBALIGN_DEBUG", "1")
    result = run(grid_clip(), dub_path, "-o", tmp_path / "out.wav")
    assert isinstance(result.exception, KeyError)  # raised on, for the traceback


def test_align_control_options_reach_the_config(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from dubalign import cli

    seen = {}

    def fake_align(picture, dub, output, config, **kwargs):
        seen["config"], seen["kwargs"] = config, kwargs
        raise cli.DubalignError("stop here")

    monkeypatch.setattr(cli, "align", fake_align)
    args = ["align", "pic.mov", "dub.wav", "-o", str(tmp_path / "o.wav"), "--sync-point", "0.5=1.25",
            "--sync-point", "1.5=2.0", "--protect", "0.6-0.9", "--tightness", "0.5", "--min-stretch", "0.8",
            "--max-stretch", "1.2", "--plot", str(tmp_path / "p.png"), "--preview", str(tmp_path / "v.mov"),
            "--preview-guide"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1 and "stop here" in result.output
    c = seen["config"]
    assert c.sync_points == ((0.5, 1.25), (1.5, 2.0)) and c.protect == ((0.6, 0.9),)
    assert (c.tightness, c.min_stretch, c.max_stretch) == (0.5, 0.8, 1.2)
    assert seen["kwargs"]["preview_guide"] is True and str(seen["kwargs"]["plot"]).endswith("p.png")


def test_align_bad_control_is_one_line(tmp_path):
    from click.testing import CliRunner

    from dubalign import cli

    for bad in (["--protect", "0.9-0.6"], ["--sync-point", "1.0"], ["--tightness", "2"], ["--min-stretch", "1.2"],
                ["--sync-point", "0.5=00:00:01:00"]):
        result = CliRunner().invoke(cli.main, ["align", "p.mov", "d.wav", "-o", str(tmp_path / "o.wav"), *bad])
        assert result.exit_code == 1, bad
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("dubalign: error: "), (bad, result.output)
