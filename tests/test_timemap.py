"""The time map: interpolation, inversion, extrapolation, JSON, and path smoothing."""

import json

import numpy as np
import pytest

from dubalign.errors import ParameterError
from dubalign.path import PathConstraints, WarpPath, solve_path
from dubalign.timemap import TimeMap, anchored_shift, path_to_timemap, solve_pentadiagonal
from dubalign.units import PATH_RATE


def _random_map(rng, n=20) -> TimeMap:
    dub_t = np.cumsum(rng.uniform(0.05, 0.5, size=n))
    pic_t = 1.0 + np.cumsum(np.diff(dub_t, prepend=0.0) * rng.uniform(0.7, 1.4, size=n))
    return TimeMap(dub_t=dub_t, pic_t=pic_t)


def _path(rows, cols) -> WarpPath:
    return WarpPath(
        dub_frames=np.asarray(rows, dtype=np.int64),
        pic_frames=np.asarray(cols, dtype=np.int64),
        cost=0.0,
    )


# ---------------------------------------------------------------------------------------------
# TimeMap


def test_hand_map_interpolates_and_stretches():
    tm = TimeMap(dub_t=[0.0, 1.0, 2.0], pic_t=[0.5, 2.0, 2.5])
    np.testing.assert_allclose(
        tm.to_picture([0.0, 0.5, 1.0, 1.5, 2.0]), [0.5, 1.25, 2.0, 2.25, 2.5]
    )
    np.testing.assert_allclose(tm.to_dub([1.25, 2.25]), [0.5, 1.5])
    np.testing.assert_allclose(tm.stretch(), [1.5, 0.5])


def test_extrapolation_is_slope_1():
    tm = TimeMap(dub_t=[1.0, 2.0], pic_t=[3.0, 5.0])
    np.testing.assert_allclose(tm.to_picture([0.0, 0.5, 3.0, 10.0]), [2.0, 2.5, 6.0, 13.0])
    np.testing.assert_allclose(tm.to_dub([2.0, 6.0]), [0.0, 3.0])


def test_identity_and_shifted():
    t = np.array([-1.0, 0.0, 2.5, 100.0])
    np.testing.assert_allclose(TimeMap.identity(3.0).to_picture(t), t)
    np.testing.assert_allclose(TimeMap.shifted(0.25).to_picture(t), t + 0.25)
    np.testing.assert_allclose(TimeMap.shifted(-0.4, duration=5.0).to_dub(t), t + 0.4)


def test_round_trip_inside_and_outside(rng):
    tm = _random_map(rng)
    t = rng.uniform(tm.dub_t[0] - 3, tm.dub_t[-1] + 3, size=500)
    np.testing.assert_allclose(tm.to_dub(tm.to_picture(t)), t, atol=1e-12)
    p = rng.uniform(tm.pic_t[0] - 3, tm.pic_t[-1] + 3, size=500)
    np.testing.assert_allclose(tm.to_picture(tm.to_dub(p)), p, atol=1e-12)


def test_json_round_trip(rng):
    tm = _random_map(rng)
    back = TimeMap.from_json(json.loads(json.dumps(tm.to_json())))
    np.testing.assert_array_equal(back.dub_t, tm.dub_t)
    np.testing.assert_array_equal(back.pic_t, tm.pic_t)


def test_invalid_maps_raise():
    with pytest.raises(ParameterError):
        TimeMap(dub_t=[0.0, 1.0, 1.0], pic_t=[0.0, 1.0, 2.0])
    with pytest.raises(ParameterError):
        TimeMap(dub_t=[0.0, 1.0], pic_t=[1.0, 0.5])
    with pytest.raises(ParameterError):
        TimeMap(dub_t=[0.0], pic_t=[0.0])
    with pytest.raises(ParameterError):
        TimeMap.from_json({"dub_t": [0.0, 1.0]})


# ---------------------------------------------------------------------------------------------
# path_to_timemap


