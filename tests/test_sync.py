"""The sync-error matrix: resampling, validity, banded distances against dense numpy, z-scores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import grid_audio, grid_words, to_rate

import dubalign.sync as sync_module
from dubalign.audio import log_mel, speech_activity
from dubalign.lips import CROP_H, CROP_W, LIP_POINTS, N_BLENDSHAPES, LipTrack
from dubalign.sync import (
    ACTIVITY_WEIGHT,
    FINE_CEPSTRA,
    FINE_GUIDE_TEMPERATURE,
    GUIDE_CLEAN_RANGE_DB,
    GUIDE_SAME_TAKE,
    GUIDE_TEMPERATURE,
    GuideTrust,
    SyncFeatures,
    audio_range_db,
    banded_distance,
    frame_validity,
    guide_agreement,
    guide_vectors,
    guide_weight,
    picture_grid,
    row_neg_log_softmax,
    same_take_contrast,
    with_fine_guide,
)
from dubalign.timemap import TimeMap
from dubalign.units import ANALYSIS_SR, PATH_RATE


def make_track(times: np.ndarray, present: np.ndarray) -> LipTrack:
    n = len(times)
    return LipTrack(
        times=times, present=present, lips=np.zeros((n, len(LIP_POINTS), 2), np.float32),
        blendshapes=np.zeros((n, N_BLENDSHAPES), np.float32), crops=np.zeros((n, CROP_H, CROP_W), np.uint8),
        face=0, n_faces=1, face_x=0.5,
    )


def dense_distance(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return 1.0 - rows @ cols.T


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_picture_grid():
    grid = picture_grid(3.0, 1.5)
    assert grid[0] == pytest.approx(-1.5)
    assert grid[-1] == pytest.approx(4.5)
    np.testing.assert_allclose(np.diff(grid), 1 / PATH_RATE)


def test_frame_validity():
    times = np.arange(10) / 25.0  # 0 .. 0.36 s
    present = np.ones(10, bool)
    present[4:6] = False  # frames at 0.16 and 0.20 s show no face
    grid = np.arange(-5, 46) / PATH_RATE  # -0.05 .. 0.45 s
    valid = frame_validity(make_track(times, present), grid)
    nearest = np.clip(np.round(grid * 25).astype(int), 0, 9)
    expected = present[nearest] & (grid >= -0.02 - 1e-9) & (grid <= 0.38 + 1e-9)
    np.testing.assert_array_equal(valid, expected)
    assert not valid[grid < -0.021].any() and not valid[grid > 0.381].any()


def test_banded_distance_matches_dense(rng, monkeypatch):
    n_dub, n_pic, dim, width = 300, 120, 8, 25
    monkeypatch.setattr(sync_module, "BAND_BLOCK_ROWS", 64)  # 5 blocks
    rows = unit(rng.standard_normal((n_dub, dim)))
    cols = unit(rng.standard_normal((n_pic, dim)))
    col_start = rng.integers(-10, n_pic - 5, size=n_dub)
    band = banded_distance(rows, cols, col_start, width)
    dense = dense_distance(rows, cols)
    assert band.shape == (n_dub, width) and band.dtype == np.float32
    for i in range(n_dub):
        for k in range(width):
            j = col_start[i] + k
            if 0 <= j < n_pic:
                assert band[i, k] == pytest.approx(dense[i, j], abs=1e-5)
            else:
                assert band[i, k] == np.inf


def test_row_neg_log_softmax_by_hand():
    costs = np.array([[1.0, 2.0, 3.0, np.inf], [5.0, 5.0, 5.0, 5.0]])
    out = row_neg_log_softmax(costs, 1.0)
    # row 0: -log(e^-c / (e^-1 + e^-2 + e^-3))
    total = np.log(np.exp(-1.0) + np.exp(-2.0) + np.exp(-3.0))
    np.testing.assert_allclose(out[0, :3], [1.0 + total, 2.0 + total, 3.0 + total], rtol=1e-5)
    assert out[0, 3] == np.inf
    np.testing.assert_allclose(out[1], np.log(4.0), rtol=1e-6)  # flat row: uniform
    # a cell without a face carries no evidence: it gets the row's mean, the others renormalise
    valid = np.array([[True, True, False, True], [True, True, True, True]])
    out = row_neg_log_softmax(costs, 0.5, valid=valid)
    total = np.log(np.exp(-2.0) + np.exp(-4.0))
    np.testing.assert_allclose(out[0, :2], [2.0 + total, 4.0 + total], rtol=1e-5)
    assert out[0, 2] == pytest.approx(out[0, :2].mean())
    assert out.dtype == np.float32
    # lower temperature: sharper
    assert np.ptp(row_neg_log_softmax(costs[:1, :3], 0.1)) > np.ptp(row_neg_log_softmax(costs[:1, :3], 1.0))


def random_features(rng, n_dub=103, n_pic=157, guide=True) -> SyncFeatures:
    lip_dub, lip_pic = unit(rng.standard_normal((n_dub, 6))), unit(rng.standard_normal((n_pic, 6)))
    valid = np.ones(n_pic, bool)
    valid[40:60] = False
    return SyncFeatures(
        lip_dub=lip_dub, lip_pic=lip_pic, lip_valid=valid, lip_temperature=0.2,
        dub_activity=np.zeros(n_dub, np.float32), dub_pause=np.zeros(n_dub, bool),
        pic_activity=np.zeros(n_pic, np.float32),
        guide_dub=unit(rng.standard_normal((n_dub, 5))) if guide else None,
        guide_pic=unit(rng.standard_normal((n_pic, 5))) if guide else None,
        guide_weight=0.5 if guide else 0.0, pad=0.5,
    )


@pytest.mark.parametrize("guide", [True, False])
def test_pooled_shapes(rng, guide):
    f = random_features(rng, guide=guide)
    assert f.pooled(1) is f
    p = f.pooled(4)
    assert (p.n_dub, p.n_pic) == (26, 40)  # ceil(103 / 4), ceil(157 / 4)
    assert p.lip_dub.shape == (26, 6) and p.lip_pic.shape == (40, 6)
    assert p.lip_valid.shape == (40,) and p.lip_valid.dtype == bool
    assert not p.lip_valid[10:15].any() and p.lip_valid[:10].all()  # frames 40..59 had no face
    assert p.factor == 4 and p.pooled(2).factor == 8
    assert (p.lip_temperature, p.pad, p.guide_weight) == (f.lip_temperature, f.pad, f.guide_weight)
    np.testing.assert_allclose(np.linalg.norm(p.lip_dub, axis=1), 1.0, atol=1e-6)
    if guide:
        assert p.guide_dub.shape == (26, 5) and p.guide_pic.shape == (40, 5)
        np.testing.assert_allclose(np.linalg.norm(p.guide_pic, axis=1), 1.0, atol=1e-6)
    else:
        assert p.guide_dub is None and p.guide_pic is None
    # the mean of the first 4 picture rows, before normalisation, points the same way
    first = f.lip_pic[:4].mean(axis=0)
    first = first / np.linalg.norm(first)
    np.testing.assert_allclose(p.lip_pic[0], first, atol=1e-6)


@pytest.mark.parametrize("guide", [True, False])
def test_band_marks_cells_outside_the_picture(rng, guide):
    f = random_features(rng, guide=guide)
    width = 30
    col_start = np.linspace(-15, f.n_pic - 10, f.n_dub).astype(np.int64)
    m = f.band(col_start, width)
    assert m.costs.shape == (f.n_dub, width) and m.costs.dtype == np.float32
    np.testing.assert_array_equal(m.col_start, col_start)
    cols = col_start[:, None] + np.arange(width)
    outside = (cols < 0) | (cols >= f.n_pic)
    assert outside.any() and (~outside).any()
    assert np.isinf(m.costs[outside]).all()
    assert np.isfinite(m.costs[~outside]).all()


def test_band_without_guide_is_the_lip_log_softmax(rng):
    f = random_features(rng, guide=False)
    col_start = np.full(f.n_dub, 20, np.int64)
    m = f.band(col_start, 30)
    lip = dense_distance(f.lip_dub, f.lip_pic)[:, 20:50]
    valid = f.lip_valid[20:50][None, :].repeat(f.n_dub, 0)
    np.testing.assert_allclose(m.costs, row_neg_log_softmax(lip, 0.2, valid=valid), rtol=1e-5)
    # columns 40..49 (band 20..29): no face, the row's mean
    mean = m.costs[:, :20].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(m.costs[:, 20:30], np.broadcast_to(mean, (f.n_dub, 10)), rtol=1e-5)


def test_band_with_guide_adds_the_weighted_guide_term(rng):
    f = random_features(rng, guide=True)
    col_start = np.full(f.n_dub, 20, np.int64)
    m = f.band(col_start, 30)
    lip = dense_distance(f.lip_dub, f.lip_pic)[:, 20:50]
    guide = dense_distance(f.guide_dub, f.guide_pic)[:, 20:50]
    valid = f.lip_valid[20:50][None, :].repeat(f.n_dub, 0)
    expected = row_neg_log_softmax(lip, 0.2, valid=valid) + 0.5 * row_neg_log_softmax(guide, GUIDE_TEMPERATURE)
    np.testing.assert_allclose(m.costs, expected, rtol=1e-4)


def test_band_pause_rows_are_neutral_and_activity_must_match(rng):
    f = random_features(rng, guide=False)
    pause = np.zeros(f.n_dub, bool)
    pause[10:20] = True
    act = np.where(pause, 0.0, 1.0).astype(np.float32)
    mouth = np.zeros(f.n_pic, np.float32)
    mouth[25:35] = 1.0  # the mouth speaks in columns 25..34 only
    g = dataclasses.replace(f, dub_pause=pause, dub_activity=act, pic_activity=mouth)
    col_start = np.full(f.n_dub, 20, np.int64)
    lips_only = dataclasses.replace(g, dub_activity=np.zeros_like(act), pic_activity=np.zeros_like(mouth))
    base, m = lips_only.band(col_start, 30).costs, g.band(col_start, 30).costs
    # pause rows: the lip term is flat (its row mean), plus ACTIVITY_WEIGHT where the mouth moves
    flat = np.broadcast_to(base[10:20].mean(axis=1, keepdims=True), (10, 30))
    np.testing.assert_allclose(base[10:20], flat, rtol=1e-5)
    np.testing.assert_allclose(m[10:20], base[10:20] + ACTIVITY_WEIGHT * mouth[20:50][None, :], rtol=1e-5)
    # speech rows: the lip term, plus ACTIVITY_WEIGHT where the mouth rests
    np.testing.assert_allclose(m[30:], base[30:] + ACTIVITY_WEIGHT * (1.0 - mouth[20:50])[None, :], rtol=1e-5)
    assert np.ptp(base[30:], axis=1).min() > 0  # not flat


def test_guide_agreement_is_high_for_clean_speech_and_lower_under_babble(rng):
    y, sr = grid_audio()
    clean = to_rate(y, sr, ANALYSIS_SR)
    # babble: the same clip's speech at other offsets, 5 dB louder than the speech
    babble = sum(np.roll(clean, int(k * ANALYSIS_SR)) for k in (0.37, 0.81, 1.33, 1.9))
    babble *= np.sqrt(np.mean(clean**2) / np.mean(babble**2)) * 10 ** (5 / 20)
    identity = TimeMap.identity(len(clean) / ANALYSIS_SR)
    a_clean = guide_agreement(clean, clean, identity)
    a_noisy = guide_agreement(clean, clean + babble, identity)
    assert a_clean == pytest.approx(1.0, abs=1e-6)
    assert a_noisy < 0.8
    assert guide_weight(a_clean) == 1.0
    assert 0.0 < guide_weight(a_noisy) <= 1.0  # noisy, but the same line: kept
    assert guide_weight(-0.2) == 0.0  # audio that does not follow the dub at all is dropped
    assert 0.0 < guide_weight(0.03) < 0.5  # very noisy, still following: kept, at a lower weight
    assert guide_weight(0.5) == 1.0
    assert guide_agreement(clean, np.zeros_like(clean), identity) == 0.0
    # a wrong placement of the same clean speech agrees less than the right one
    assert guide_agreement(clean, clean, TimeMap.shifted(0.4, duration=3.0)) < a_clean - 0.2


def _words_map(dub_words, pic_words, n: int) -> TimeMap:
    """Dub time -> picture time through the first ``n`` words' boundaries of two GRID takes."""
    dub_t = [w.start for w in dub_words[:n]] + [dub_words[n - 1].end]
    pic_t = [w.start for w in pic_words[:n]] + [pic_words[n - 1].end]
    return TimeMap(np.asarray(dub_t, float), np.asarray(pic_t, float))


