"""Media: the dub read back exactly as written, atomic writes, pictures timed by their own stamps."""

from __future__ import annotations

import os
import stat
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from helpers import click_time, click_track, grid_audio, grid_clip, mux_synthetic, reencode, to_rate

from dubalign import media
from dubalign.errors import MediaError
from dubalign.media import iter_frames, probe_picture, read_dub, read_picture_audio, write_audio
from dubalign.units import ANALYSIS_SR

# quantisation step of each subtype, as a tolerance on the round trip
QUANT = {"PCM_16": 2.0**-15, "PCM_24": 2.0**-23, "FLOAT": 1e-7}


def noise(rng: np.random.Generator, n: int, channels: int) -> np.ndarray:
    return (0.5 * rng.uniform(-1, 1, size=(n, channels))).astype(np.float32)


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "channels", "sr"),
    [
        ("wav", "WAV", "PCM_16", 1, 44100),
        ("wav", "WAV", "PCM_24", 2, 48000),
        ("wav", "WAV", "FLOAT", 6, 96000),
        ("flac", "FLAC", "PCM_24", 2, 48000),
        ("flac", "FLAC", "PCM_16", 6, 44100),
        ("aiff", "AIFF", "PCM_16", 2, 96000),
        ("aiff", "AIFF", "PCM_24", 1, 48000),
    ],
)
def test_read_dub_round_trip(tmp_path, rng, ext, fmt, subtype, channels, sr):
    x = noise(rng, sr // 2, channels)  # read_dub refuses dubs shorter than MIN_DUB_S
    path = tmp_path / f"dub.{ext}"
    sf.write(str(path), x, sr, subtype=subtype, format=fmt)
    dub = read_dub(path)
    assert dub.sr == sr
    assert dub.subtype == subtype
    assert dub.n_channels == channels
    assert dub.samples.shape == (sr // 2, channels)
    assert dub.samples.dtype == np.float32
    np.testing.assert_allclose(dub.samples, x, atol=QUANT[subtype])
    assert dub.duration == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("subtype", "channels", "sr"), [("PCM_16", 1, 44100), ("PCM_24", 2, 48000), ("FLOAT", 6, 96000)]
)
def test_write_audio_round_trip(tmp_path, rng, subtype, channels, sr):
    x = noise(rng, 4800, channels)
    path = tmp_path / "out.wav"
    write_audio(path, x, sr, subtype=subtype)
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", subtype, channels, sr)
    np.testing.assert_allclose(sf.read(str(path), dtype="float32", always_2d=True)[0], x, atol=QUANT[subtype])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]  # no temp file left


def test_write_audio_clips_pcm_but_not_float(tmp_path):
    x = np.array([[1.5], [-2.0], [0.5]], np.float32)
    write_audio(tmp_path / "pcm.wav", x, 48000, subtype="PCM_24")
    write_audio(tmp_path / "flt.wav", x, 48000, subtype="FLOAT")
    pcm, _ = sf.read(str(tmp_path / "pcm.wav"), dtype="float32")
    flt, _ = sf.read(str(tmp_path / "flt.wav"), dtype="float32")
    np.testing.assert_allclose(pcm, [1.0, -1.0, 0.5], atol=2.0**-22)
    np.testing.assert_allclose(flt, [1.5, -2.0, 0.5])


def test_write_audio_is_atomic(tmp_path, monkeypatch, rng):
    out = tmp_path / "out.wav"
    out.write_bytes(b"previous take")

    def failing_write(file, data, samplerate, **kwargs):
        Path(file).write_bytes(b"half a file")  # the temp file exists when the failure comes
        raise OSError("disk full")

    monkeypatch.setattr(media.sf, "write", failing_write)
    with pytest.raises(MediaError, match="disk full; nothing was written"):
        write_audio(out, noise(rng, 100, 2), 48000, subtype="PCM_24")
    assert out.read_bytes() == b"previous take"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]  # the temp file is gone

    fresh = tmp_path / "fresh.wav"
    with pytest.raises(MediaError):
        write_audio(fresh, noise(rng, 100, 2), 48000, subtype="PCM_24")
    assert not fresh.exists()


def test_write_audio_respects_umask(tmp_path, rng):
    old = os.umask(0o022)
    try:
        write_audio(tmp_path / "out.wav", noise(rng, 100, 1), 48000, subtype="PCM_16")
        (tmp_path / "plain.wav").write_bytes(b"")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "out.wav").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.wav").stat().st_mode) == 0o644


def _text_file(path: Path) -> Path:
    path.write_text("this is not audio\n" * 50)
    return path


def _empty_wav(path: Path) -> Path:
    sf.write(str(path), np.zeros((0, 2), np.float32), 48000, subtype="PCM_24")
    return path


def _silent_wav(path: Path) -> Path:
    sf.write(str(path), np.zeros((48000, 2), np.float32), 48000, subtype="PCM_24")
    return path


def _ogg(path: Path) -> Path:
    sf.write(str(path), 0.1 * np.ones((4800, 1), np.float32), 48000, format="OGG", subtype="VORBIS")
    return path


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d / "missing.wav", "not found"),
        (lambda d: d, "not a file"),
        (lambda d: _text_file(d / "text.wav"), "not a WAV"),
        (lambda d: _text_file(d / "text.mp3"), "not a WAV"),
        (lambda d: _empty_wav(d / "empty.wav"), "no audio samples"),
        (lambda d: _silent_wav(d / "silent.wav"), "silent"),
        (lambda d: _ogg(d / "dub.ogg"), "unsupported dub format"),
    ],
    ids=["missing", "directory", "text-as-wav", "text-as-mp3", "empty", "silent", "ogg"],
)
def test_read_dub_errors(tmp_path, make, match):
    with pytest.raises(MediaError, match=match):
        read_dub(make(tmp_path))


