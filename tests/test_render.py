"""Rendering through a time map: click trains with known landing times."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import dubalign.render as render_module
from dubalign.errors import ParameterError
from dubalign.render import render, rubberband_available
from dubalign.timemap import TimeMap

SR = 48000  # Hz: the usual dub rate (Rubber Band lands clicks 5-20 ms early at 16 kHz)
CLICK_PERIOD_S = 0.25
CLICK_LEN_S = 0.002
STRETCHERS = ["vocoder"] + (["rubberband"] if rubberband_available() else [])
needs_rubberband = pytest.mark.skipif(not rubberband_available(), reason="no rubberband program")


def clicks(seconds: float, sr: int = SR, first: float = 0.125) -> tuple[np.ndarray, np.ndarray]:
    """Click train [shape=(n,)] float32 and each click's energy centroid (s)."""
    n_click = int(CLICK_LEN_S * sr)
    t = np.arange(n_click) / sr
    click = np.hanning(n_click) * np.sin(2 * np.pi * 3000.0 * t) * 0.5
    centroid = np.sum(np.arange(n_click) * click**2) / np.sum(click**2) / sr
    y = np.zeros(int(seconds * sr))
    starts = np.round(np.arange(first, seconds - 0.1, CLICK_PERIOD_S) * sr).astype(int)
    for s in starts:
        y[s : s + n_click] += click
    return y.astype(np.float32), starts / sr + centroid


def locate(y: np.ndarray, expected: np.ndarray, sr: int = SR, search: float = 0.03) -> np.ndarray:
    """Energy centroid (s) of ``y`` within ``search`` s of each expected time; nan if silent."""
    energy = y.astype(float) ** 2
    half = int(search * sr)
    found = np.full(len(expected), np.nan)
    for j, t in enumerate(expected):
        lo, hi = max(0, int(t * sr) - half), min(len(y), int(t * sr) + half)
        w = energy[lo:hi]
        if w.sum() > 1e-8:
            found[j] = (lo + np.sum(np.arange(hi - lo) * w) / w.sum()) / sr
    return found


def two_segment_map() -> TimeMap:
    """Slow down by 1.3 for 1 s, then speed up by 0.75, after a 0.2 s delay."""
    return TimeMap(dub_t=np.array([0.0, 1.0, 3.0]), pic_t=np.array([0.2, 1.5, 3.0]))


def test_identity_reproduces_input(rng):
    x = (rng.standard_normal((2 * SR, 1)) * 0.1).astype(np.float32)
    # identity over the whole dub; the knot past its end keeps the copy shortcut out of the way
    tm = TimeMap(dub_t=np.array([0.0, 2.5, 10.0]), pic_t=np.array([0.0, 2.5, 10.01]))
    out = render(x, SR, tm, n_out=x.shape[0], method="vocoder")
    assert out.method == "vocoder"
    np.testing.assert_allclose(out.audio, x, atol=1e-5)


@needs_rubberband
def test_rubberband_identity_keeps_clicks_and_level():
    # a phase vocoder keeps neither noise's waveform nor exact timing: clicks and level it must
    y, times = clicks(2.0)
    tm = TimeMap(dub_t=np.array([0.0, 2.5, 10.0]), pic_t=np.array([0.0, 2.5, 10.01]))
    out = render(y[:, None], SR, tm, n_out=y.shape[0], method="rubberband")
    assert out.method == "rubberband"
    err_ms = np.abs(locate(out.audio[:, 0], times) - times) * 1000
    assert err_ms.max() < 5.0  # measured 3.75 ms: Rubber Band is not sample-accurate
    np.testing.assert_allclose(np.sqrt(np.mean(out.audio**2)), np.sqrt(np.mean(y**2)), rtol=0.2)


