"""The sync plot of a real alignment: the path where the dub went, on picture time or timecode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import DUB_SR, grid_analysis, shifted_dub
from PIL import Image

from dubalign import media
from dubalign.errors import ParameterError
from dubalign.files import atomic_outputs
from dubalign.path import WarpPath
from dubalign.pipeline import AlignConfig, align_dub
from dubalign.plot import PLOT_DPI, PLOT_SIZE, plot_alignment, sync_figure
from dubalign.timecode import parse_rate

pytestmark = pytest.mark.slow

OFFSET = 0.3  # s: the dub's speech plays this much later than the picture's
WARNING_RED = np.array([0xB0, 0x1C, 0x1C])  # the colour warnings are listed in


@pytest.fixture(scope="module")
def aligned():
    """(sync features as finally weighted, path, result) of a real alignment of a GRID clip."""
    dub = media.DubAudio(samples=shifted_dub(OFFSET, channels=1), sr=DUB_SR, subtype="PCM_24", path="dub.wav")
    seen = {}
    result = align_dub(grid_analysis(), dub, AlignConfig(), hook=seen.__setitem__)
    return seen["placement"].features, seen["placement"].path, result


def test_plot_is_a_png_of_the_stated_size(aligned, tmp_path):
    out = tmp_path / "sync.png"
    with atomic_outputs(out) as (tmp,):  # as the caller writes it: a temporary name, format given
        plot_alignment(tmp, *aligned, rate=parse_rate("25"), origin_s=3600.0, stretch_limits=(2 / 3, 1.5))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == (int(PLOT_SIZE[0] * PLOT_DPI), int(PLOT_SIZE[1] * PLOT_DPI))
        pixels = np.asarray(im.convert("RGB"))
    # an image, text and curves, not a blank page (a blank one has a handful of colours; this dub is the
    # picture's own take, whose sharp fine guide leaves most of the cost panel one colour)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 300
    assert out.stat().st_size < 200_000


def test_panels_sit_on_picture_time(aligned):
    features, path, result = aligned
    fig = sync_figure(features, path, result)
    ax_cost, ax_conf, ax_str = fig.axes[:3]
    duration = len(result.audio) / result.sr
    assert ax_cost.get_xlim() == pytest.approx((-features.pad, duration + features.pad))
    # the path: a dub moment in the middle of the speech sits OFFSET earlier on the picture
    [line] = [ln for ln in ax_cost.get_lines() if ln.get_label() == "chosen path"]
    x, y = line.get_data()
    k = np.argmin(np.abs(y - 1.8))
    assert x[k] == pytest.approx(1.8 - OFFSET, abs=0.04)
    # one confidence bar per dub second that holds speech, placed by the time map
    bars = ax_conf.patches
    spoken = np.isfinite(result.confidence)
    assert len(bars) == spoken.sum()
    first = int(np.flatnonzero(spoken)[0])
    assert bars[0].get_x() == pytest.approx(float(result.timemap.to_picture(first)), abs=1e-6)
    assert [b.get_height() for b in bars] == pytest.approx(result.confidence[spoken])
    assert ax_str.get_xlabel() == "picture time (s)"


def test_timecode_axis(aligned):
    fig = sync_figure(*aligned, rate=parse_rate("25"), origin_s=3600.0)
    ax_cost, _, ax_str = fig.axes[:3]
    assert ax_cost.get_xlim()[0] == pytest.approx(3600.0 - aligned[0].pad)
    fmt = ax_str.xaxis.get_major_formatter()
    assert fmt(3600.0, 0) == "01:00:00:00"
    assert fmt(3601.04, 0) == "01:00:01:01"
    assert "timecode" in ax_str.get_xlabel()


def test_warnings_and_low_confidence_are_marked(aligned, tmp_path):
    features, path, result = aligned
    clean, warned = tmp_path / "clean.png", tmp_path / "warned.png"
    plot_alignment(clean, features, path, dataclasses.replace(result, warnings=[]))
    low = np.where(np.isfinite(result.confidence), 0.1, np.nan)
    noisy = dataclasses.replace(result, confidence=low, warnings=["low confidence (0.10): check the sync by eye"])
    plot_alignment(warned, features, path, noisy)

    def red_rows(png):
        with Image.open(png) as im:
            rgb = np.asarray(im.convert("RGB")).astype(int)
        return np.flatnonzero((np.abs(rgb - WARNING_RED).sum(axis=2) < 60).any(axis=1))

    assert not len(red_rows(clean)[red_rows(clean) > 700])  # nothing listed under the panels
    assert len(red_rows(warned)[red_rows(warned) > 700]) > 5  # the warning's line of text
    fig = sync_figure(features, path, noisy)
    markers = [ln for ln in fig.axes[1].get_lines() if ln.get_label() == "low confidence"]
    assert len(markers) == 1 and len(markers[0].get_xdata()) == np.isfinite(low).sum()


def test_plot_errors(aligned, tmp_path):
    features, path, result = aligned
    with pytest.raises(ParameterError, match="format"):
        plot_alignment(tmp_path / "sync.gif", features, path, result, format="gif")
    foreign = WarpPath(dub_frames=path.dub_frames + features.n_dub, pic_frames=path.pic_frames, cost=0.0)
    with pytest.raises(ParameterError, match="grid"):
        sync_figure(features, foreign, result)
