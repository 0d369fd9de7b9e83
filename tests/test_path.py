"""The path solver: hand-computed cases, a planted path, reference equality, exhaustive search,
constraints."""

import math
from fractions import Fraction

import numpy as np
import pytest

from dubalign.errors import AlignmentError, ParameterError
from dubalign.path import (
    _SWEEP_STEPS,
    PathConstraints,
    WarpPath,
    _sweep_across,
    band_around,
    dense_band,
    find_pauses,
    solve_coarse_to_fine,
    solve_path,
    solve_path_reference,
    step_pattern,
)


def _full(costs):
    costs = np.asarray(costs, dtype=np.float32)
    return costs, np.zeros(costs.shape[0], dtype=np.int64)


def _cells(path: WarpPath) -> list[tuple[int, int]]:
    return list(zip(path.dub_frames.tolist(), path.pic_frames.tolist(), strict=True))


def _band_of(full: np.ndarray, col_start: np.ndarray, width: int) -> np.ndarray:
    """Cut a band out of a full matrix; columns past its right edge are +inf."""
    padded = np.pad(full, ((0, 0), (0, width)), constant_values=np.inf)
    idx = col_start[:, None] + np.arange(width)
    return np.take_along_axis(padded, idx, axis=1).astype(np.float32)


def _planted(rng, n_dub, n_pic, offset):
    """Noise in [0.5, 1] with a zero-cost valley along a smooth curve of slope 0.8 .. 1.25."""
    i = np.arange(n_dub)
    curve = offset + i + 12.0 * np.sin(2 * np.pi * i / n_dub)  # slope 1 +- 0.25 at n_dub=300
    truth = np.round(curve).astype(np.int64)
    costs = rng.uniform(0.5, 1.0, size=(n_dub, n_pic))
    costs[i, truth] = 0.0
    return costs.astype(np.float32), curve


def _row_mean(path: WarpPath) -> np.ndarray:
    return np.bincount(path.dub_frames, weights=path.pic_frames) / np.bincount(path.dub_frames)


# ---------------------------------------------------------------------------------------------
# step pattern


def test_default_step_pattern_is_diagonal_and_2_3_steps():
    pattern = step_pattern()
    steps = list(zip(pattern.rows.tolist(), pattern.cols.tolist(), strict=True))
    assert steps == [(1, 1), (2, 3), (3, 2)]
    assert pattern.slope_range == pytest.approx((2 / 3, 1.5))
    # (2, 3): row +1 covers columns +1..+2, row +2 column +3
    assert pattern.cell_lo[1, :2].tolist() == [1, 3]
    assert pattern.cell_hi[1, :2].tolist() == [2, 3]
    # (3, 2): rows +1, +2 on column +1, row +3 on column +2
    assert pattern.cell_lo[2].tolist() == [1, 1, 2]
    assert pattern.cell_hi[2].tolist() == [1, 1, 2]
    assert pattern.penalty.tolist() == [0.0, 0.05, 0.05]


def test_step_pattern_rejects_impossible_limits():
    with pytest.raises(ParameterError):
        step_pattern(min_slope=1.6, max_slope=1.5)
    with pytest.raises(ParameterError):
        step_pattern(min_slope=1.1, max_slope=1.2)  # no step of <= 3 frames in that range
    with pytest.raises(ParameterError):
        step_pattern(jump_penalty=-1.0)


# ---------------------------------------------------------------------------------------------
# hand-computed cases

HAND_4X5 = [
    [0, 9, 9, 9, 9],
    [9, 1, 0, 9, 9],
    [9, 9, 9, 0, 9],
    [9, 9, 9, 9, 0],
]


@pytest.mark.parametrize("solver", [solve_path, solve_path_reference])
def test_hand_4x5_takes_the_2_3_step(solver):
    # From (0, 0) to row 3: diagonal 1+9+9=19; (3,2) 1+9+9+pen; (1,1)+(2,3) 1+4.5+0+pen;
    # (2,3)+(1,1) mean(1,0)+0+0+pen = 0.55 wins.
    path = solver(*_full(HAND_4X5), start_cols=(0, 0), end_cols=None, constraints=PathConstraints(jump_penalty=0.05))
    assert _cells(path) == [(0, 0), (1, 1), (1, 2), (2, 3), (3, 4)]
    assert path.cost == pytest.approx(0.55 / 4)


@pytest.mark.parametrize("solver", [solve_path, solve_path_reference])
def test_hand_4x5_end_range_and_penalty(solver):
    path = solver(*_full(HAND_4X5), start_cols=(0, 0), end_cols=(3, 3))
    assert _cells(path) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert path.cost == pytest.approx(19 / 4)
    # A large penalty makes any rate change dearer than the diagonal's 19.
    path = solver(*_full(HAND_4X5), start_cols=(0, 0), constraints=PathConstraints(jump_penalty=100.0))
    assert _cells(path) == [(0, 0), (1, 1), (2, 2), (3, 3)]


@pytest.mark.parametrize("solver", [solve_path, solve_path_reference])
def test_hand_3x4_open_start(solver):
    costs = [[1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]]
    path = solver(*_full(costs), start_cols=(0, 1))
    assert _cells(path) == [(0, 1), (1, 2), (2, 3)]
    assert path.cost == 0.0
    # Forced to start in column 0: diagonal 3 vs (2,3) step 1 + 0.5 + 0 + 0.05.
    path = solver(*_full(costs), start_cols=(0, 0))
    assert _cells(path) == [(0, 0), (1, 1), (1, 2), (2, 3)]
    assert path.cost == pytest.approx(1.55 / 3)


def test_single_row():
    path = solve_path(*_full([[3, 1, 2]]), start_cols=(0, 2))
    assert _cells(path) == [(0, 1)]
    assert path.cost == 1.0


def test_flat_costs_stay_diagonal():
    path = solve_path(*_full(np.ones((50, 80))), start_cols=(10, 10))
    assert _cells(path) == [(i, 10 + i) for i in range(50)]