def test_the_same_take_keeps_its_pitch_under_babble_and_a_new_performance_does_not(rng):
    y, sr = grid_audio()
    picture = to_rate(y, sr, ANALYSIS_SR)
    # babble: the clip's speech at eight other offsets (it fills the clip's pauses), -5 dB SNR
    babble = sum(np.roll(picture, int(k * ANALYSIS_SR)) for k in (0.37, 0.6, 0.81, 1.1, 1.33, 1.9, 2.2, 2.6))
    babble *= np.sqrt(np.mean(picture**2) / np.mean(babble**2)) * 10 ** (5 / 20)
    noisy = picture + babble
    speech = speech_activity(picture)
    identity = TimeMap.identity(len(picture) / ANALYSIS_SR)
    same_clean = same_take_contrast(picture, picture, identity, speech)
    same_noisy = same_take_contrast(picture, noisy, identity, speech)
    # "bin blue at f" said again in another GRID take of the same speaker, placed word by word
    other, other_sr = grid_audio("bbaf3s")
    dub = to_rate(other, other_sr, ANALYSIS_SR)
    words = _words_map(grid_words("bbaf3s"), grid_words(), 4)
    dub_speech = speech_activity(dub)
    frames = np.arange(len(dub_speech)) / PATH_RATE
    dub_speech[(frames < words.dub_t[0]) | (frames > words.dub_t[-1])] = 0.0  # the shared words only
    new_clean = same_take_contrast(dub, picture, words, dub_speech)
    new_noisy = same_take_contrast(dub, noisy, words, dub_speech)
    assert same_clean > 0.3 and same_noisy > GUIDE_SAME_TAKE[1]
    assert new_clean < same_clean - 0.2 and new_noisy < GUIDE_SAME_TAKE[1]
    # the noisy audio is noisy, the clean one clean, and digital silence before a track is no floor
    assert audio_range_db(noisy) < GUIDE_CLEAN_RANGE_DB[0] < GUIDE_CLEAN_RANGE_DB[1] < audio_range_db(picture)
    assert audio_range_db(np.r_[np.zeros(ANALYSIS_SR, np.float32), noisy]) < GUIDE_CLEAN_RANGE_DB[0]
    # so a new performance under babble loses the guide; the same take, or clean audio, keeps it
    assert GuideTrust(audio_range_db(noisy), new_noisy).factor < 0.5
    assert GuideTrust(audio_range_db(noisy), same_noisy).factor == 1.0
    assert GuideTrust(audio_range_db(picture), new_clean).factor == 1.0
    # and only the same take, clean or noisy, is guided by its fine spectral detail
    assert GuideTrust(audio_range_db(picture), same_clean).same_performance
    assert GuideTrust(audio_range_db(noisy), same_noisy).same_performance
    assert not GuideTrust(audio_range_db(picture), new_clean).same_performance
    assert not GuideTrust(audio_range_db(noisy), new_noisy).same_performance


