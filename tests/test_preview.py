"""Previews: the picture's own frames at their own times, the dub's samples exactly, from time 0."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.signal
from helpers import mux_synthetic, shifted_dub

from dubalign.errors import MediaError, ParameterError
from dubalign.files import TEMP_MARK, atomic_outputs
from dubalign.preview import preview_container, write_preview

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "grid_bbaf2n" / "picture.mkv"
SR = 48000
GUIDE_SR = 16000


def on_24_bit_grid(rng: np.random.Generator, n: int, channels: int) -> np.ndarray:
    """Noise whose every sample is a 24-bit value, so a lossless 24-bit track returns it exactly."""
    return (rng.integers(-(2**22), 2**22, size=(n, channels)) / 2**23).astype(np.float32)


def video_frames(path: Path) -> tuple[str, list[float], list[float]]:
    """(codec, frame times in s as stored, mean brightness of each frame)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        codec = v.codec_context.codec.name
        frames = [(float(f.time), float(f.to_ndarray(format="gray").mean())) for f in c.decode(v)]
    return codec, [t for t, _ in frames], [b for _, b in frames]


def audio_tracks(path: Path) -> list[tuple[int, int, float, np.ndarray]]:
    """(rate, channels, start time s, samples [shape=(n, c)] float64) of each audio stream."""
    tracks = []
    with av.open(str(path)) as c:
        for i in range(len(c.streams.audio)):
            c.seek(0)
            s = c.streams.audio[i]
            chunks, start = [], None
            for f in c.decode(s):
                start = float(f.time) if start is None else start
                x = f.to_ndarray()
                chunks.append(x.T if f.format.is_planar else x.reshape(-1, s.channels))
            y = np.concatenate(chunks).astype(np.float64)
            if np.issubdtype(chunks[0].dtype, np.integer):
                y /= 2**31  # 24-bit values in int32's top bits
            tracks.append((s.rate, s.channels, start, y))
    return tracks


def speech(rng: np.random.Generator, seconds: float, sr: int, channels: int) -> np.ndarray:
    """The GRID clip's speech (quantised to 24 bits) over faint noise, [shape=(n, channels)]."""
    y = shifted_dub(0.0, sr=sr, channels=channels)[: int(seconds * sr)]
    y = y + 0.01 * rng.standard_normal(y.shape)
    return (np.round(np.clip(y, -0.99, 0.99) * 2**23) / 2**23).astype(np.float32)


def check_same(y: np.ndarray, x: np.ndarray, exact: bool) -> None:
    """PCM: the very samples; AAC: the same signal, not a sample early or late."""
    if exact:
        np.testing.assert_array_equal(y, x)
        return
    assert len(x) <= len(y) < len(x) + 1024  # a decoder may keep the padding of AAC's last frame
    y = y[: len(x)]
    lag = np.argmax(scipy.signal.correlate(y[:, 0], x[:, 0], mode="full", method="fft")) - (len(x) - 1)
    assert lag == 0
    snr = 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((y - x) ** 2))
    assert snr > 20


@pytest.mark.parametrize(
    ("suffix", "audio_codec", "exact"),
    [(".mov", "pcm_s24le", True), (".mp4", "aac", False), (".mkv", "pcm_s24le", True)],
)
def test_preview_copies_the_picture_and_carries_the_dub(tmp_path, rng, suffix, audio_codec, exact):
    dub = speech(rng, 3.0, SR, 2)
    guide = speech(rng, 3.0, GUIDE_SR, 1)[:, 0]
    out = tmp_path / f"review{suffix}"
    info = write_preview(EXAMPLE, dub, SR, out, guide=guide, guide_sr=GUIDE_SR)

    assert info.video == "copied" and info.reason == ""
    assert (info.video_codec, info.audio_codec, info.tracks) == ("h264", audio_codec, 2)
    src_codec, src_times, _ = video_frames(EXAMPLE)
    codec, times, _ = video_frames(out)
    assert codec == src_codec == "h264"
    assert len(times) == len(src_times) == 75
    np.testing.assert_allclose(times, src_times, atol=1e-6)  # the example's first frame is at 0

    (rate, ch, start, y), (g_rate, g_ch, g_start, g) = audio_tracks(out)
    assert (rate, ch, start) == (SR, 2, 0.0)
    check_same(y, dub, exact)
    assert (g_rate, g_ch, g_start) == (GUIDE_SR, 1, 0.0)
    check_same(g, guide[:, None], exact)
    with av.open(str(out)) as c:
        assert [s.codec_context.name for s in c.streams.audio] == [audio_codec, audio_codec]
        titles = [s.metadata.get("title") or s.metadata.get("name") for s in c.streams.audio]
    assert titles == ["dub (aligned)", "production sound"]


