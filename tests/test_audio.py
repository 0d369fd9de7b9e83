"""Audio features: frame centring of log-mel, analysis resampling, speech activity on GRID speech."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import click_track, grid_audio, grid_words, to_rate

from dubalign.audio import (
    analysis_mix,
    frame_energy_db,
    inverted_channel_pairs,
    log_mel,
    normalize_mel,
    speech_activity,
    to_analysis,
)
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


def test_analysis_mix_of_inverted_channels_does_not_cancel(rng):
    x = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    anti = np.stack([x, -x], axis=1)
    assert np.abs(anti.mean(axis=1)).max() == 0.0  # what a plain mean would analyse: silence
    np.testing.assert_allclose(analysis_mix(anti), x, atol=1e-7)
    np.testing.assert_allclose(analysis_mix(anti[:, ::-1]), -x, atol=1e-7)  # the loudest sets the polarity
    assert inverted_channel_pairs(anti) == [(0, 1, pytest.approx(-1.0))]


def test_analysis_mix_is_the_mean_for_ordinary_channels(rng):
    x = (0.3 * rng.standard_normal((4000, 1))).astype(np.float32)
    noise = (0.01 * rng.standard_normal((4000, 3))).astype(np.float32)
    surround = np.concatenate([x, 0.5 * x, np.zeros_like(x), x], axis=1) + np.pad(noise, ((0, 0), (1, 0)))
    np.testing.assert_array_equal(analysis_mix(surround), surround.mean(axis=1))
    assert inverted_channel_pairs(surround) == []
    np.testing.assert_array_equal(analysis_mix(x), x[:, 0])
    np.testing.assert_array_equal(analysis_mix(x[:, 0]), x[:, 0])


def test_analysis_mix_falls_back_to_the_loudest_channel_when_polarity_cannot_help(rng):
    x, y = rng.standard_normal((2, 8000)).astype(np.float32)
    # channels 1 and 2 follow the loudest channel a little and cancel each other a lot
    c = np.stack([3 * x, 0.1 * x + 2.9 * y, 0.1 * x - 2.9 * y], axis=1)
    assert np.mean(c.mean(axis=1) ** 2) < 0.5 * np.mean(c**2) / 3  # the mean loses the energy
    np.testing.assert_array_equal(analysis_mix(c), c[:, 0])


def test_log_mel_and_energy_match_librosa(rng):
    # log_mel is librosa's melspectrogram re-done in numpy (librosa compiles numba code on first use)
    librosa = pytest.importorskip("librosa")
    from dubalign.audio import frame_energy_db, log_mel
    from dubalign.units import ANALYSIS_SR, MEL_HOP, MEL_NFFT, MEL_WIN, N_MELS

    for n in (ANALYSIS_SR, ANALYSIS_SR + 77, MEL_NFFT + 1):
        y = (0.1 * rng.standard_normal(n)).astype(np.float32)
        ref = librosa.feature.melspectrogram(
            y=y, sr=ANALYSIS_SR, n_fft=MEL_NFFT, win_length=MEL_WIN, hop_length=MEL_HOP, n_mels=N_MELS,
            fmin=60.0, fmax=7600.0, center=True, power=2.0,
        )
        np.testing.assert_allclose(log_mel(y), np.log(ref + 1e-6).T, atol=1e-4)
        rms = librosa.feature.rms(y=y, frame_length=MEL_WIN, hop_length=MEL_HOP, center=True)[0]
        np.testing.assert_allclose(frame_energy_db(y), 20 * np.log10(rms + 1e-9), atol=1e-4)