# ---------------------------------------------------------------------------------------------
# reference equality


def _random_case(rng):
    n = int(rng.integers(1, 16))
    width = int(rng.integers(1, 12))
    col_start = np.concatenate([[0], np.cumsum(rng.integers(0, 3, size=n - 1))])
    costs = rng.uniform(0, 1, size=(n, width)).astype(np.float32)
    if rng.uniform() < 0.3:  # small integers: many exact ties, so tie-breaking is compared too
        costs = np.floor(costs * 3)
    costs[rng.uniform(size=costs.shape) < 0.05] = np.inf
    s0 = int(rng.integers(0, width))
    start = (s0, s0 + int(rng.integers(0, 4)))
    end = None
    if rng.uniform() < 0.5:
        e0 = int(col_start[-1] + rng.integers(-2, width))
        end = (e0, e0 + int(rng.integers(0, 6)))
    options = [
        {},
        {"jump_penalty": 0.0},
        {"max_step": 4, "jump_penalty": 0.2},
        {"min_slope": 0.5, "max_slope": 2.0},
    ][int(rng.integers(0, 4))]
    return costs, col_start, dict(start_cols=start, end_cols=end), options


def _solve_both(costs, col_start, ends, options):
    """Solve with solve_path and the reference; assert they agree exactly. None when unsolvable (both raise)."""
    constraints = PathConstraints(**options)
    try:
        expected = solve_path_reference(costs, col_start, **ends, constraints=constraints)
    except AlignmentError:
        with pytest.raises(AlignmentError):
            solve_path(costs, col_start, **ends, constraints=constraints)
        return None
    got = solve_path(costs, col_start, **ends, constraints=constraints)
    np.testing.assert_array_equal(got.dub_frames, expected.dub_frames)
    np.testing.assert_array_equal(got.pic_frames, expected.pic_frames)
    assert got.cost == expected.cost
    return got


def test_solver_matches_reference_on_random_bands(rng):
    n_solved = 0
    for _ in range(400):
        costs, col_start, ends, options = _random_case(rng)
        n_solved += _solve_both(costs, col_start, ends, options) is not None
    assert n_solved > 200  # the comparison must mostly run on solvable cases


# ---------------------------------------------------------------------------------------------
# exhaustive search: every monotone path on a tiny matrix, charged as the module docstring says


def _brute_force(full, start_cols, end_cols, options, pause, soft, fixed):
    """Cost (row costs plus penalties) and cells of every path the constraints allow.

    Written from the module docstring alone: the steps are the coprime ``(a, b)`` up to
    ``max_step`` within the slope limits, their cells the rounded straight line; soft rows, fixed
    rows and pause moves as documented. Returns a list of ``(total, cells)``.
    """
    n, n_cols = full.shape
    min_slope, max_slope = options["min_slope"], options["max_slope"]
    lowest = options.get("soft_min_slope", min_slope)
    max_step, jump, pause_penalty, pause_weight = (
        options["max_step"], options["jump_penalty"], options["pause_penalty"], options["pause_weight"]
    )
    pause = pause & ~fixed
    steps = [
        (a, b)
        for a in range(1, max_step + 1)
        for b in range(1, max_step + 1)
        if math.gcd(a, b) == 1 and lowest - 1e-9 <= b / a <= max_slope + 1e-9
    ]

    def step_cells(i, j, a, b):
        ends = [math.floor(Fraction(k * b, a) + Fraction(1, 2)) for k in range(a + 1)]
        return [
            (i + k, j + c)
            for k in range(1, a + 1)
            for c in (range(ends[k - 1] + 1, ends[k] + 1) if ends[k] > ends[k - 1] else [ends[k]])
        ]

    found = []

    def extend(i, j, total, cells):
        if not np.isfinite(total):  # through a forbidden cell
            return
        if i == n - 1 and (end_cols is None or end_cols[0] <= j <= end_cols[1]):
            found.append((total, cells))
        for a, b in steps:
            if i + a >= n or j + b >= n_cols:
                continue
            rows = range(i + 1, i + a + 1)
            if b / a < min_slope - 1e-9 and not all(soft[r] for r in rows):
                continue
            if (a, b) != (1, 1) and any(fixed[r - 1] and fixed[r] for r in rows):
                continue
            new = step_cells(i, j, a, b)
            charge = sum(np.mean([full[r, c] for r, c in new if r == row]) for row in rows)
            extend(i + a, j + b, total + charge + (jump if (a, b) != (1, 1) else 0.0), cells + new)
        if i + 1 < n and pause[i] and pause[i + 1]:  # (1, 0): squeeze
            extend(i + 1, j, total + full[i + 1, j] + pause_penalty, cells + [(i + 1, j)])
        if j + 1 < n_cols and pause[i] and np.isfinite(full[i, j + 1]):  # (0, 1): stretch
            charge = pause_weight * max(full[i, j + 1], 0.0) + pause_penalty
            extend(i, j + 1, total + charge, cells + [(i, j + 1)])

    for j in range(start_cols[0], start_cols[1] + 1):
        extend(0, j, float(full[0, j]), [(0, j)])
    return found


