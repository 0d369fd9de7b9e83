"""Bad input, failed writes, interrupts: every case ends in one line, no traceback, nothing written.

Each case makes its own broken files in tmp_path (small: a few kB), runs ``dubalign align``
in-process and checks: the exit status, exactly one ``dubalign: error:`` line on stderr and nothing
on stdout, no traceback, no Python warning raised, and every file in the folder byte-identical
afterwards, with none added (temporary files included): inputs never change, nothing is left behind.

Cases that need a finished alignment (write failures) share one real alignment of the bundled GRID
clip, computed once per module; the slow picture analysis is the cached one of tests/helpers.py.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from helpers import DUB_SR, black_picture, click_track, grid_analysis, grid_clip, mux_synthetic, shifted_dub, write_dub

import dubalign.pipeline as align_module
from dubalign.cli import main
from dubalign.media import MIN_DUB_S, read_dub

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Work:
    """A folder holding a good picture and a good dub; ``out`` and ``report`` do not exist yet."""

    dir: Path
    picture: Path
    dub: Path

    @property
    def out(self) -> Path:
        return self.dir / "out.wav"

    @property
    def report(self) -> Path:
        return self.dir / "report.json"


@pytest.fixture(scope="module")
def good_dub(tmp_path_factory) -> Path:
    return write_dub(tmp_path_factory.mktemp("bad-input") / "dub.wav", shifted_dub(0.3))


@pytest.fixture
def work(tmp_path, good_dub) -> Work:
    picture = tmp_path / "picture.mkv"
    shutil.copyfile(grid_clip(), picture)
    dub = tmp_path / "dub.wav"
    shutil.copyfile(good_dub, dub)
    return Work(tmp_path, picture, dub)


@pytest.fixture(scope="module")
def grid_result(good_dub):
    """One real alignment of the good dub to the GRID clip (the write-failure cases reuse it)."""
    return align_module.align_dub(grid_analysis(), read_dub(good_dub))


@pytest.fixture
def cached_analysis(monkeypatch):
    """align() gets the cached analysis of the GRID clip instead of tracking its lips again."""
    analysis = grid_analysis()
    monkeypatch.setattr(align_module, "analyze_picture", lambda *a, **k: analysis)


@pytest.fixture
def aligned(monkeypatch, cached_analysis, grid_result):
    """align() skips straight to writing the real result: for cases that fail while writing."""
    monkeypatch.setattr(align_module, "align_dub", lambda *a, **k: grid_result)


# ---- running and checking --------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden and temporary files included)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def invoke(*args):
    """Run the CLI in-process; returns (result, warnings raised while it ran)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(main, [str(a) for a in args])
    return result, caught