def test_diagonal_path_gives_exact_offset():
    rows = np.arange(200)
    tm = path_to_timemap(_path(rows, rows + 30), pic_origin=-0.5)
    np.testing.assert_allclose(tm.dub_t, rows / PATH_RATE)
    np.testing.assert_allclose(tm.pic_t, rows / PATH_RATE + 0.3 - 0.5, atol=1e-9)
    np.testing.assert_allclose(tm.stretch(), 1.0, atol=1e-9)


def test_constant_stretch_path_keeps_its_slope():
    # Repeated (2, 3) steps: slope exactly 1.5 on average, a staircase row by row.
    costs = np.ones((101, 200), dtype=np.float32)
    costs[np.arange(101), np.round(np.arange(101) * 1.5).astype(int)] = 0.0
    path = solve_path(costs, np.zeros(101, dtype=np.int64), start_cols=(0, 0), end_cols=(150, 150))
    tm = path_to_timemap(path)
    assert tm.stretch().max() <= 1.5 + 1e-12
    np.testing.assert_allclose(tm.stretch()[10:-10], 1.5, atol=0.02)
    assert tm.pic_t[-1] - tm.pic_t[0] == pytest.approx(1.5, abs=0.02)


def test_impossible_jump_is_limited_and_centred():
    rows = np.arange(200)
    cols = rows + np.where(rows < 100, 0, 60)  # a 60-frame jump between two rows
    tm = path_to_timemap(_path(rows, cols), constraints=PathConstraints(min_slope=2 / 3, max_slope=1.5))
    s = tm.stretch()
    assert s.min() >= 2 / 3 - 1e-12 and s.max() <= 1.5 + 1e-12
    assert (np.diff(tm.pic_t) > 0).all()
    # The least-squares offset balances the error around the path.
    residual = tm.pic_t * PATH_RATE - cols
    assert abs(residual.mean()) < 1e-6
    # Far from the jump the map is parallel to the path: slope 1.
    np.testing.assert_allclose(s[:20], 1.0, atol=0.01)
    np.testing.assert_allclose(s[-20:], 1.0, atol=0.01)


def test_speech_moves_the_rate_change_into_the_pause():
    rows = np.arange(300)
    cols = rows + np.where(rows < 150, 0, 6)  # the picture runs 60 ms ahead after row 150
    speech = np.ones(300)
    speech[135:165] = 0.0  # a 300 ms pause around the change
    plain = path_to_timemap(_path(rows, cols))
    aware = path_to_timemap(_path(rows, cols), dub_speech=speech)

    def share_in_pause(tm):
        bend = np.abs(tm.stretch() - 1.0)
        return bend[135:164].sum() / bend.sum()

    assert share_in_pause(aware) > 0.9
    assert share_in_pause(aware) > share_in_pause(plain)
    # Both still reach the new offset once the speech resumes.
    assert aware.pic_t[200] * PATH_RATE - 200 == pytest.approx(6.0, abs=0.3)


def test_single_row_path():
    tm = path_to_timemap(_path([0], [7]))
    np.testing.assert_allclose(tm.to_picture([0.0, 1.0]), [0.07, 1.07])


def test_path_to_timemap_rejects_bad_options():
    path = _path([0, 1, 2], [0, 1, 2])
    with pytest.raises(ParameterError):
        path_to_timemap(path, constraints=PathConstraints(min_slope=1.2))
    with pytest.raises(ParameterError):
        path_to_timemap(path, dub_speech=np.ones(5))


# ---------------------------------------------------------------------------------------------
# pauses


def _squeezed_pause_path():
    """Two words at slope 1 around a 30-row pause squeezed onto one picture column."""
    rows = np.arange(230)
    cols = np.where(rows < 100, 20 + rows, np.where(rows < 130, 120, rows - 9))
    pause = (rows >= 100) & (rows < 130)
    return _path(rows, cols), cols.astype(float), pause