def test_solver_matches_exhaustive_search(rng):
    n_solved = n_pause_moves = n_soft_changed = 0
    for _ in range(200):
        n, n_cols = int(rng.integers(1, 6)), int(rng.integers(1, 8))
        full = rng.uniform(-0.5, 1.0, size=(n, n_cols)).astype(np.float32)  # no exact ties
        full[rng.uniform(size=full.shape) < 0.05] = np.inf
        options = dict(
            [
                dict(min_slope=2 / 3, max_slope=1.5, max_step=3),
                dict(min_slope=0.5, max_slope=2.0, max_step=3),
                dict(min_slope=0.75, max_slope=1.5, max_step=4),
            ][int(rng.integers(0, 3))],
            jump_penalty=float(rng.choice([0.0, 0.05, 0.3])),
            pause_penalty=float(rng.choice([0.0, 0.05])),
            pause_weight=float(rng.choice([0.0, 0.1, 1.0])),
        )
        pause, soft, fixed = (rng.uniform(size=n) < p for p in (0.5, 0.8, 0.3))
        masks = dict(pause_rows=pause, soft_rows=soft, fixed_rows=fixed)
        options["soft_min_slope"] = 0.5 * options["min_slope"]
        s0 = int(rng.integers(0, n_cols))
        start = (s0, min(s0 + int(rng.integers(0, 3)), n_cols - 1))
        end = None if rng.uniform() < 0.5 else (int(rng.integers(0, n_cols)), n_cols - 1)
        found = _brute_force(full.astype(np.float64), start, end, options, pause, soft, fixed)
        constraints = PathConstraints(**options, **masks)
        if not found:
            with pytest.raises(AlignmentError):
                solve_path(*_full(full), start_cols=start, end_cols=end, constraints=constraints)
            continue
        n_solved += 1
        found.sort(key=lambda tc: tc[0])
        best, cells = found[0]
        got = solve_path(*_full(full), start_cols=start, end_cols=end, constraints=constraints)
        assert got.cost * n == pytest.approx(best, rel=1e-9, abs=1e-9)
        if len(found) == 1 or found[1][0] - best > 1e-6:  # a unique optimum: the same cells
            assert _cells(got) == cells
        moves = set(zip(np.diff(got.dub_frames).tolist(), np.diff(got.pic_frames).tolist(), strict=True))
        n_pause_moves += (1, 0) in moves or (0, 1) in moves
        hard = _brute_force(full.astype(np.float64), start, end, options, pause, np.zeros(n, dtype=bool), fixed)
        n_soft_changed += not hard or min(total for total, _ in hard) != best
    assert n_solved > 80
    assert n_pause_moves > 10 and n_soft_changed > 5  # pause moves and soft steps were exercised


# ---------------------------------------------------------------------------------------------
# planted path, constraints


def test_planted_path_is_recovered(rng):
    costs, curve = _planted(rng, 300, 380, offset=30.0)
    col_start, width = dense_band(300, 380, start_cols=(0, 60))
    path = solve_path(_band_of(costs, col_start, width), col_start, start_cols=(0, 60))
    assert np.abs(_row_mean(path) - np.round(curve)).max() <= 1.0
    assert path.dub_frames[0] == 0 and path.dub_frames[-1] == 299


def test_dense_band_matches_full_matrix(rng):
    costs = rng.uniform(size=(60, 90)).astype(np.float32)
    kwargs = dict(start_cols=(5, 12), end_cols=(60, 80))
    full = solve_path(*_full(costs), **kwargs)
    col_start, width = dense_band(60, 90, start_cols=(5, 12), end_cols=(60, 80))
    assert width < 90
    assert (np.diff(col_start) >= 0).all() and col_start[-1] + width <= 90
    banded = solve_path(_band_of(costs, col_start, width), col_start, **kwargs)
    assert _cells(banded) == _cells(full)
    assert banded.cost == full.cost


@pytest.mark.parametrize("options", [{}, {"max_step": 4}, {"min_slope": 0.8, "max_slope": 1.25}])
def test_slope_limits_hold_on_every_run(rng, options):
    # No penalty and pure noise: the path changes rate as often as it can.
    costs = rng.uniform(size=(200, 260)).astype(np.float32)
    path = solve_path(*_full(costs), start_cols=(0, 40), constraints=PathConstraints(jump_penalty=0.0, **options))
    lo, hi = step_pattern(**options).slope_range
    d_row = np.diff(path.dub_frames)
    d_col = np.diff(path.pic_frames)
    assert set(zip(d_row.tolist(), d_col.tolist(), strict=True)) <= {(0, 1), (1, 0), (1, 1)}
    assert np.arange(200).tolist() == np.unique(path.dub_frames).tolist()
    # Every cell is within 0.5 column of the line through the step vertices (up to 2/3 with
    # max_step=4), so any two rows obey the slope limits up to that rounding.
    tol = 1.0 if options.get("max_step", 3) == 3 else 4 / 3
    first = np.array([path.pic_frames[path.dub_frames == i].min() for i in range(200)])
    last = np.array([path.pic_frames[path.dub_frames == i].max() for i in range(200)])
    span = np.arange(200)[None, :] - np.arange(200)[:, None]  # k - i
    later = span > 0
    assert ((last[None, :] - first[:, None])[later] <= hi * span[later] + tol + 1e-9).all()
    assert ((first[None, :] - last[:, None])[later] >= lo * span[later] - tol - 1e-9).all()
    if options == {}:
        moves = list(zip(d_row.tolist(), d_col.tolist(), strict=True))
        assert ((0, 1), (0, 1)) not in zip(moves, moves[1:], strict=False)
        assert ((1, 0), (1, 0)) not in zip(moves, moves[1:], strict=False)


# ---------------------------------------------------------------------------------------------
# errors


def test_unreachable_end_raises():
    costs = np.zeros((10, 40), dtype=np.float32)
    with pytest.raises(AlignmentError, match="stretch limits"):
        solve_path(*_full(costs), start_cols=(0, 0), end_cols=(30, 39))  # slope 30/9 > 1.5
    with pytest.raises(AlignmentError):
        solve_path_reference(*_full(costs), start_cols=(0, 0), end_cols=(30, 39))


def test_all_inf_band_raises():
    costs = np.full((5, 8), np.inf, dtype=np.float32)
    with pytest.raises(AlignmentError):
        solve_path(*_full(costs), start_cols=(0, 7))
    costs[0] = 0.0  # a start exists but nothing after it
    with pytest.raises(AlignmentError, match="stretch limits"):
        solve_path(*_full(costs), start_cols=(0, 7))


def test_start_outside_band_raises():
    costs = np.zeros((5, 4), dtype=np.float32)
    col_start = np.full(5, 10)
    with pytest.raises(AlignmentError, match="start"):
        solve_path(costs, col_start, start_cols=(0, 5))


