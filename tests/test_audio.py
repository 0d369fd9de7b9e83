"""Audio features: frame centring of log-mel, analysis resampling, speech activity on GRID speech."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import click_track, grid_audio, grid_words, to_rate

from dubalign.audio import frame_energy_db, log_mel, normalize_mel, speech_activity, to_analysis
from dubalign.units import ANALYSIS_SR, FEATURE_RATE, MEL_HOP, N_MELS


def grid_16k() -> np.ndarray:
    y, sr = grid_audio()
    return to_rate(y, sr, ANALYSIS_SR)


@pytest.mark.parametrize("n", [ANALYSIS_SR, ANALYSIS_SR + 1, 2 * ANALYSIS_SR + MEL_HOP - 1])
def test_log_mel_shape(rng, n):
    mel = log_mel(rng.standard_normal(n).astype(np.float32) * 0.1)
    assert mel.shape == (n // MEL_HOP + 1, N_MELS)
    assert mel.dtype == np.float32
    assert np.isfinite(mel).all()


@pytest.mark.parametrize("t", [0.5, 1.234, 2.0, 2.678])
def test_log_mel_frames_are_centred(t):
    mel = log_mel(click_track(3.0, t, ANALYSIS_SR))
    assert int(np.argmax(mel.mean(axis=1))) == round(t * FEATURE_RATE)


def test_frame_energy_matches_log_mel_frames_and_level():
    t = np.arange(2 * ANALYSIS_SR) / ANALYSIS_SR
    y = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    db = frame_energy_db(y)
    assert db.shape == (len(log_mel(y)),)
    np.testing.assert_allclose(db[10:-10], 20 * np.log10(0.5 / np.sqrt(2)), atol=0.1)


def test_to_analysis_resamples_48k_stereo_to_16k_mono():
    sr = 48000
    t = np.arange(2 * sr) / sr
    left = 0.6 * np.sin(2 * np.pi * 1000.0 * t)
    stereo = np.stack([left, 0.5 * left], axis=1).astype(np.float32)  # mean = 0.45 sin
    y = to_analysis(stereo, sr)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == 2 * ANALYSIS_SR
    spectrum = np.abs(np.fft.rfft(y))
    assert np.fft.rfftfreq(len(y), 1 / ANALYSIS_SR)[np.argmax(spectrum)] == pytest.approx(1000.0)
    assert np.max(np.abs(y[1000:-1000])) == pytest.approx(0.45, abs=0.01)


def test_to_analysis_keeps_16k_mono(rng):
    y = rng.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(to_analysis(y, ANALYSIS_SR), y)
    np.testing.assert_array_equal(to_analysis(y[:, None], ANALYSIS_SR), y)


def test_normalize_mel_removes_level_and_eq(rng):
    mel = log_mel(grid_16k())
    louder = mel + rng.uniform(-3, 3, size=N_MELS).astype(np.float32)  # a per-band gain (EQ) in log
    np.testing.assert_allclose(normalize_mel(louder), normalize_mel(mel), atol=1e-3)
    np.testing.assert_allclose(np.median(normalize_mel(mel), axis=0), 0.0, atol=1e-5)


def test_speech_activity_high_on_speech_low_on_silence():
    y = grid_16k()
    act = speech_activity(y)
    assert act.shape == (len(log_mel(y)),)
    assert ((act >= 0) & (act <= 1)).all()
    frame_t = np.arange(len(act)) / FEATURE_RATE
    words = grid_words()
    in_words = np.zeros(len(act), bool)
    for w in words:
        in_words |= (frame_t >= w.start + 0.03) & (frame_t < w.end - 0.03)
    lead = frame_t < words[0].start - 0.1  # GRID's leading silence
    assert act[in_words].mean() > 0.7
    assert act[lead].mean() < 0.2