def test_squeezed_pause_keeps_the_words_straight():
    path, cols, pause = _squeezed_pause_path()
    speech = np.where(pause, 0.0, 1.0)
    tm = path_to_timemap(path, dub_speech=speech, constraints=PathConstraints(pause_rows=pause))
    s = tm.stretch()
    assert (np.diff(tm.pic_t) > 0).all()
    assert s.min() >= 0.05 - 1e-12
    assert s[100:129].mean() < 0.2  # the pause is squeezed
    # the word on each side of it, right up to the pause, keeps its own rate
    np.testing.assert_allclose(s[:99], 1.0, atol=0.05)
    np.testing.assert_allclose(s[130:], 1.0, atol=0.05)
    residual = tm.pic_t * PATH_RATE - cols
    assert np.abs(residual[~pause]).max() <= 1.5
    # Without the mask the slope limit spreads the squeeze over the words.
    plain = path_to_timemap(path, dub_speech=speech)
    assert np.abs((plain.pic_t * PATH_RATE - cols)[~pause]).max() > 5


def test_stretched_pause_lets_the_picture_run_ahead():
    # 3 pause rows, each matched to 10 picture columns: the picture advances 30 frames.
    rows = np.concatenate([np.arange(100), np.repeat(np.arange(100, 103), 10), np.arange(103, 200)])
    cols = np.concatenate([np.arange(100), 100 + np.arange(30), np.arange(130, 227)])
    pause = np.zeros(200, dtype=bool)
    pause[100:103] = True
    tm = path_to_timemap(_path(rows, cols), constraints=PathConstraints(pause_rows=pause))
    s = tm.stretch()
    assert s.max() <= 8.0 + 1e-12 and (np.diff(tm.pic_t) > 0).all()
    truth = np.bincount(rows, weights=cols) / np.bincount(rows)
    residual = tm.pic_t * PATH_RATE - truth
    assert np.abs(residual[~pause]).max() <= 2.0
    np.testing.assert_allclose(s[:90], 1.0, atol=0.05)
    np.testing.assert_allclose(s[115:], 1.0, atol=0.05)
    assert s[97:106].max() > 5.0


def test_pause_options_are_checked():
    path, _, pause = _squeezed_pause_path()
    with pytest.raises(ParameterError):
        path_to_timemap(path, constraints=PathConstraints(pause_rows=pause[:-1]))
    with pytest.raises(ParameterError):
        path_to_timemap(path, constraints=PathConstraints(pause_rows=pause, pause_min_slope=0.0))
    with pytest.raises(ParameterError):
        path_to_timemap(path, constraints=PathConstraints(pause_rows=pause, pause_max_slope=1.2))


# ---------------------------------------------------------------------------------------------
# soft rows (word tails)