def assert_refused(result, caught, code: int = 1) -> str:
    """One ``dubalign: error:`` line on stderr, nothing else anywhere; returns the line."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dubalign: error: "), lines[0]
    assert "Traceback" not in result.output
    assert "unexpected" not in lines[0], lines[0]  # the catch-all for bugs, not a refusal
    assert result.stdout == ""
    assert not caught, [str(w.message) for w in caught]
    return lines[0]


def check_case(work: Work, args: list, code: int, words: tuple[str, ...], folder: Path | None = None) -> str:
    folder = folder or work.dir
    before = snapshot(folder)
    result, caught = invoke("align", *args)
    line = assert_refused(result, caught, code)
    for w in words:
        assert w in line, line
    assert snapshot(folder) == before
    return line


# ---- broken files ----------------------------------------------------------------------------


def _text(path: Path) -> Path:
    path.write_text("Scene 12, take 3: not audio at all\n" * 20)
    return path


def _random_bytes(path: Path, n: int = 4096, seed: int = 0) -> Path:
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def _wav(path: Path, samples: np.ndarray, subtype: str = "PCM_24") -> Path:
    sf.write(str(path), samples, DUB_SR, subtype=subtype)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(src: Path, path: Path, keep: int) -> Path:
    path.write_bytes(src.read_bytes()[:keep])
    return path


def _halved(src: Path, path: Path) -> Path:
    """The first half of ``src``: an MP4 written without faststart loses its index (moov) at the end."""
    return _truncated(src, path, src.stat().st_size // 2)


def _damaged_header(path: Path) -> Path:
    """A RIFF/WAVE file whose fmt chunk is garbage."""
    path.write_bytes(b"RIFF" + (1000).to_bytes(4, "little") + b"WAVEfmt " + bytes(range(200, 256)) * 8)
    return path


def _fake_mp3(path: Path) -> Path:
    """An ID3 tag followed by MPEG frame headers: what a dub delivered as MP3 starts with."""
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(2000))
    return path


def _m4a(path: Path) -> Path:
    return mux_synthetic(path, seconds=0.5, audio=click_track(0.5, 0.25, 48000), video=False)


def _ogg(path: Path) -> Path:
    sf.write(str(path), 0.1 * np.ones((DUB_SR, 1), np.float32), DUB_SR, format="OGG", subtype="VORBIS")
    return path


def _nan(path: Path) -> Path:
    y = shifted_dub(0.0, channels=1)
    y[1000] = np.nan
    return _wav(path, y, subtype="FLOAT")


def _corrupt_picture(src: Path, path: Path) -> Path:
    """The clip with every 97th byte after its header replaced by noise."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(3)
    for i in range(2000, len(data), 97):
        data[i] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
    return path


def _audio_only(path: Path) -> Path:
    return mux_synthetic(path, seconds=0.5, audio=click_track(0.5, 0.25, 48000), video=False)