@pytest.mark.parametrize("method", ["auto", *STRETCHERS])
def test_constant_shift_delays_clicks_exactly(method):
    y, times = clicks(2.0)
    tm = TimeMap(dub_t=np.array([0.0, 2.0]), pic_t=np.array([0.3, 2.3]))
    out = render(y[:, None], SR, tm, n_out=3 * SR, method=method)
    assert out.method == "copy"
    found = locate(out.audio[:, 0], times + 0.3)
    np.testing.assert_allclose(found, times + 0.3, atol=0.001)
    shift = int(0.3 * SR)
    np.testing.assert_array_equal(out.audio[shift : shift + len(y), 0], y)


@pytest.mark.parametrize(("method", "max_ms", "mean_ms"), [("vocoder", 2.0, 0.5), ("rubberband", 8.0, 4.0)])
def test_two_segment_map_lands_clicks(method, max_ms, mean_ms):
    if method not in STRETCHERS:
        pytest.skip("no rubberband program")
    y, times = clicks(3.0)
    tm = two_segment_map()
    out = render(y[:, None], SR, tm, n_out=int(3.2 * SR), method=method)
    assert out.method == method
    expected = tm.to_picture(times)
    err_ms = np.abs(locate(out.audio[:, 0], expected) - expected) * 1000
    assert np.isfinite(err_ms).all()
    assert err_ms.max() < max_ms
    assert err_ms.mean() < mean_ms


@pytest.mark.parametrize("method", STRETCHERS)
def test_identical_channels_stay_identical(method, rng):
    y, _ = clicks(2.0)
    y = y + (rng.standard_normal(y.shape) * 0.01).astype(np.float32)
    stereo = np.stack([y, y, 0.5 * y], axis=1)
    out = render(stereo, SR, two_segment_map(), n_out=int(2.5 * SR), method=method).audio
    assert out.shape == (int(2.5 * SR), 3)
    np.testing.assert_allclose(out[:, 1], out[:, 0], atol=1e-6)
    np.testing.assert_allclose(out[:, 2], 0.5 * out[:, 0], atol=1e-3)
    assert np.abs(out[:, 0]).max() > 0.1


@pytest.mark.parametrize("method", STRETCHERS)
def test_channels_are_warped_by_the_same_map(method):
    left, times = clicks(3.0, first=0.125)
    right, times_r = clicks(3.0, first=0.2)  # different content in each channel
    tm = two_segment_map()
    out = render(np.stack([left, right], axis=1), SR, tm, n_out=int(3.2 * SR), method=method).audio
    bound_ms = 2.0 if method == "vocoder" else 8.0
    for ch, t in ((0, times), (1, times_r)):
        expected = tm.to_picture(t)
        err_ms = np.abs(locate(out[:, ch], expected, search=0.02) - expected) * 1000
        assert np.nanmax(err_ms) < bound_ms
        assert np.isfinite(err_ms).all()


@pytest.mark.parametrize("method", STRETCHERS)
def test_silence_outside_the_dub(method, rng):
    x = (rng.standard_normal((SR, 2)) * 0.1).astype(np.float32)
    # starts 0.5 s into the picture, 1 s of dub stretched to 1.2 s, then nothing
    tm = TimeMap(dub_t=np.array([0.0, 0.5, 1.0]), pic_t=np.array([0.5, 1.1, 1.7]))
    out = render(x, SR, tm, n_out=3 * SR, method=method).audio
    start, end = int(0.5 * SR), int(1.7 * SR)
    assert not out[:start].any()
    assert not out[end + 1 :].any()
    assert np.sqrt(np.mean(out[start + 400 : end - 400] ** 2)) > 0.05


@pytest.mark.parametrize("method", STRETCHERS)
def test_picture_starting_inside_the_dub(method):
    y, times = clicks(3.0)
    # the picture starts 1 s into the dub, which plays 1.25x slower
    tm = TimeMap(dub_t=np.array([0.0, 3.0]), pic_t=np.array([-1.25, 2.5]))
    out = render(y[:, None], SR, tm, n_out=2 * SR, method=method).audio
    expected = tm.to_picture(times)
    expected = expected[(expected > 0.05) & (expected < 1.95)]
    err_ms = np.abs(locate(out[:, 0], expected) - expected) * 1000
    assert np.isfinite(err_ms).all()
    assert err_ms.max() < (2.0 if method == "vocoder" else 8.0)