def test_bad_inputs_raise_parameter_error():
    costs, col_start = _full(np.zeros((4, 4)))
    bad = costs.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ParameterError):
        solve_path(bad, col_start, start_cols=(0, 0))
    with pytest.raises(ParameterError):
        solve_path(costs, np.array([0, 2, 1, 3]), start_cols=(0, 0))
    with pytest.raises(ParameterError):
        solve_path(costs, col_start[:3], start_cols=(0, 0))
    with pytest.raises(ParameterError):
        solve_path(costs, col_start, start_cols=(2, 1))
    with pytest.raises(ParameterError):
        solve_path(costs, col_start, start_cols=(0, 0), constraints=PathConstraints(min_slope=2.0, max_slope=1.0))


def test_dense_band_raises_for_incompatible_lengths():
    with pytest.raises(AlignmentError):
        dense_band(100, 300, start_cols=(0, 0), end_cols=(250, 299))


# ---------------------------------------------------------------------------------------------
# bands and coarse-to-fine


def test_band_around_contains_the_scaled_path(rng):
    costs, curve = _planted(rng, 300, 380, offset=30.0)
    col_start, width = band_around(
        (np.arange(75), np.round((curve[::4] + 1.5) / 4).astype(np.int64)),
        300,
        380,
        radius=8,
        factor=4,
    )
    assert width == 17
    assert (np.diff(col_start) >= 0).all()
    assert col_start.min() >= 0 and col_start.max() + width <= 380
    truth = np.round(curve)
    assert ((truth >= col_start) & (truth < col_start + width)).all()