# (name) -> (make(work) -> argument list, exit status, words the message must hold)
Case = tuple[Callable[[Work], list], int, tuple[str, ...]]
INPUT_CASES: dict[str, Case] = {
    # the dub
    "dub-missing": (lambda w: [w.picture, w.dir / "nope.wav", "-o", w.out], 1, ("not found",)),
    "dub-zero-bytes": (lambda w: [w.picture, _bytes(w.dir / "z.wav", b""), "-o", w.out], 1, ("empty file",)),
    "dub-truncated-header": (lambda w: [w.picture, _truncated(w.dub, w.dir / "cut.wav", 30), "-o", w.out],
                             1, ("damaged WAV", "truncated or corrupt")),
    "dub-damaged-header": (lambda w: [w.picture, _damaged_header(w.dir / "bad.wav"), "-o", w.out],
                           1, ("damaged WAV",)),
    "dub-random-bytes": (lambda w: [w.picture, _random_bytes(w.dir / "noise.wav"), "-o", w.out],
                         1, ("not a WAV/BWF/FLAC/AIFF file",)),
    "dub-text": (lambda w: [w.picture, _text(w.dir / "take.wav"), "-o", w.out], 1, ("holds text",)),
    "dub-mp3": (lambda w: [w.picture, _fake_mp3(w.dir / "take.mp3"), "-o", w.out],
                1, ("MP3", "convert it to WAV")),
    "dub-m4a": (lambda w: [w.picture, _m4a(w.dir / "take.m4a"), "-o", w.out], 1, ("MP4/MOV/M4A",)),
    "dub-ogg": (lambda w: [w.picture, _ogg(w.dir / "take.ogg"), "-o", w.out], 1, ("unsupported dub format OGG",)),
    "dub-one-sample": (lambda w: [w.picture, _wav(w.dir / "one.wav", np.full((1, 2), 0.5, np.float32)),
                                  "-o", w.out], 1, ("too short", "1 sample", f"{MIN_DUB_S:g} s")),
    "dub-too-short": (lambda w: [w.picture, _wav(w.dir / "short.wav", shifted_dub(0.0)[1000:1000 + DUB_SR // 10]),
                                 "-o", w.out], 1, ("too short", "0.100 s")),
    "dub-no-samples": (lambda w: [w.picture, _wav(w.dir / "empty.wav", np.zeros((0, 2), np.float32)),
                                  "-o", w.out], 1, ("no audio samples",)),
    "dub-silent": (lambda w: [w.picture, _wav(w.dir / "silent.wav", np.zeros((DUB_SR, 2), np.float32)),
                              "-o", w.out], 1, ("silent",)),
    "dub-nan": (lambda w: [w.picture, _nan(w.dir / "nan.wav"), "-o", w.out], 1, ("NaN",)),
    "dub-is-the-picture": (lambda w: [w.picture, w.picture, "-o", w.out], 1, ("Matroska", "convert it to WAV")),
    "dub-is-a-folder": (lambda w: [w.picture, w.dir, "-o", w.out], 2, ("is a directory",)),
    # the picture
    "picture-missing": (lambda w: [w.dir / "nope.mov", w.dub, "-o", w.out], 1, ("not found",)),
    "picture-zero-bytes": (lambda w: [_bytes(w.dir / "z.mkv", b""), w.dub, "-o", w.out], 1, ("empty file",)),
    "picture-truncated-header": (lambda w: [_truncated(w.picture, w.dir / "cut.mkv", 200), w.dub, "-o", w.out],
                                 1, ("truncated",)),
    "picture-mp4-without-index": (lambda w: [_halved(mux_synthetic(w.dir / "full.mp4", seconds=1.0),
                                                     w.dir / "cut.mp4"), w.dub, "-o", w.out],
                                  1, ("not a media file FFmpeg can read",)),
    "picture-random-bytes": (lambda w: [_random_bytes(w.dir / "noise.mov", seed=1), w.dub, "-o", w.out],
                             1, ("not a media file FFmpeg can read",)),
    "picture-text": (lambda w: [_text(w.dir / "notes.mov"), w.dub, "-o", w.out], 1, ("holds text",)),
    "picture-without-video": (lambda w: [_audio_only(w.dir / "sound.mka"), w.dub, "-o", w.out],
                              1, ("no video stream",)),
    "picture-is-the-dub": (lambda w: [w.dub, w.dub, "-o", w.out], 1, ("no video stream",)),
    "picture-corrupt-packets": (lambda w: [_corrupt_picture(w.picture, w.dir / "damaged.mkv"), w.dub, "-o", w.out],
                                1, ("damaged data",)),
    "picture-no-face": (lambda w: [black_picture(w.dir / "black.mkv", seconds=0.4), w.dub, "-o", w.out],
                        1, ("no face",)),
    # outputs that collide with each other or an input
    "output-is-report": (lambda w: [w.picture, w.dub, "-o", w.out, "--report", w.out], 1, ("same file",)),
    "output-is-dub": (lambda w: [w.picture, w.dub, "-o", w.dub], 1, ("would overwrite the dub",)),
    "output-is-dub-overwrite": (lambda w: [w.picture, w.dub, "-o", w.dub, "--overwrite"],
                                1, ("would overwrite the dub",)),
    "output-is-dub-by-another-name": (lambda w: [w.picture, w.dub, "-o", w.dir / "." / ".." / w.dir.name / "dub.wav",
                                                 "--overwrite"], 1, ("would overwrite the dub",)),
    "output-links-to-dub": (lambda w: [w.picture, w.dub, "-o", _symlink(w.dir / "link.wav", w.dub), "--overwrite"],
                            1, ("would overwrite the dub",)),
    "report-is-picture": (lambda w: [w.picture, w.dub, "-o", w.out, "--report", w.picture, "--overwrite"],
                          1, ("would overwrite the picture",)),
    # outputs that cannot be written
    "output-folder-missing": (lambda w: [w.picture, w.dub, "-o", w.dir / "missing" / "out.wav"],
                              1, ("does not exist",)),
    "report-folder-missing": (lambda w: [w.picture, w.dub, "-o", w.out, "--report", w.dir / "missing" / "r.json"],
                              1, ("does not exist",)),
    "output-is-a-folder": (lambda w: [w.picture, w.dub, "-o", w.dir], 2, ("is a directory",)),
    "output-not-wav": (lambda w: [w.picture, w.dub, "-o", w.dir / "out.mp3"], 1, ("WAV",)),
    "output-exists": (lambda w: [w.picture, w.dub, "-o", _keep(w.out)], 1, ("--overwrite",)),
    "report-exists": (lambda w: [w.picture, w.dub, "-o", w.out, "--report", _keep(w.report)], 1, ("--overwrite",)),
    # options
    "max-shift-negative": (lambda w: [w.picture, w.dub, "-o", w.out, "--max-shift", "-2"], 1, ("max-shift",)),
    "max-shift-not-a-number": (lambda w: [w.picture, w.dub, "-o", w.out, "--max-shift", "soon"],
                               2, ("--max-shift", "not a valid float")),
    "guide-unknown": (lambda w: [w.picture, w.dub, "-o", w.out, "--guide", "maybe"], 2, ("--guide", "maybe")),
    "unknown-option": (lambda w: [w.picture, w.dub, "-o", w.out, "--fast"], 2, ("no such option",)),
    "output-missing": (lambda w: [w.picture, w.dub], 2, ("missing option", "--output")),
    "model-missing": (lambda w: [w.picture, w.dub, "-o", w.out, "--model", w.dir / "nope.pt"], 1, ("no checkpoint",)),
}


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _keep(path: Path) -> Path:
    path.write_bytes(b"yesterday's take: keep me")
    return path


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_bad_input_is_refused_in_one_line(case, work):
    make, code, words = INPUT_CASES[case]
    check_case(work, make(work), code, words)


# ---- the lip model (--model with the user's own file) ----------------------------------------


def _with_sums(path: Path, data: bytes, sums: bytes | None = None) -> Path:
    """``data`` at ``path`` with ``sums`` (default: its true sha256 line) beside it."""
    path.write_bytes(data)
    if sums is None:
        sums = f"{hashlib.sha256(data).hexdigest()}  {path.name}\n".encode()
    Path(f"{path}.sha256").write_bytes(sums)
    return path


def _torch_file(path: Path, obj) -> Path:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return _with_sums(path, buf.getvalue())


MODEL_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "text": (lambda d: _with_sums(d / "m.pt", b"not a checkpoint"), ("not a PyTorch checkpoint",)),
    "empty-pickle": (lambda d: _with_sums(d / "m.pt", b"."), ("not a PyTorch checkpoint",)),
    "binary": (lambda d: _with_sums(d / "m.pt", bytes(range(256))), ("not a PyTorch checkpoint",)),
    "no-config": (lambda d: _torch_file(d / "m.pt", {"weights": [1.0]}), ("not a dubalign checkpoint",)),
    "unknown-config": (lambda d: _torch_file(d / "m.pt", {"config": {"layers": 99}, "state_dict": {}}),
                       ("configuration",)),
    "no-checksum": (lambda d: _bytes(d / "m.pt", b"x"), ("m.pt.sha256 missing", "sha256sum")),
    "binary-checksum": (lambda d: _with_sums(d / "m.pt", b"x", bytes(range(256))), ("holds no sha256 digest",)),
    "wrong-checksum": (lambda d: _with_sums(d / "m.pt", b"x", b"0" * 64 + b"  m.pt\n"), ("does not match",)),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_bad_model_file_is_refused_in_words(case, work, cached_analysis):
    make, words = MODEL_CASES[case]
    model = make(work.dir)
    line = check_case(work, [work.picture, work.dub, "-o", work.out, "--model", model], 1, words)
    assert "reinstall" not in line  # the user's own file: reinstalling dubalign would not help
    assert "Error" not in line and "[Errno" not in line and "\\x" not in line  # words, not exceptions


# ---- phase-inverted and overlong dubs --------------------------------------------------------


def test_anti_phase_dub_aligns_like_the_plain_one(work, cached_analysis, grid_result):
    """L = -R cancels to silence in a plain mono mix: it must align exactly like L = R, and say why."""
    left = shifted_dub(0.3, channels=1)
    anti = np.concatenate([left, -left], axis=1)
    dub = write_dub(work.dir / "anti.wav", anti)
    result, caught = invoke("align", work.picture, dub, "-o", work.out, "--report", work.report)
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("phase-inverted" in line for line in warned), result.stderr
    assert not any("low confidence" in line for line in warned), result.stderr
    # the analysis sees what it saw in the plain dub (up to level and 24-bit rounding): the same map
    rep = json.loads(work.report.read_text())
    plain = grid_result.to_json()
    for axis in ("dub_t", "pic_t"):
        np.testing.assert_allclose(rep["time_map"][axis], plain["time_map"][axis], atol=1e-3)
    assert rep["overall_confidence"] == pytest.approx(plain["overall_confidence"], abs=1e-3)
    out, _ = sf.read(str(work.out), dtype="float32", always_2d=True)
    assert float(np.dot(out[:, 0], out[:, 1])) < 0  # written as recorded: still inverted


def test_dub_much_longer_than_picture(work, cached_analysis):
    long_dub = write_dub(work.dir / "long.wav", np.tile(shifted_dub(0.0), (8, 1)))
    check_case(work, [work.picture, long_dub, "-o", work.out], 1, ("much longer than the picture",))


def test_dub_too_large_for_memory(work, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(sf, "read", no_memory)  # as a 10-hour, 8-channel float take would
    check_case(work, [work.picture, work.dub, "-o", work.out], 1, ("too large to read",))


# ---- names that try to break the message -----------------------------------------------------


def test_file_name_with_control_characters_stays_one_line(work):
    evil = _text(work.dir / "take\n\x1b[31mred\x07.wav")
    line = check_case(work, [work.picture, evil, "-o", work.out], 1, ("holds text",))
    assert "\x1b" not in line and "\x07" not in line
    assert "\\x1b" in line  # escaped, so the name can still be recognised


# ---- folders that cannot be written ----------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch):
    """``folder`` made read-only. root may write anywhere (chmod does not stop it): there the
    folder is made read-only as the product sees it, through os.access, which it asks first."""
    if not IS_ROOT:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve() == folder.resolve():
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    yield


@pytest.mark.parametrize("which", ["output", "report"])
def test_read_only_folder_is_refused_before_the_work(work, monkeypatch, which):
    locked = work.dir / "locked"
    locked.mkdir()
    out = locked / "out.wav" if which == "output" else work.out
    report = locked / "r.json" if which == "report" else work.report
    # the picture analysis must not even start: the refusal comes before the slow work
    monkeypatch.setattr(align_module, "analyze_picture", _must_not_run)
    with read_only(locked, monkeypatch):
        check_case(work, [work.picture, work.dub, "-o", out, "--report", report], 1, ("read-only",))


def _must_not_run(*args, **kwargs):
    raise AssertionError("the slow work started before the outputs were checked")


# ---- writes that fail half way: the disk is full, a rename fails, Ctrl-C ----------------------


@contextlib.contextmanager
def file_size_limit(n_bytes: int):
    """Writes past ``n_bytes`` fail in the kernel (EFBIG), as on a full disk: a real failed write(2)."""
    resource = pytest.importorskip("resource")
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)


def test_disk_full_while_writing_the_audio(work, aligned):
    before = snapshot(work.dir)
    with file_size_limit(64 * 1024):  # the aligned dub is ~860 kB
        result, caught = invoke("align", work.picture, work.dub, "-o", work.out, "--report", work.report)
    line = assert_refused(result, caught)
    assert "out.wav" in line and "nothing was written" in line
    assert snapshot(work.dir) == before


def test_libsndfile_system_error_becomes_one_line(work, aligned, monkeypatch):
    """The error of the issue: soundfile.LibsndfileError 'System error.' from a full disk."""
    def full_disk(file, *args, **kwargs):
        Path(file).write_bytes(b"RIFF half a file")  # the temp file exists when the failure comes
        raise RuntimeError("System error.")

    monkeypatch.setattr(sf, "write", full_disk)
    check_case(work, [work.picture, work.dub, "-o", work.out, "--report", work.report], 1, ("is it full",))


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "overwrite"])
def test_output_and_report_land_together_or_not_at_all(work, aligned, monkeypatch, existing):
    """The report's rename fails after the audio's succeeded: the audio must go again, and with
    --overwrite the previous output and report must still be there, unchanged."""
    if existing:
        _keep(work.out)
        _keep(work.report)
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == work.report.name:
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    extra = ["--overwrite"] if existing else []
    check_case(work, [work.picture, work.dub, "-o", work.out, "--report", work.report, *extra], 1,
               ("could not write",))