def test_same_performance_by_contrast_outright_or_per_db_of_range():
    # a clean picture with a wide range: its contrast outright
    assert GuideTrust(range_db=40.0, same_take=0.3).same_performance
    assert not GuideTrust(range_db=40.0, same_take=0.2).same_performance  # a clean new performance
    # under babble the same take's contrast falls with the range
    assert GuideTrust(range_db=8.0, same_take=0.1).same_performance
    assert not GuideTrust(range_db=8.0, same_take=0.06).same_performance
    assert not GuideTrust(range_db=0.0, same_take=0.1).same_performance  # silence: no range to judge by


def test_fine_guide_replaces_the_envelope_guide(rng):
    y, sr = grid_audio()
    y16 = to_rate(y, sr, ANALYSIS_SR)
    mel = log_mel(y16)
    features = dataclasses.replace(random_features(rng, n_dub=len(mel)), pad=0.3)
    grid = np.arange(features.n_pic) / PATH_RATE - features.pad
    fine = with_fine_guide(features, mel, y16)
    assert fine.guide_temperature == FINE_GUIDE_TEMPERATURE < GUIDE_TEMPERATURE == features.guide_temperature
    assert fine.guide_dub.shape == (len(mel), 2 * FINE_CEPSTRA) and fine.guide_pic.shape[0] == features.n_pic
    expected = guide_vectors(mel, y16, grid, n_cepstra=FINE_CEPSTRA)
    np.testing.assert_array_equal(fine.guide_dub, expected[0])
    np.testing.assert_array_equal(fine.guide_pic, expected[1])
    assert fine.lip_dub is features.lip_dub and fine.guide_weight == features.guide_weight
    # the same picture frame is the nearest of its row (a dub that is the picture's own audio)
    row = 100
    col = round((row / PATH_RATE + fine.pad) * PATH_RATE)
    assert np.argmax(fine.guide_pic @ fine.guide_dub[row]) == col
    with pytest.raises(ValueError, match="unpooled"):
        with_fine_guide(features.pooled(2), mel, y16)


def test_guide_cepstra_and_deltas_are_scipys(rng):
    # computed in numpy so that aligning does not import scipy.signal and scipy.fft (slow imports)
    import scipy.fft
    import scipy.signal

    x = rng.standard_normal((120, sync_module.N_CEPSTRA))
    np.testing.assert_allclose(
        sync_module.deltas(x),
        scipy.signal.savgol_filter(x, sync_module.DELTA_WIDTH, 1, deriv=1, axis=0, mode="nearest"),
        atol=1e-12,
    )
    mel = rng.standard_normal((50, 40))
    np.testing.assert_allclose(mel @ sync_module._dct_basis(40), scipy.fft.dct(mel, axis=1, norm="ortho"), atol=1e-12)