def _pooling_cost_fn(full):
    calls = []

    def cost_fn(col_start, width, factor):
        calls.append(factor)
        n_dub, n_pic = full.shape
        rows = -(-n_dub // factor)
        cols = -(-n_pic // factor)
        padded = np.full((rows * factor, cols * factor), np.nan, dtype=np.float64)
        padded[:n_dub, :n_pic] = full
        pooled = np.nanmean(padded.reshape(rows, factor, cols, factor), axis=(1, 3))
        return _band_of(pooled, np.asarray(col_start), width)

    return cost_fn, calls


def test_coarse_to_fine_recovers_planted_path(rng):
    costs, curve = _planted(rng, 300, 380, offset=30.0)
    cost_fn, calls = _pooling_cost_fn(costs)
    path = solve_coarse_to_fine(
        cost_fn, 300, 380, start_cols=(0, 60), factor=4, radius=10, direct_max_cells=0
    )
    assert calls == [4, 1]
    assert np.abs(_row_mean(path) - np.round(curve)).max() <= 1.0


def test_coarse_to_fine_solves_small_inputs_directly(rng):
    costs, _ = _planted(rng, 300, 380, offset=30.0)
    cost_fn, calls = _pooling_cost_fn(costs)
    path = solve_coarse_to_fine(cost_fn, 300, 380, start_cols=(0, 60), end_cols=(300, 379))
    assert calls == [1]
    direct = solve_path(*_full(costs), start_cols=(0, 60), end_cols=(300, 379))
    assert _cells(path) == _cells(direct)


def test_corridor_limits_the_dense_band():
    col_start, width = dense_band(3000, 3100, start_cols=(20, 60), corridor=(20, 60))
    assert width == 41
    np.testing.assert_array_equal(col_start[:2950], 20 + np.arange(2950))
    # Without the corridor the band would widen with (max_slope - min_slope) * n_dub.
    assert dense_band(3000, 3100, start_cols=(20, 60))[1] > 1000


def test_coarse_to_fine_with_corridor(rng):
    costs, curve = _planted(rng, 300, 380, offset=30.0)
    cost_fn, calls = _pooling_cost_fn(costs)
    path = solve_coarse_to_fine(
        cost_fn, 300, 380, start_cols=(0, 60), corridor=(0, 60), factor=4, direct_max_cells=0
    )
    assert calls == [4, 1]
    assert np.abs(_row_mean(path) - np.round(curve)).max() <= 1.0


# ---------------------------------------------------------------------------------------------
# pauses


@pytest.mark.parametrize("solver", [solve_path, solve_path_reference])
def test_hand_pause_is_squeezed_with_1_0_moves(solver):
    costs = [[0, 9, 9], [9, 0, 9], [9, 0, 9], [9, 0, 9], [9, 9, 0]]
    pause = np.array([False, True, True, True, False])
    path = solver(*_full(costs), start_cols=(0, 0), constraints=PathConstraints(pause_rows=pause, pause_penalty=0.05))
    assert _cells(path) == [(0, 0), (1, 1), (2, 1), (3, 1), (4, 2)]
    assert path.cost == pytest.approx(2 * 0.05 / 5)  # every row on a zero cell, two (1, 0) moves


@pytest.mark.parametrize("solver", [solve_path, solve_path_reference])
def test_hand_pause_is_stretched_with_0_1_moves(solver):
    costs = [[0, 9, 9, 9, 9], [9, 0, 1, -3, 9], [9, 9, 9, 9, 0]]
    pause = np.array([False, True, False])
    constraints = PathConstraints(pause_rows=pause, pause_penalty=0.05, pause_weight=0.1)
    path = solver(*_full(costs), start_cols=(0, 0), constraints=constraints)
    assert _cells(path) == [(0, 0), (1, 1), (1, 2), (1, 3), (2, 4)]
    # Row 1 is charged once (its first cell); the (0, 1) moves cost 0.1 * 1 + 0.05 and
    # 0.1 * max(-3, 0) + 0.05: a negative cell earns nothing.
    assert path.cost == pytest.approx((0.15 + 0.05) / 3)


def test_squeeze_needs_two_pause_rows():
    costs = [[0, 9, 9, 9], [9, 0, 9, 9], [9, 0, 9, 9], [9, 0, 9, 9], [9, 9, 0, 9]]
    plain = solve_path(*_full(costs), start_cols=(0, 0))
    # A lone pause row admits no (1, 0) move, and (0, 1) moves do not help here.
    lone_pause = PathConstraints(pause_rows=np.array([0, 0, 1, 0, 0], dtype=bool))
    lone = solve_path(*_full(costs), start_cols=(0, 0), constraints=lone_pause)
    assert _cells(lone) == _cells(plain) and lone.cost == plain.cost
    run_pause = PathConstraints(pause_rows=np.array([0, 1, 1, 1, 0], dtype=bool))
    run = solve_path(*_full(costs), start_cols=(0, 0), constraints=run_pause)
    assert run.cost < plain.cost


@pytest.mark.parametrize("fill", [1.0, -1.0, 0.0])
def test_flat_costs_stay_diagonal_through_pauses(fill):
    pause = np.zeros(50, dtype=bool)
    pause[10:40] = True
    costs = np.full((50, 80), fill)
    path = solve_path(*_full(costs), start_cols=(10, 10), constraints=PathConstraints(pause_rows=pause))
    assert _cells(path) == [(i, 10 + i) for i in range(50)]


def _planted_pauses(rng):
    """Words at slope 1 around a pause squeezed to nothing and a 3-row pause stretched 10x.

    Returns costs (200, 240), the pause mask, and the mean column of each row on the truth.
    """
    i = np.arange(200)
    pause = np.zeros(200, dtype=bool)
    pause[60:90] = True  # 30 rows on one column
    pause[130:133] = True  # 3 rows over 30 columns
    truth = np.select(
        [i < 60, i < 90, i < 130, i < 133],
        [20 + i, np.full(200, 80), 81 + (i - 90), 125.5 + 10 * (i - 130)],
        151 + (i - 133),
    ).astype(np.float64)
    costs = rng.uniform(0.5, 1.0, size=(200, 240))
    for r in range(200):
        if pause[r] and r >= 130:
            start = 121 + 10 * (r - 130)
            costs[r, start : start + 10] = 0.0
        else:
            costs[r, int(truth[r])] = 0.0
    return costs.astype(np.float32), pause, truth


def test_planted_pauses_are_recovered_only_with_pause_rows(rng):
    costs, pause, truth = _planted_pauses(rng)
    with_pauses = PathConstraints(pause_rows=pause)
    col_start, width = dense_band(200, 240, start_cols=(0, 40), constraints=with_pauses)
    path = solve_path(_band_of(costs, col_start, width), col_start, start_cols=(0, 40), constraints=with_pauses)
    assert np.abs(_row_mean(path) - truth).max() <= 1.0
    assert np.abs(_row_mean(path)[~pause] - truth[~pause]).max() <= 1.0
    # Without the mask the slope limits forbid both pauses: the words drift by many frames.
    col_start, width = dense_band(200, 240, start_cols=(0, 40))
    plain = solve_path(_band_of(costs, col_start, width), col_start, start_cols=(0, 40))
    assert np.abs(_row_mean(plain)[~pause] - truth[~pause]).max() > 10
    assert plain.cost > path.cost


def test_coarse_to_fine_follows_planted_pauses(rng):
    costs, pause, truth = _planted_pauses(rng)
    cost_fn, calls = _pooling_cost_fn(costs)
    path = solve_coarse_to_fine(
        cost_fn, 200, 240, start_cols=(0, 40), factor=4, radius=12, direct_max_cells=0,
        constraints=PathConstraints(pause_rows=pause),
    )
    assert calls == [4, 1]
    assert np.abs(_row_mean(path)[~pause] - truth[~pause]).max() <= 2.0


def _random_pauses(rng, n):
    pause = np.zeros(n, dtype=bool)
    for _ in range(int(rng.integers(0, 3))):
        a = int(rng.integers(0, n))
        pause[a : a + int(rng.integers(1, 8))] = True
    return pause


def test_solver_matches_reference_with_pauses(rng):
    n_solved = n_moves = 0
    for _ in range(400):
        costs, col_start, ends, options = _random_case(rng)
        if rng.uniform() < 0.3:
            costs = costs - 0.5  # negative cells: (0, 1) moves must not gain from them
        options["pause_rows"] = _random_pauses(rng, costs.shape[0])
        options["pause_penalty"] = float(rng.choice([0.0, 0.05, 0.3]))
        options["pause_weight"] = float(rng.choice([0.0, 0.1, 1.0]))
        got = _solve_both(costs, col_start, ends, options)
        if got is None:
            continue
        n_solved += 1
        moves = set(zip(np.diff(got.dub_frames).tolist(), np.diff(got.pic_frames).tolist(), strict=True))
        n_moves += (1, 0) in moves or (0, 1) in moves
    assert n_solved > 200
    assert n_moves > 20  # pause moves were actually exercised


def test_sweep_across_matches_the_sequential_sweep(rng):
    # runs of (0, 1) moves longer than _SWEEP_STEPS, exact ties and forbidden cells
    n_long = 0
    for _ in range(300):
        w = int(rng.integers(1, 120))
        acc = np.cumsum(rng.uniform(-0.2, 1.0, size=w)) + rng.choice([0.0, 5.0])
        if rng.uniform() < 0.3:
            acc = np.floor(acc * 4) / 4  # quarters and the penalties below: exact ties
        acc[rng.uniform(size=w) < 0.2] = np.inf
        extra = rng.choice([0.0, 0.05, 0.25], size=w) + rng.choice([0.0, 0.1], size=w) * rng.uniform(size=w)
        extra[rng.uniform(size=w) < 0.05] = np.inf
        expected, expected_back = acc.copy(), np.zeros(w, dtype=np.int8)
        for t in range(1, w):
            if expected[t - 1] + extra[t] < expected[t]:
                expected[t], expected_back[t] = expected[t - 1] + extra[t], 7
        got, back = acc.copy(), np.zeros(w, dtype=np.int8)
        _sweep_across(got, back, extra.copy(), 7)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(back, expected_back)
        runs = np.diff(np.concatenate([[0], expected_back == 7, [0]]).astype(int))
        n_long += (np.flatnonzero(runs == -1) - np.flatnonzero(runs == 1) > 2 * _SWEEP_STEPS).any()
    assert n_long > 20


def test_slope_limits_hold_in_speech_runs_with_pauses(rng):
    costs = rng.uniform(-1, 1, size=(200, 330)).astype(np.float32)
    pause = np.zeros(200, dtype=bool)
    pause[30:45] = pause[90:100] = pause[150:170] = True
    constraints = PathConstraints(jump_penalty=0.0, pause_rows=pause, pause_penalty=0.0)
    path = solve_path(*_full(costs), start_cols=(0, 40), constraints=constraints)
    assert np.arange(200).tolist() == np.unique(path.dub_frames).tolist()
    first = np.array([path.pic_frames[path.dub_frames == i].min() for i in range(200)])
    last = np.array([path.pic_frames[path.dub_frames == i].max() for i in range(200)])
    # the pauses were used: some rows share a column, some span several
    assert (np.diff(first) == 0)[pause[1:]].any() and (last - first)[pause].max() > 1
    for a, b in [(0, 30), (45, 90), (100, 150), (170, 200)]:  # runs of speech rows
        span = np.arange(a, b)[None, :] - np.arange(a, b)[:, None]
        later = span > 0
        f, l_ = first[a:b], last[a:b]
        assert ((l_[None, :] - f[:, None])[later] <= 1.5 * span[later] + 1 + 1e-9).all()
        assert ((f[None, :] - l_[:, None])[later] >= 2 / 3 * span[later] - 1 - 1e-9).all()
    # speech rows only get pattern cells (at most two per row); pause rows may get many
    assert (last - first)[~pause].max() <= 1


def test_dense_band_opens_inside_pauses():
    pause = np.zeros(300, dtype=bool)
    pause[100:150] = True
    plain, w_plain = dense_band(300, 2000, start_cols=(10, 10))
    stretchy = PathConstraints(pause_rows=pause, pause_max_slope=4.0)
    col_start, width = dense_band(300, 2000, start_cols=(10, 10), constraints=stretchy)
    lo, hi = col_start, col_start + width - 1
    i = np.arange(300)
    # a pause squeezed to nothing: 200 speech rows at 2/3; stretched: 49 pause steps at 4
    assert lo[299] <= 10 + np.floor(2 / 3 * 249)
    assert hi[299] >= 10 + 1.5 * 249 + 4 * 50
    assert width > w_plain
    # before the pause the band is the plain one
    np.testing.assert_array_equal(col_start[:50] <= plain[:50], True)
    assert ((lo <= 10 + np.floor(2 / 3 * i) - 1) | (i > 99)).all()


def test_find_pauses():
    act = np.ones(60)
    act[0:12] = 0.1  # leading silence: an edge
    act[20:32] = 0.2  # a 12-frame pause
    act[40:45] = 0.0  # too short: a stop closure
    act[52:] = 0.3  # trailing silence
    assert np.flatnonzero(find_pauses(act)).tolist() == list(range(22, 30))
    both = np.flatnonzero(find_pauses(act, edges=True)).tolist()
    assert both == list(range(2, 10)) + list(range(22, 30)) + list(range(54, 58))
    with pytest.raises(ParameterError):
        find_pauses(np.ones((3, 2)))


def test_constraints_copy_check_and_pool_their_masks():
    pause = np.array([0, 0, 0, 0, 0, 0, 1, 0, 1], dtype=bool)
    constraints = PathConstraints(pause_rows=pause)
    pause[0] = True  # the caller's array may change; the frozen constraints may not
    assert not constraints.pause_rows[0]
    with pytest.raises(ValueError):
        constraints.pause_rows[0] = True
    with pytest.raises(ParameterError, match="one entry per dub row"):
        constraints.check(8)
    coarse = constraints.pooled(4)  # rows 0-3, 4-7, 8 (padded)
    assert coarse.pause_rows.tolist() == [False, True, True]
    assert coarse.soft_rows is None and coarse.min_slope == constraints.min_slope


def test_bad_pause_options_raise():
    costs, col_start = _full(np.zeros((4, 4)))
    with pytest.raises(ParameterError):
        solve_path(costs, col_start, start_cols=(0, 0), constraints=PathConstraints(pause_rows=np.ones(3, dtype=bool)))
    with pytest.raises(ParameterError):
        solve_path(costs, col_start, start_cols=(0, 0), constraints=PathConstraints(pause_rows=np.ones(4)))  # not bool
    with pytest.raises(ParameterError):
        solve_path(costs, col_start, start_cols=(0, 0), constraints=PathConstraints(pause_penalty=-1.0))
    with pytest.raises(ParameterError):
        dense_band(
            4, 4, start_cols=(0, 0), constraints=PathConstraints(pause_rows=np.ones(4, dtype=bool), pause_max_slope=1.0)
        )


# ---------------------------------------------------------------------------------------------
# soft rows (word tails): squeezed below min_slope, nowhere else


def _planted_tail(rng):
    """Slope 1, then rows 50..89 at slope 1/2 (a word tail squeezed to half), then slope 1."""
    i = np.arange(140)
    truth = np.select([i < 50, i < 90], [10 + i, 60 + (i - 50) // 2], 80 + (i - 90))
    costs = rng.uniform(0.5, 1.0, size=(140, 160))
    costs[i, truth] = 0.0
    soft = (i >= 50) & (i < 90)
    return costs.astype(np.float32), soft, truth


def test_planted_tail_is_squeezed_only_in_soft_rows(rng):
    costs, soft, truth = _planted_tail(rng)
    col_start = np.zeros(140, dtype=np.int64)
    tails = PathConstraints(soft_rows=soft, soft_min_slope=0.5)
    path = solve_path(costs, col_start, start_cols=(10, 10), constraints=tails)
    assert np.abs(_row_mean(path) - truth).max() <= 1.0
    # the 1/2 steps stay inside the soft rows: outside them every run keeps slope >= 2/3
    slopes = np.diff(_row_mean(path))
    assert slopes[:45].min() >= 2 / 3 - 1e-9 and slopes[95:].min() >= 2 / 3 - 1e-9
    # without soft rows the tail cannot be squeezed: the words after it arrive late
    plain = solve_path(costs, col_start, start_cols=(10, 10))
    assert np.abs(_row_mean(plain) - truth).max() >= 4 and plain.cost > path.cost


@pytest.mark.parametrize("soft_value", [False, True])
def test_uniform_soft_rows_equal_plain_limits(rng, soft_value):
    # all rows soft: the lower limit everywhere; no row soft: the usual limit everywhere
    for _ in range(60):
        costs, col_start, ends, options = _random_case(rng)
        options = {k: v for k, v in options.items() if k not in ("min_slope", "max_step")}
        soft = PathConstraints(soft_rows=np.full(costs.shape[0], soft_value), soft_min_slope=0.5, **options)
        try:
            plain = solve_path(
                costs, col_start, **ends, constraints=PathConstraints(min_slope=0.5 if soft_value else 2 / 3, **options)
            )
        except AlignmentError:
            with pytest.raises(AlignmentError):
                solve_path(costs, col_start, **ends, constraints=soft)
            continue
        with_soft = solve_path(costs, col_start, **ends, constraints=soft)
        assert _cells(with_soft) == _cells(plain)
        assert with_soft.cost == plain.cost


def test_solver_matches_reference_with_soft_rows(rng):
    n_solved = n_soft_used = 0
    for _ in range(400):
        costs, col_start, ends, options = _random_case(rng)
        plain_options = dict(options)
        options["soft_rows"] = rng.uniform(size=costs.shape[0]) < 0.6
        options["soft_min_slope"] = 0.5 * options.get("min_slope", 2 / 3)
        got = _solve_both(costs, col_start, ends, options)
        if got is None:
            continue
        n_solved += 1
        try:
            plain = solve_path(costs, col_start, **ends, constraints=PathConstraints(**plain_options))
        except AlignmentError:
            plain = None
        n_soft_used += plain is None or _cells(plain) != _cells(got)
    assert n_solved > 200
    assert n_soft_used > 20  # the slow steps were actually taken


def test_coarse_to_fine_follows_a_planted_tail(rng):
    costs, soft, truth = _planted_tail(rng)
    cost_fn, calls = _pooling_cost_fn(costs)
    path = solve_coarse_to_fine(
        cost_fn, 140, 160, start_cols=(0, 20), factor=2, direct_max_cells=0,
        constraints=PathConstraints(soft_rows=soft, soft_min_slope=0.5),
    )
    assert calls == [2, 1]
    assert np.abs(_row_mean(path) - truth).max() <= 1.0


def test_bad_soft_options_raise():
    costs, col_start = _full(np.zeros((4, 6)))
    few, soft = np.ones(3, bool), np.ones(4, bool)
    with pytest.raises(ParameterError, match="soft_rows must be a bool array"):
        solve_path(costs, col_start, start_cols=(0, 0), constraints=PathConstraints(soft_rows=few, soft_min_slope=0.5))
    with pytest.raises(ParameterError, match="soft_min_slope"):
        solve_path(costs, col_start, start_cols=(0, 0), constraints=PathConstraints(soft_rows=soft, soft_min_slope=0.9))
    with pytest.raises(ParameterError, match="soft_min_slope"):
        solve_path(costs, col_start, start_cols=(0, 0), constraints=PathConstraints(soft_rows=soft))


# ---------------------------------------------------------------------------------------------
# fixed rows (protected spans, tightness 0): a diagonal, one cell per row


@pytest.mark.parametrize("solver", [solve_path, solve_path_reference])
def test_hand_fixed_rows_forbid_the_2_3_step(solver):
    # HAND_4X5 takes a (2, 3) step across rows 0 -> 2 (cost 0.55); with rows 0..2 fixed that
    # step is forbidden, and the cheapest path left is (1,1) (1,1) (1,1): 0 + 1 + 9 + 9 = 19.
    fixed = np.array([True, True, True, False])
    path = solver(*_full(HAND_4X5), start_cols=(0, 0), constraints=PathConstraints(fixed_rows=fixed))
    assert _cells(path) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert path.cost == pytest.approx(19 / 4)
    # only rows 2..3 fixed: the (2, 3) step into row 2 is still free (a run moves as a whole)
    fixed = np.array([False, False, True, True])
    path = solver(*_full(HAND_4X5), start_cols=(0, 0), constraints=PathConstraints(fixed_rows=fixed))
    assert _cells(path) == [(0, 0), (1, 1), (1, 2), (2, 3), (3, 4)]
    assert path.cost == pytest.approx(0.55 / 4)


@pytest.mark.parametrize("solver", [solve_path, solve_path_reference])
def test_fixed_rows_are_no_pause_rows(solver):
    # the hand pause squeeze of test_hand_pause_is_squeezed_with_1_0_moves, with rows 2, 3 fixed:
    # the squeeze onto column 1 is gone; the cheapest left is (0, 0) (1, 1) (2, 2) (3, 3) (4, 4)
    # at 0 + 0 + 9 + 9 + 9 = 27 against, e.g., staying on column 1 for rows 1-2 (a (1, 0) move
    # between a pause row and a fixed one, forbidden)
    costs = [[0, 9, 9, 9, 9], [9, 0, 9, 9, 9], [9, 0, 9, 9, 9], [9, 0, 9, 9, 9], [9, 9, 0, 9, 9]]
    pause = np.array([False, True, True, True, False])
    fixed = np.array([False, False, True, True, False])
    constraints = PathConstraints(pause_rows=pause, pause_penalty=0.05, fixed_rows=fixed)
    assert constraints.pause_rows.tolist() == [False, True, False, False, False]
    path = solver(*_full(costs), start_cols=(0, 0), constraints=constraints)
    rows, cols = path.dub_frames, path.pic_frames
    assert (rows == 2).sum() == 1 and (rows == 3).sum() == 1
    assert cols[rows == 3][0] - cols[rows == 2][0] == 1
    assert not ((np.diff(rows) == 1) & (np.diff(cols) == 0)).any()  # no (1, 0) move at all
    unfixed = solver(*_full(costs), start_cols=(0, 0), constraints=PathConstraints(pause_rows=pause))
    assert _cells(unfixed) == [(0, 0), (1, 1), (2, 1), (3, 1), (4, 2)]
    assert path.cost > unfixed.cost


def test_all_rows_fixed_give_the_best_constant_shift(rng):
    # brute force: every start column, straight down the diagonal
    for _ in range(40):
        costs = rng.uniform(-1, 1, size=(30, 45)).astype(np.float32)
        pause = rng.uniform(size=30) < 0.3  # fixed rows override them
        constraints = PathConstraints(pause_rows=pause, fixed_rows=np.ones(30, dtype=bool))
        path = solve_path(*_full(costs), start_cols=(0, 15), constraints=constraints)
        totals = [costs[np.arange(30), s + np.arange(30)].astype(np.float64).sum() for s in range(16)]
        best = int(np.argmin(totals))
        assert _cells(path) == [(i, best + i) for i in range(30)]
        assert path.cost == pytest.approx(totals[best] / 30, rel=1e-9)


def test_planted_path_keeps_a_fixed_run_straight(rng):
    costs, curve = _planted(rng, 300, 380, offset=30.0)
    fixed = np.zeros(300, dtype=bool)
    fixed[100:160] = True  # the planted curve bends here (slope 1 - 0.25 .. 1 - 0.13)
    col_start, width = dense_band(300, 380, start_cols=(0, 60))
    constraints = PathConstraints(fixed_rows=fixed)
    path = solve_path(_band_of(costs, col_start, width), col_start, start_cols=(0, 60), constraints=constraints)
    mean = _row_mean(path)
    offset = mean[100:160] - np.arange(100, 160)
    assert np.ptp(offset) == 0  # one cell per row, on a diagonal
    assert np.ptp(np.round(curve[100:160]) - np.arange(100, 160)) >= 5  # the truth is no diagonal
    # the straight run is a compromise: the path leaves the truth a little before it (at slope
    # 1.5 it needs a while to reach the run's offset), and catches up after it
    off_truth = np.abs(mean - np.round(curve)) > 1.0
    assert not off_truth[:50].any() and not off_truth[180:].any()


def test_solver_matches_reference_with_fixed_rows(rng):
    n_solved = n_changed = 0
    for _ in range(400):
        costs, col_start, ends, options = _random_case(rng)
        plain_options = dict(options)
        n = costs.shape[0]
        options["fixed_rows"] = rng.uniform(size=n) < 0.5
        if rng.uniform() < 0.5:
            options["pause_rows"] = _random_pauses(rng, n)
        if rng.uniform() < 0.3:
            options["soft_rows"] = rng.uniform(size=n) < 0.6
            options["soft_min_slope"] = 0.5 * options.get("min_slope", 2 / 3)
        got = _solve_both(costs, col_start, ends, options)
        if got is None:
            continue
        n_solved += 1
        fixed = options["fixed_rows"]
        rows, cols = got.dub_frames, got.pic_frames
        for i in np.flatnonzero(fixed[:-1] & fixed[1:]):  # every locked pair is one diagonal step
            assert (rows == i + 1).sum() == 1
            assert cols[rows == i + 1][0] == cols[rows == i][-1] + 1
        try:
            plain = solve_path(costs, col_start, **ends, constraints=PathConstraints(**plain_options))
        except AlignmentError:
            plain = None
        n_changed += plain is None or _cells(plain) != _cells(got)
    assert n_solved > 150
    assert n_changed > 20  # the fixed rows actually changed paths


def test_coarse_to_fine_keeps_a_fixed_run_straight(rng):
    costs, curve = _planted(rng, 300, 380, offset=30.0)
    fixed = np.zeros(300, dtype=bool)
    fixed[101:157] = True  # not aligned to the pooling factor
    cost_fn, calls = _pooling_cost_fn(costs)
    path = solve_coarse_to_fine(
        cost_fn, 300, 380, start_cols=(0, 60), factor=4, radius=12, direct_max_cells=0,
        constraints=PathConstraints(fixed_rows=fixed),
    )
    assert calls == [4, 1]
    mean = _row_mean(path)
    assert np.ptp(mean[101:157] - np.arange(101, 157)) == 0
    off_truth = np.abs(mean - np.round(curve)) > 1.0
    assert not off_truth[:50].any() and not off_truth[180:].any()


def test_fixed_rows_are_checked_pooled_and_bound_the_advance():
    fixed = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    pause = np.array([1, 1, 1, 0, 0, 0, 1, 1, 0], dtype=bool)
    c = PathConstraints(pause_rows=pause, fixed_rows=fixed)
    assert c.pause_rows.tolist() == [True, True, True, False, False, False, False, False, False]
    assert c.pooled(4).fixed_rows.tolist() == [False, True, True]
    with pytest.raises(ParameterError, match="fixed_rows and pause_rows"):
        PathConstraints(pause_rows=pause[:-1], fixed_rows=fixed)
    with pytest.raises(ParameterError, match="fixed_rows must be a bool array"):
        PathConstraints(fixed_rows=np.ones(4))
    least, most = c.advance_bounds(9)
    # rows 0-2: a pause (squeezable to 0, generous 2 x 8 at most); 5-8 fixed: exactly 1
    np.testing.assert_allclose(least, [0, 0, 2 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(most, [16, 16, 16, 1.5, 1.5, 1, 1, 1])
    with pytest.raises(ParameterError, match="one entry per dub row"):
        c.advance_bounds(8)