def test_interrupt_during_the_work(work, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(align_module, "analyze_picture", interrupted)
    check_case(work, [work.picture, work.dub, "-o", work.out, "--report", work.report], 130, ("interrupted",))


def test_interrupt_while_writing(work, aligned, monkeypatch):
    def interrupted(file, *args, **kwargs):
        Path(file).write_bytes(b"RIFF half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", interrupted)
    _keep(work.out)
    check_case(work, [work.picture, work.dub, "-o", work.out, "--report", work.report, "--overwrite"], 130,
               ("interrupted", "nothing was written"))


def test_a_bug_is_one_line_too(work, monkeypatch):
    def bug(*args, **kwargs):
        return {}["config"]

    monkeypatch.setattr(align_module, "analyze_picture", bug)
    before = snapshot(work.dir)
    result, caught = invoke("align", work.picture, work.dub, "-o", work.out)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dubalign: error: unexpected KeyError"), result.stderr
    assert "report it" in lines[0] and "Traceback" not in result.output
    assert snapshot(work.dir) == before


# ---- the process as a shell sees it ----------------------------------------------------------


def test_process_stderr_has_no_library_warnings(work):
    """A 1-sample dub used to pass, with librosa's 'n_fft is too large' on stderr: now one line, exit 1."""
    one = _wav(work.dir / "one.wav", np.full((1, 1), 0.5, np.float32))
    before = snapshot(work.dir)
    proc = subprocess.run(
        [sys.executable, "-m", "dubalign.cli", "align", str(work.picture), str(one), "-o", str(work.out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dubalign: error: ") and "too short" in lines[0], proc.stderr
    assert snapshot(work.dir) == before


# ---- batch: cue lists that try to write elsewhere or break the terminal ----------------------


def test_batch_cue_list_with_malicious_paths(tmp_path):
    """Cue ids and take paths that climb out of the folders, or carry terminal escapes: every cue
    fails on its own, nothing is written outside OUTDIR, no escape reaches the terminal."""
    reel, outside = tmp_path / "reel", tmp_path / "outside"
    reel.mkdir()
    outside.mkdir()
    _text(outside / "take.wav")
    cues = reel / "cues.csv"
    cues.write_text(
        "cue,take,picture,character\n"
        "../../outside/escaped,../outside/take.wav,nope.mkv,/etc\n"
        '"ok\n\x1b[2Jclear","../../nowhere/\x1b[31mred.wav",nope.mkv,bob\n'
        f"3,{outside / 'take.wav'},{tmp_path / 'nope.mkv'},../../x\n",
        encoding="utf-8",
    )
    before = snapshot(tmp_path)
    result, _ = invoke("batch", cues, "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert all(c.isprintable() for line in result.output.splitlines() for c in line), result.output
    after = snapshot(tmp_path)
    written = {name for name in after if name not in before}
    assert all(name.startswith("reel/aligned/") for name in written), written
    assert {name: after[name] for name in before} == before  # inputs unchanged


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 8], ids=["zero-bytes", "binary"])
def test_batch_unreadable_cue_list_is_one_line_in_words(tmp_path, content):
    cues = _bytes(tmp_path / "cues.csv", content)
    before = snapshot(tmp_path)
    result, caught = invoke("batch", cues)
    line = assert_refused(result, caught, code=2)
    assert len(line) < 200 and "\\x" not in line, line  # what is wrong, in words: not the bytes
    assert snapshot(tmp_path) == before