def _squeezed_tail_path():
    """Slope 1, then rows 100..139 squeezed to slope 1/2 (a word tail), then slope 1 again."""
    rows = np.arange(240)
    cols = np.where(rows < 100, rows, np.where(rows < 140, 100 + (rows - 100) // 2, rows - 20))
    soft = (rows >= 100) & (rows < 140)
    return _path(rows, cols), cols.astype(float), soft


def test_soft_rows_may_be_squeezed_below_min_stretch():
    path, cols, soft = _squeezed_tail_path()
    tm = path_to_timemap(path, constraints=PathConstraints(soft_rows=soft, soft_min_slope=0.5))
    pic = tm.pic_t * PATH_RATE
    assert np.abs(pic - cols).max() <= 2.0  # the smoother rounds the corners
    stretch = tm.stretch()
    assert stretch[(~soft[:-1]) & (~soft[1:])].min() >= 2 / 3 - 1e-9  # elsewhere the usual limit
    assert stretch.min() >= 0.5 - 1e-9
    # without them the squeeze is clipped at 2/3: the words around the tail cannot both fit
    plain = path_to_timemap(path)
    assert np.abs(plain.pic_t * PATH_RATE - cols).max() >= 3


def test_soft_options_are_checked():
    path, _, soft = _squeezed_tail_path()
    with pytest.raises(ParameterError, match="soft_rows must be"):
        path_to_timemap(path, constraints=PathConstraints(soft_rows=soft[:-1], soft_min_slope=0.5))
    with pytest.raises(ParameterError, match="soft_min_slope"):
        path_to_timemap(path, constraints=PathConstraints(soft_rows=soft))
    with pytest.raises(ParameterError, match="soft_min_slope"):
        path_to_timemap(path, constraints=PathConstraints(soft_rows=soft, soft_min_slope=0.9))


# ---------------------------------------------------------------------------------------------
# fixed rows (protected spans) and anchors (sync points)


def test_fixed_segments_have_slope_exactly_1():
    # the path squeezes rows 100..139 to slope 1/2; rows 90..150 are protected
    path, cols, soft = _squeezed_tail_path()
    fixed = np.zeros(240, dtype=bool)
    fixed[90:151] = True
    c = PathConstraints(soft_rows=soft, soft_min_slope=0.5, fixed_rows=fixed)
    tm = path_to_timemap(path, constraints=c, dub_speech=np.ones(240))
    s = tm.stretch()
    np.testing.assert_allclose(s[90:150], 1.0, rtol=0, atol=1e-9)
    assert s.min() >= 0.5 - 1e-9 and s.max() <= 1.5 + 1e-9 and (np.diff(tm.pic_t) > 0).all()
    # away from the span the words keep the path's rate; the squeeze the span may not take goes
    # to its edges, and the least-squares offset balances the rest around the path
    np.testing.assert_allclose(s[:40], 1.0, atol=0.03)
    np.testing.assert_allclose(s[200:], 1.0, atol=0.03)
    assert abs(np.mean(tm.pic_t * PATH_RATE - cols)) < 1e-6
    free = path_to_timemap(path, constraints=PathConstraints(soft_rows=soft, soft_min_slope=0.5))
    assert np.abs(free.stretch()[90:150] - 1.0).max() > 0.3  # unprotected, the span is squeezed


@pytest.mark.parametrize("dub_s", [1.0, 1.234, 1.255])
def test_map_passes_through_an_anchor(dub_s):
    # a path 30 frames late that ramps 15 frames earlier (slope 2/3) towards dub_s and back (the
    # solver's answer to a sync point there); the anchor asks for 1.5 frames more, on or between rows
    rows = np.arange(300)
    bump = np.clip(15 - np.abs(rows - dub_s * PATH_RATE) / 3, 0, None)
    path = _path(rows, np.round(rows + 30 - bump))
    pic_s = dub_s + (30 - 15 - 1.5) / PATH_RATE - 0.5
    tm = path_to_timemap(path, pic_origin=-0.5, anchors=[(dub_s, pic_s)], dub_speech=np.ones(300))
    assert float(tm.to_picture(dub_s)) == pytest.approx(pic_s, abs=1e-9)
    s = tm.stretch()
    assert s.min() >= 2 / 3 - 1e-9 and s.max() <= 1.5 + 1e-9 and (np.diff(tm.pic_t) > 0).all()
    # away from the ramp the map is the path's, within a frame
    far = np.abs(rows / PATH_RATE - dub_s) > 0.75  # the ramp spans 0.45 s, the smoother ~0.2 s more
    np.testing.assert_allclose((tm.pic_t * PATH_RATE + 50)[far], (rows + 30)[far], atol=1.0)


def test_two_anchors_are_both_held_exactly():
    # words at slope 1 around a pause stretched 2.5x (40 dub rows over 100 columns); the editor's
    # anchors sit a frame and a half frame off the path, one on each side of the pause
    rows = np.arange(400)
    pause = (rows >= 180) & (rows < 220)
    cols = np.where(rows < 180, rows, np.where(rows < 220, 180 + 2.5 * (rows - 180), rows + 60))
    c = PathConstraints(pause_rows=pause)
    anchors = [(1.0, 1.01), (3.005, 3.61)]
    tm = path_to_timemap(_path(rows, np.round(cols)), constraints=c, anchors=anchors,
                         dub_speech=np.where(pause, 0.0, 1.0))
    np.testing.assert_allclose(tm.to_picture([1.0, 3.005]), [1.01, 3.61], atol=1e-9)
    s = tm.stretch()
    speech = ~(pause[:-1] | pause[1:])
    assert s[speech].min() >= 2 / 3 - 1e-9 and s[speech].max() <= 1.5 + 1e-9 and s.max() <= 8 + 1e-9
    np.testing.assert_allclose((tm.pic_t * PATH_RATE)[~pause], cols[~pause], atol=2.0)


def test_anchored_shift_bends_only_the_pauses():
    pause = np.zeros(500, dtype=bool)
    pause[200:240] = True
    fixed = np.zeros(500, dtype=bool)
    fixed[300:350] = True
    c = PathConstraints(pause_rows=pause, fixed_rows=fixed)
    # 0.2 s later at 1 s, then 0.1 s more by 4 s: the pause (0.4 s of dub) must take 0.1 s
    tm = anchored_shift(500, [(1.0, 1.2), (4.0, 4.3)], constraints=c, rate=PATH_RATE)
    np.testing.assert_allclose(tm.to_picture([1.0, 4.0, 0.0, 4.99]), [1.2, 4.3, 0.2, 5.29], atol=1e-9)
    s = tm.stretch()
    touches = pause[:-1] | pause[1:]
    np.testing.assert_allclose(s[~touches], 1.0, atol=1e-9)  # words at their own speed
    np.testing.assert_allclose(s[touches].mean(), 1 + 0.1 / 0.41, atol=1e-9)  # 41 pause segments
    # the pause cannot take 3 s more: then the words give too, the protected ones never
    tm = anchored_shift(500, [(1.0, 1.2), (4.0, 7.2 + 3.2)], constraints=c, rate=PATH_RATE)
    s = tm.stretch()
    np.testing.assert_allclose(s[300:349], 1.0, atol=1e-9)
    assert s[~touches].max() == pytest.approx(1.5) and s.max() == pytest.approx(8.0)
    assert float(tm.to_picture(4.0)) < 10.4  # held as far as the limits allow


def test_anchors_are_checked():
    path = _path(np.arange(100), np.arange(100))
    with pytest.raises(ParameterError, match="outside the path's dub rows"):
        path_to_timemap(path, anchors=[(1.5, 1.0)])
    with pytest.raises(ParameterError, match="increase on both axes"):
        path_to_timemap(path, anchors=[(0.2, 0.5), (0.5, 0.4)])
    with pytest.raises(ParameterError, match="increase on both axes"):
        path_to_timemap(path, anchors=[(0.205, 0.2), (0.215, 0.3)])  # both need row 21
    with pytest.raises(ParameterError, match="finite"):
        path_to_timemap(path, anchors=[(0.2, float("nan"))])
    with pytest.raises(ParameterError, match="at least one anchor"):
        anchored_shift(100, [])


@pytest.mark.parametrize("n", [3, 4, 7, 200])
def test_solve_pentadiagonal_matches_a_dense_solve(n):
    rng = np.random.default_rng(n)
    w = rng.uniform(0, 1e4, n - 2) * (rng.random(n - 2) < 0.7)
    d0, d1, d2 = np.zeros(n), np.zeros(n - 1), np.zeros(n - 2)
    d0[:-2] += w
    d0[1:-1] += 4 * w
    d0[2:] += w
    d1[:-1] -= 2 * w
    d1[1:] -= 2 * w
    d2 += w
    d0 += rng.uniform(0.5, 1e4, n)  # the data weights make it positive definite
    a = np.diag(d0) + np.diag(d1, 1) + np.diag(d1, -1) + np.diag(d2, 2) + np.diag(d2, -2)
    b = rng.normal(size=n)
    np.testing.assert_allclose(solve_pentadiagonal(d0, d1, d2, b), np.linalg.solve(a, b),
                               rtol=1e-9, atol=1e-12)


def test_solve_pentadiagonal_refuses_an_indefinite_matrix():
    with pytest.raises(np.linalg.LinAlgError):
        solve_pentadiagonal(np.array([1.0, 1.0, 1.0]), np.array([2.0, 0.0]), np.array([0.0]),
                            np.ones(3))