# ---- pictures --------------------------------------------------------------------------------

N_GRID_FRAMES = 75  # GRID clips: 3 s at 25 fps


def pyav_times(path: Path) -> np.ndarray:
    """Frame times straight from PyAV, relative to the first frame: the reference for iter_frames."""
    with av.open(str(path)) as c:
        t = np.array([f.time for f in c.decode(c.streams.video[0])])
    return t - t[0]


@pytest.mark.parametrize(
    ("rate", "ext"),
    [(Fraction(24000, 1001), "mp4"), (Fraction(30000, 1001), "mov"), (Fraction(24), "mkv")],
    ids=["23.976-mp4", "29.97-mov", "24-mkv"],
)
def test_picture_frame_times_follow_the_file(tmp_path, rate, ext):
    path = reencode(grid_clip(), tmp_path / f"pic.{ext}", rate)
    info = probe_picture(path)
    assert info.fps == pytest.approx(float(rate), rel=1e-4)
    assert (info.width, info.height) == (360, 288)
    assert not info.has_audio
    assert info.duration == pytest.approx(N_GRID_FRAMES / rate, abs=0.5 / float(rate))

    frames = list(iter_frames(path))
    times = np.array([t for t, _ in frames])
    assert len(frames) == N_GRID_FRAMES
    np.testing.assert_allclose(times, pyav_times(path), atol=1e-9)
    # matroska stores milliseconds: the stamps are i / rate to within 1 ms
    np.testing.assert_allclose(times, np.arange(N_GRID_FRAMES) / float(rate), atol=1e-3)
    rgb = frames[0][1]
    assert rgb.shape == (288, 360, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous


def test_iter_frames_region_and_scaling():
    frames = list(iter_frames(grid_clip(), start=1.0, end=2.0, max_dim=180))
    times = np.array([t for t, _ in frames])
    np.testing.assert_allclose(times, 1.0 + np.arange(25) / 25, atol=1e-9)
    assert frames[0][1].shape == (144, 180, 3)


def test_grid_picture_probe():
    info = probe_picture(grid_clip())
    assert (info.fps, info.width, info.height, info.has_audio) == (25.0, 360, 288, True)
    assert info.duration == pytest.approx(3.0, abs=0.02)


def test_picture_without_video_is_refused(tmp_path):
    path = mux_synthetic(tmp_path / "audio_only.mka", seconds=1.0, audio=click_track(1.0, 0.5, 48000), video=False)
    with pytest.raises(MediaError, match="no video stream"):
        probe_picture(path)
    with pytest.raises(MediaError, match="no video stream"):
        list(iter_frames(path))


@pytest.mark.parametrize(
    "make",
    [lambda d: d / "missing.mov", lambda d: d, lambda d: _text_file(d / "text.mov")],
    ids=["missing", "directory", "text-as-mov"],
)
def test_unreadable_picture_is_refused(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(MediaError):
        probe_picture(path)
    with pytest.raises(MediaError):
        list(iter_frames(path))


def test_picture_audio_absent_gives_none(tmp_path):
    path = reencode(grid_clip(), tmp_path / "mute.mp4", Fraction(25))
    assert read_picture_audio(path) is None


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
@pytest.mark.parametrize("audio_start", [0.0, 0.2])
def test_picture_audio_is_on_picture_time(tmp_path, ext, audio_start):
    click_at = 1.25
    path = mux_synthetic(
        tmp_path / f"pic.{ext}", seconds=2.0, audio=click_track(2.0, click_at, 48000), sr=48000,
        audio_start=audio_start,
    )
    y = read_picture_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert click_time(y, ANALYSIS_SR) == pytest.approx(click_at + audio_start, abs=0.002)

    part = read_picture_audio(path, start=1.0, end=1.5)
    assert len(part) == ANALYSIS_SR // 2
    assert click_time(part, ANALYSIS_SR) == pytest.approx(click_at + audio_start - 1.0, abs=0.002)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_picture_audio_when_video_starts_late(tmp_path, ext):
    click_at = 1.25  # s in the file
    path = mux_synthetic(
        tmp_path / f"pic.{ext}", seconds=2.0, audio=click_track(2.0, click_at, 48000), sr=48000, video_start=0.5,
    )
    with av.open(str(path)) as c:
        video_origin = next(f.time for f in c.decode(c.streams.video[0]))
    assert video_origin >= 0.4  # the file really starts its video late
    y = read_picture_audio(path)
    assert click_time(y, ANALYSIS_SR) == pytest.approx(click_at - video_origin, abs=0.002)


def test_grid_picture_audio_matches_its_track():
    y = read_picture_audio(grid_clip())
    ref, sr = grid_audio()
    ref = to_rate(ref, sr, ANALYSIS_SR)
    n = min(len(y), len(ref))
    assert abs(len(y) - len(ref)) <= 1
    assert np.corrcoef(y[:n], ref[:n])[0, 1] > 0.999


def test_read_dub_warns_about_inverted_channels_and_cut_short_copies(tmp_path, rng):
    x = noise(rng, 48000, 1)
    path = tmp_path / "anti.wav"
    sf.write(str(path), np.concatenate([x, -x, 0.5 * x], axis=1), 48000, subtype="PCM_24")
    warned = read_dub(path).warnings
    assert len(warned) == 2  # channels 1 and 3 agree
    assert "channels 1 and 2 are phase-inverted" in warned[0] and "channels 2 and 3" in warned[1]
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy that stopped half way
    dub = read_dub(cut)
    assert dub.duration == pytest.approx(0.5, abs=0.01)
    assert any("ends before its header says" in w for w in dub.warnings)
    assert not any("ends before" in w for w in read_dub(path).warnings)