@pytest.mark.parametrize("method", STRETCHERS)
@pytest.mark.parametrize("n_out", [1, 1000, 2 * SR + 7, 5 * SR])
def test_n_out_is_exact(method, n_out, rng):
    x = (rng.standard_normal((2 * SR, 2)) * 0.1).astype(np.float32)
    out = render(x, SR, two_segment_map(), n_out=n_out, method=method).audio
    assert out.shape == (n_out, 2)
    assert out.dtype == np.float32


def test_vocoder_keeps_level_of_a_tone():
    t = np.arange(2 * SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[:, None]
    out = render(tone, SR, two_segment_map(), n_out=int(2.6 * SR), method="vocoder").audio
    middle = out[int(0.5 * SR) : int(2.0 * SR), 0]
    np.testing.assert_allclose(np.sqrt(np.mean(middle**2)), 0.5 / np.sqrt(2), rtol=0.05)
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    peak_hz = np.argmax(spectrum) * SR / len(middle)
    assert abs(peak_hz - 440.0) < 2.0  # time stretching must not shift the pitch


@dataclass(frozen=True)
class _BrokenMap:
    dub_t: np.ndarray
    pic_t: np.ndarray

    def to_dub(self, pic_times):
        return np.full(np.shape(pic_times), np.nan)

    def to_picture(self, dub_times):
        return np.full(np.shape(dub_times), np.nan)


@pytest.mark.parametrize(
    ("audio", "kwargs"),
    [
        (np.zeros((0, 1), np.float32), {}),
        (np.zeros((100, 0), np.float32), {}),
        (np.zeros(100, np.float32), {}),
        (np.full((100, 1), np.nan, np.float32), {}),
        (np.zeros((100, 1), np.float32), {"n_out": 0}),
        (np.zeros((100, 1), np.float32), {"n_out": -5}),
        (np.zeros((100, 1), np.float32), {"sr": 0}),
        (np.zeros((100, 1), np.float32), {"method": "sox"}),
    ],
)
def test_bad_inputs_raise(audio, kwargs):
    args = {"sr": SR, "n_out": 100, "method": "auto"} | kwargs
    with pytest.raises(ParameterError):
        render(audio, args["sr"], two_segment_map(), n_out=args["n_out"], method=args["method"])


def test_non_finite_map_raises():
    bad = _BrokenMap(dub_t=np.array([0.0, 1.0]), pic_t=np.array([0.0, np.nan]))
    with pytest.raises(ParameterError, match="not finite"):
        render(np.zeros((100, 1), np.float32), SR, bad, n_out=100)
    nan_only_in_calls = _BrokenMap(dub_t=np.array([0.0, 1.0]), pic_t=np.array([0.0, 1.0]))
    with pytest.raises(ParameterError, match="non-finite"):
        render(np.zeros((100, 1), np.float32), SR, nan_only_in_calls, n_out=100)


def test_missing_rubberband_falls_back_to_vocoder(monkeypatch):
    monkeypatch.setattr(render_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(render_module, "DEFAULT_METHOD", "rubberband")
    y, _ = clicks(2.0)
    out = render(y[:, None], SR, two_segment_map(), n_out=2 * SR)
    assert out.method == "vocoder"
    assert "rubberband" in out.fallback_reason
    with pytest.raises(ParameterError, match="rubberband"):
        render(y[:, None], SR, two_segment_map(), n_out=2 * SR, method="rubberband")


def test_auto_uses_the_default_method():
    y, _ = clicks(2.0)
    out = render(y[:, None], SR, two_segment_map(), n_out=2 * SR)
    assert out.method == render_module.DEFAULT_METHOD
    assert out.fallback_reason is None