def test_output_time_zero_is_the_first_frame(tmp_path, rng):
    """A picture whose first frame is stamped about 0.5 s: the preview starts with that frame at 0."""
    picture = mux_synthetic(tmp_path / "late.mkv", seconds=2.0, video_start=0.5)
    dub = on_24_bit_grid(rng, 2 * SR, 1)
    out = tmp_path / "late.mov"
    info = write_preview(picture, dub, SR, out)
    assert info.video == "copied" and info.tracks == 1
    _, src_times, src_light = video_frames(picture)
    _, times, light = video_frames(out)
    assert src_times[0] >= 0.5
    np.testing.assert_allclose(times, np.array(src_times) - src_times[0], atol=1e-6)
    np.testing.assert_allclose(light, src_light, atol=0.01)  # the same pictures: copied, not re-encoded
    [(rate, ch, start, y)] = audio_tracks(out)
    assert (rate, ch, start) == (SR, 1, 0.0)
    np.testing.assert_array_equal(y, dub)


def test_region_is_reencoded_from_its_start(tmp_path, rng):
    """Frame i of the synthetic picture has brightness 3 i: the region must start with frame 25."""
    picture = mux_synthetic(tmp_path / "reel.mkv", seconds=3.0, fps=Fraction(25))
    dub = on_24_bit_grid(rng, SR, 2)
    out = tmp_path / "region.mkv"
    info = write_preview(picture, dub, SR, out, start_s=1.0, duration_s=1.0)
    assert info.video == "re-encoded" and "region" in info.reason
    codec, times, light = video_frames(out)
    assert codec == "h264"
    np.testing.assert_allclose(times, np.arange(25) / 25, atol=1e-3)
    np.testing.assert_allclose(light, 3 * np.arange(25, 50), atol=2.0)  # x264 at crf 18 on flat grey
    [(rate, ch, start, y)] = audio_tracks(out)
    assert (rate, ch, start) == (SR, 2, 0.0)
    np.testing.assert_array_equal(y, dub)


def test_codec_a_container_cannot_play_is_reencoded(tmp_path, rng):
    picture = tmp_path / "lossless.mkv"
    with av.open(str(picture), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    info = write_preview(picture, on_24_bit_grid(rng, SR // 2, 1), SR, tmp_path / "p.mp4")
    assert info.video == "re-encoded" and "ffv1" in info.reason
    codec, times, light = video_frames(tmp_path / "p.mp4")
    assert codec == "h264"
    np.testing.assert_allclose(times, np.arange(10) / 25, atol=1e-3)
    np.testing.assert_allclose(light, 20 * np.arange(10), atol=2.0)
    # the same picture in .mkv is copied: Matroska players read FFV1
    assert write_preview(picture, on_24_bit_grid(rng, SR // 2, 1), SR, tmp_path / "p.mkv").video == "copied"


def test_preview_through_atomic_outputs(tmp_path, rng):
    """The caller's pattern: a temporary name without the suffix, so the container is given."""
    final = tmp_path / "review.mov"
    with atomic_outputs(final) as (tmp,):
        write_preview(EXAMPLE, on_24_bit_grid(rng, SR, 1), SR, tmp, container=preview_container(final))
    assert final.is_file() and not list(tmp_path.glob(f"*{TEMP_MARK}*"))
    assert len(video_frames(final)[1]) == 75


def test_preview_errors(tmp_path, rng):
    dub = on_24_bit_grid(rng, SR, 1)
    with pytest.raises(ParameterError, match=r"\.mov, \.mp4 or \.mkv"):
        write_preview(EXAMPLE, dub, SR, tmp_path / "review.avi")
    with pytest.raises(ParameterError, match="guide_sr"):
        write_preview(EXAMPLE, dub, SR, tmp_path / "review.mov", guide=dub)
    with pytest.raises(ParameterError, match="n_samples, n_channels"):
        write_preview(EXAMPLE, dub[:0], SR, tmp_path / "review.mov")
    with pytest.raises(ParameterError, match="region"):
        write_preview(EXAMPLE, dub, SR, tmp_path / "review.mov", start_s=-1.0)
    with pytest.raises(ParameterError, match="no picture frame"):
        write_preview(EXAMPLE, dub, SR, tmp_path / "review.mov", start_s=10.0, duration_s=1.0)
    with pytest.raises(MediaError, match="not found"):
        write_preview(tmp_path / "missing.mov", dub, SR, tmp_path / "review.mov")
