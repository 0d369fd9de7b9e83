"""The path solver: a constrained DTW through a banded dub x picture cost matrix.

Rows are dub frames, columns picture frames, both on the ``PATH_RATE`` grid. The solver finds
the cheapest monotone path that matches every dub row, starts in row 0 inside ``start_cols``,
ends in the last row inside ``end_cols``, and never runs faster or slower than the stretch
limits allow.

What a path may do (slope limits, step pattern, penalties, pause and soft rows) is one frozen
:class:`PathConstraints`, checked once when it is made and passed whole to every solver, to the
bands and to :func:`~dubalign.timemap.path_to_timemap`.

Step pattern
------------
A step goes from vertex ``(i, j)`` to ``(i + a, j + b)``. The pattern holds every coprime
``(a, b)`` with ``1 <= a, b <= max_step`` and ``min_slope <= b / a <= max_slope``; with the
defaults (``max_step=3``, slopes 2/3..3/2) that is ``(1, 1)``, ``(2, 3)`` and ``(3, 2)``.
Because every step already has an allowed slope there is no horizontal or vertical move to
chain, so the slope constraint holds over every run, not only on average:

* between any two vertices of the path, ``d(pic) / d(dub)`` lies in ``[s_min, s_max]``, the
  smallest and largest step slopes (exactly ``[2/3, 3/2]`` by default);
* between any two cells, the same holds up to one column of rounding at either end.

The cells a step covers are the straight line between its vertices rounded to the grid (round
half up): row ``i + k`` covers columns ``j + e[k-1] + 1 .. j + e[k]`` with
``e[k] = round(k * b / a)`` (just ``j + e[k]`` when that range is empty). The returned path is
therefore a connected staircase of ``(1, 0)``, ``(0, 1)`` and ``(1, 1)`` moves.

Cost
----
Every dub row is charged once, with the mean cost of the cells it covers, so all paths are
charged the same number of rows and length does not bias the result. Each step other than
``(1, 1)`` adds ``jump_penalty``: on flat or ambiguous stretches the path then stays at slope 1.
``WarpPath.cost`` is the total divided by the number of dub rows.

Pauses
------
Silence can be squeezed or stretched without audible artefacts, so the slope limits only bind
inside speech. ``pause_rows`` marks dub rows inside pauses; there the pattern gains two moves:

* ``(1, 0)``: the dub advances one row, the picture stays (squeezes the pause; slope 0). Allowed
  from row ``i`` to ``i + 1`` only when both rows are pause rows, so the flat segment lies inside
  the pause. The new row is charged its cell's full cost, plus ``pause_penalty``.
* ``(0, 1)``: the picture advances one column, the dub stays (stretches the pause). Allowed only
  in a pause row. The row was already charged when the path entered it, so the extra cell costs
  ``pause_weight * max(cost, 0) + pause_penalty``: never less than ``pause_penalty``, so runs of
  ``(0, 1)`` moves cannot collect negative (good) costs for free.

Both penalties make the diagonal the cheapest way through a flat pause. Outside pauses the
pattern and its slope guarantees are unchanged: every run of cells in consecutive speech rows
still obeys ``[s_min, s_max]`` up to the rounding above. The solver itself does not bound how
far a pause may be stretched; the band does (see :func:`dense_band`, ``pause_max_slope``).

Fixed rows
----------
``fixed_rows`` marks dub rows that must keep their own timing (a protected laugh or breath, or
every row for a constant shift). Within a run of consecutive fixed rows the path is a diagonal,
one cell per row: a step that crosses from one fixed row to the next must be ``(1, 1)``, and
fixed rows are never pause rows. The step into a run's first row is free, so the run moves
as a whole but is not stretched.

Memory: the forward pass keeps the accumulated cost of only the last ``max_step + 1`` rows, an
``int8`` backpointer per band cell and the step costs of one block of rows (about ``2**16`` cells
per move), so it needs ``n_dub * width`` bytes beside the costs and a few MB of scratch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import AlignmentError, ParameterError

DEFAULT_MIN_SLOPE = 2.0 / 3.0  # slowest picture rate per dub frame: the dub stretched to 150 %
DEFAULT_MAX_SLOPE = 1.5  # fastest: the dub compressed to 2/3 of its length
DEFAULT_JUMP_PENALTY = 0.05  # cost units (costs of order 1) per non-diagonal step
DEFAULT_MAX_STEP = 3  # longest step, in rows or columns; 3 gives the 2/3 and 3/2 steps
DEFAULT_PAUSE_PENALTY = 0.05  # cost units per (1, 0) or (0, 1) move inside a pause
DEFAULT_PAUSE_WEIGHT = 0.1  # share of a cell's positive cost charged per (0, 1) move
DEFAULT_PAUSE_MAX_SLOPE = 8.0  # band allowance inside pauses: picture frames per dub frame
DEFAULT_PAUSE_MIN_SLOPE = 0.05  # time map only: a pause may shrink to 1/20 (the map stays increasing)
DEFAULT_PAUSE_THRESHOLD = 0.5  # speech activity below this is a pause
DEFAULT_PAUSE_MIN_FRAMES = 8  # shorter dips (stop closures, breaths inside words) are speech
DEFAULT_PAUSE_MARGIN = 2  # frames given back to speech at each end of a pause

_SLOPE_TOL = 1e-9  # so that 2/3 given as 0.6666... still admits the (3, 2) step
_MAX_STEPS = 125  # backpointers are int8 (0 = no predecessor; the last two: pause moves)

_STRETCH_HINT = (
    "dub and picture lengths differ more than the stretch limits allow; "
    "raise --max-shift, widen the stretch limits or trim the dub"
)


@dataclass(frozen=True, eq=False)
class WarpPath:
    """A monotone path through the dub x picture grid, start to end.

    dub_frames : np.ndarray [shape=(n,)] int64
        Dub frame (row) of each cell, non-decreasing; every dub row appears at least once.
    pic_frames : np.ndarray [shape=(n,)] int64
        Picture frame (column) of each cell, non-decreasing.
    cost : float
        Accumulated cost (row costs plus penalties) divided by the number of dub rows.
    """

    dub_frames: np.ndarray
    pic_frames: np.ndarray
    cost: float

    def __len__(self) -> int:
        return int(self.dub_frames.shape[0])


@dataclass(frozen=True, eq=False)
class StepPattern:
    """The step pattern derived from the slope limits (see the module docstring).

    rows, cols : np.ndarray [shape=(n_steps,)] int64
        Step ``s`` goes from ``(i, j)`` to ``(i + rows[s], j + cols[s])``; step 0 is ``(1, 1)``
        when the limits admit it.
    cell_lo, cell_hi : np.ndarray [shape=(n_steps, max_step)] int64
        Row ``i + k`` (``k = 1 .. rows[s]``) covers the columns
        ``j + cell_lo[s, k-1] .. j + cell_hi[s, k-1]``.
    penalty : np.ndarray [shape=(n_steps,)] float64
        Extra cost of each step: 0 for ``(1, 1)``, ``jump_penalty`` otherwise.
    """

    rows: np.ndarray
    cols: np.ndarray
    cell_lo: np.ndarray
    cell_hi: np.ndarray
    penalty: np.ndarray

    @property
    def slope_range(self) -> tuple[float, float]:
        """Smallest and largest step slope: the range every run of the path stays in."""
        slopes = self.cols / self.rows
        return float(slopes.min()), float(slopes.max())


def step_pattern(
    *,
    min_slope: float = DEFAULT_MIN_SLOPE,
    max_slope: float = DEFAULT_MAX_SLOPE,
    max_step: int = DEFAULT_MAX_STEP,
    jump_penalty: float = DEFAULT_JUMP_PENALTY,
) -> StepPattern:
    """The steps, the cells each covers, and their penalties for the given slope limits."""
    if not (0 < min_slope <= max_slope) or not math.isfinite(max_slope):
        raise ParameterError(
            f"slope limits must satisfy 0 < min_slope <= max_slope < inf, "
            f"got {min_slope}, {max_slope}"
        )
    if not 1 <= max_step <= 8:
        raise ParameterError(f"max_step must be in 1..8, got {max_step}")
    if not (jump_penalty >= 0 and math.isfinite(jump_penalty)):
        raise ParameterError(f"jump_penalty must be finite and >= 0, got {jump_penalty}")

    steps = [
        (a, b)
        for a in range(1, max_step + 1)
        for b in range(1, max_step + 1)
        if math.gcd(a, b) == 1 and min_slope - _SLOPE_TOL <= b / a <= max_slope + _SLOPE_TOL
    ]
    if not steps:
        raise ParameterError(
            f"no step of at most {max_step} frames has a slope in [{min_slope}, {max_slope}]; "
            "widen the slope limits or raise max_step"
        )
    # Diagonal first, then the mildest rate changes: the order only decides exact ties.
    steps.sort(key=lambda ab: (abs(math.log(ab[1] / ab[0])), ab[0], ab[1]))
    assert len(steps) <= _MAX_STEPS

    n = len(steps)
    cell_lo = np.zeros((n, max_step), dtype=np.int64)
    cell_hi = np.zeros((n, max_step), dtype=np.int64)
    for s, (a, b) in enumerate(steps):
        prev = 0
        for k in range(1, a + 1):
            e = (2 * k * b + a) // (2 * a)  # round(k * b / a), halves up, in integers
            cell_lo[s, k - 1] = prev + 1 if e > prev else e
            cell_hi[s, k - 1] = e
            prev = e
    rows = np.array([a for a, _ in steps], dtype=np.int64)
    cols = np.array([b for _, b in steps], dtype=np.int64)
    penalty = np.where((rows == 1) & (cols == 1), 0.0, float(jump_penalty))
    return StepPattern(rows=rows, cols=cols, cell_lo=cell_lo, cell_hi=cell_hi, penalty=penalty)


_MASKS = ("pause_rows", "soft_rows", "fixed_rows")


@dataclass(frozen=True, eq=False)
class PathConstraints:
    """What a path may do, and so what the time map made from it may do.

    Slopes are ``d(pic) / d(dub)``: the local stretch of the dub. Everything is checked when the
    object is made (and again by :func:`dataclasses.replace`); :meth:`check` only compares the
    masks with a problem's number of dub rows. The masks are kept as read-only copies.
    """

    min_slope: float = DEFAULT_MIN_SLOPE  # slowest picture advance per dub row in speech
    max_slope: float = DEFAULT_MAX_SLOPE  # fastest; both select the step pattern (module docstring)
    max_step: int = DEFAULT_MAX_STEP  # longest step in rows or columns; larger gives more slopes
    jump_penalty: float = DEFAULT_JUMP_PENALTY  # extra cost of every non-diagonal step, >= 0
    # [shape=(n_dub,)] bool: rows inside pauses (find_pauses), where (1, 0) and (0, 1) moves are
    # allowed too; None: no pauses, the slope limits hold everywhere
    pause_rows: np.ndarray | None = None
    pause_penalty: float = DEFAULT_PAUSE_PENALTY  # extra cost of every pause move, >= 0
    pause_weight: float = DEFAULT_PAUSE_WEIGHT  # share in [0, 1] of a cell's positive cost per (0, 1) move
    # time map only: the solver may squeeze a pause to nothing, the map keeps it increasing;
    # 0 < pause_min_slope <= min_slope
    pause_min_slope: float = DEFAULT_PAUSE_MIN_SLOPE
    # how far a pause may stretch: the bands' allowance and the time map's limit; >= max_slope
    pause_max_slope: float = DEFAULT_PAUSE_MAX_SLOPE
    # [shape=(n_dub,)] bool: rows that may be squeezed down to soft_min_slope (the fading tails of
    # words); steps slower than min_slope may cover only soft rows. None: none
    soft_rows: np.ndarray | None = None
    soft_min_slope: float | None = None  # required with soft_rows: pause_min_slope <= it <= min_slope
    # [shape=(n_dub,)] bool: rows played at their own speed: consecutive fixed rows are joined by
    # the (1, 1) step only, and a fixed row is no pause row (removed from pause_rows). None: none
    fixed_rows: np.ndarray | None = None
    # the steps, from lowest_slope to max_slope: derived, not an option
    pattern: StepPattern = field(init=False, repr=False)

    def __post_init__(self):
        for name in _MASKS:
            mask = getattr(self, name)
            if mask is None:
                continue
            mask = np.array(mask)  # a copy: the caller's array may change, this object may not
            if mask.ndim != 1 or mask.dtype != np.bool_:
                raise ParameterError(
                    f"{name} must be a bool array with one entry per dub row, got {mask.dtype} {mask.shape}"
                )
            mask.flags.writeable = False
            object.__setattr__(self, name, mask)
        if self.fixed_rows is not None and self.pause_rows is not None:
            if self.fixed_rows.shape != self.pause_rows.shape:
                raise ParameterError(
                    f"fixed_rows and pause_rows must have one entry per dub row each, "
                    f"got shapes {self.fixed_rows.shape} and {self.pause_rows.shape}"
                )
            # a fixed row keeps its timing: it may be neither squeezed nor stretched as a pause
            pause = self.pause_rows & ~self.fixed_rows
            pause.flags.writeable = False
            object.__setattr__(self, "pause_rows", pause)
        if not 0 < self.min_slope <= self.max_slope:
            raise ParameterError(
                f"slope limits must satisfy 0 < min_slope <= max_slope < inf, got {self.min_slope}, {self.max_slope}"
            )
        if not (self.pause_penalty >= 0 and math.isfinite(self.pause_penalty)):
            raise ParameterError(f"pause_penalty must be finite and >= 0, got {self.pause_penalty}")
        if not 0 <= self.pause_weight <= 1:
            raise ParameterError(f"pause_weight must be in [0, 1], got {self.pause_weight}")
        if not (0 < self.pause_min_slope <= self.min_slope and self.max_slope <= self.pause_max_slope < math.inf):
            raise ParameterError(
                f"need 0 < pause_min_slope <= min_slope ({self.min_slope}) and "
                f"max_slope ({self.max_slope}) <= pause_max_slope < inf, "
                f"got {self.pause_min_slope}, {self.pause_max_slope}"
            )
        if self.soft_rows is not None and (
            self.soft_min_slope is None or not self.pause_min_slope <= self.soft_min_slope <= self.min_slope
        ):
            raise ParameterError(
                f"soft_rows needs pause_min_slope ({self.pause_min_slope}) <= soft_min_slope <= "
                f"min_slope ({self.min_slope}), got {self.soft_min_slope}"
            )
        pattern = step_pattern(
            min_slope=self.lowest_slope,
            max_slope=self.max_slope,
            max_step=self.max_step,
            jump_penalty=self.jump_penalty,
        )
        object.__setattr__(self, "pattern", pattern)

    @property
    def lowest_slope(self) -> float:
        """The slowest any step may go: ``soft_min_slope`` when there are soft rows."""
        return float(self.soft_min_slope) if self.soft_rows is not None else float(self.min_slope)

    def advance_bounds(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Least and most picture columns a path may advance from each dub row to the next.

        Returns two arrays [shape=(n_rows - 1,)] for the steps ``i -> i + 1``. Over any run of
        rows a path advances at least the sum of ``least`` and at most the sum of ``most``, up to
        one column of step rounding at either end. Pauses may stretch further than
        ``pause_max_slope`` per row in the solver; only the bands limit them, so their ``most``
        is generous (twice that).
        """
        self.check(n_rows)
        none = np.zeros(n_rows, dtype=np.bool_)
        pause = none if self.pause_rows is None else self.pause_rows
        soft = none if self.soft_rows is None else self.soft_rows
        fixed = none if self.fixed_rows is None else self.fixed_rows
        squeeze = pause[:-1] & pause[1:]
        touch = pause[:-1] | pause[1:]
        locked = fixed[:-1] & fixed[1:]
        least = np.where(soft[1:], self.lowest_slope, float(self.min_slope))
        least = np.where(squeeze, 0.0, np.where(locked, 1.0, least))
        most = np.where(touch, 2 * float(self.pause_max_slope), np.where(locked, 1.0, float(self.max_slope)))
        return least, most

    def check(self, n_rows: int) -> None:
        """Raise ParameterError unless each mask has one entry per dub row."""
        for name in _MASKS:
            mask = getattr(self, name)
            if mask is not None and mask.shape != (n_rows,):
                raise ParameterError(
                    f"{name} must be a bool array with one entry per dub row ({n_rows}), got shape {mask.shape}"
                )

    def pooled(self, factor: int) -> PathConstraints:
        """The same limits on a grid pooled by ``factor``.

        A pooled row is a pause (soft, fixed) row when any of the fine rows it pools is: a coarse
        path only guides the fine band, and the fine pass enforces the exact masks.
        """
        return replace(
            self,
            pause_rows=_pool_any(self.pause_rows, factor),
            soft_rows=_pool_any(self.soft_rows, factor),
            fixed_rows=_pool_any(self.fixed_rows, factor),
        )


def _pool_any(rows: np.ndarray | None, factor: int) -> np.ndarray | None:
    """A row mask pooled by ``factor``: a pooled row is set when any fine row it pools is."""
    if rows is None:
        return None
    padded = np.zeros(-(-len(rows) // factor) * factor, dtype=np.bool_)
    padded[: len(rows)] = rows
    return padded.reshape(-1, factor).any(axis=1)


# ----------------------------------------------------------------------------------------------
# kernels


def _row_mask(mask: np.ndarray | None, n: int) -> np.ndarray:
    """A row mask as a bool array [shape=(n,)] (all False for None)."""
    return np.zeros(n, dtype=np.bool_) if mask is None else mask


@dataclass(frozen=True, eq=False)
class _Moves:
    """The moves the forward pass compares in every cell: the pattern's steps, then ``(1, 0)``.

    The ``(1, 0)`` pause move is the step that covers its own cell (``cell_lo = cell_hi = 0``)
    with ``pause_penalty``; it comes last, so it replaces a step only when strictly cheaper.
    Backpointer ``m + 1`` is move ``m``; ``across`` (``n_moves + 1``) is the ``(0, 1)`` move.

    rows, cols : np.ndarray [shape=(n_moves,)] int64
    cell_lo, cell_hi : np.ndarray [shape=(n_moves, max_step)] int64
    penalty : np.ndarray [shape=(n_moves,)] float64
    allowed : np.ndarray [shape=(n_moves, n_dub)] bool
        Whether move ``m`` may end in row ``i``: it starts inside the matrix, covers only soft
        rows if it is slower than ``min_slope``, crosses no pair of consecutive fixed rows unless
        it is ``(1, 1)``, and, for ``(1, 0)``, rows ``i - 1`` and ``i`` are both pause rows.
    """

    rows: np.ndarray
    cols: np.ndarray
    cell_lo: np.ndarray
    cell_hi: np.ndarray
    penalty: np.ndarray
    allowed: np.ndarray

    @property
    def across(self) -> int:
        """The backpointer of a ``(0, 1)`` move."""
        return len(self.rows) + 1


def _moves(constraints: PathConstraints, n: int) -> _Moves:
    """The moves of :class:`_Moves` for ``n`` dub rows under ``constraints``."""
    pattern = constraints.pattern
    pause = _row_mask(constraints.pause_rows, n)
    soft = _row_mask(constraints.soft_rows, n)
    fixed = _row_mask(constraints.fixed_rows, n)
    rows = np.append(pattern.rows, 1)
    cols = np.append(pattern.cols, 0)
    none = np.zeros((1, pattern.cell_lo.shape[1]), dtype=np.int64)
    cell_lo = np.concatenate([pattern.cell_lo, none])
    cell_hi = np.concatenate([pattern.cell_hi, none])
    penalty = np.append(pattern.penalty, float(constraints.pause_penalty))

    i = np.arange(n)
    first = i[None, :] - rows[:, None] + 1  # first row each move covers
    inside = first >= 1
    # a move covers rows first .. i; soft_count[first .. i] by differences of a running count
    soft_count = np.concatenate([[0], np.cumsum(soft)])
    all_soft = soft_count[i + 1][None, :] - soft_count[np.maximum(first, 0)] == rows[:, None]
    soft_only = np.append(pattern.cols / pattern.rows < constraints.min_slope - _SLOPE_TOL, False)
    # last_locked[i]: the latest row k <= i entered from a fixed row k - 1 while fixed itself
    # (-1: none); a move crosses such a pair iff last_locked[i] >= first
    locked = np.concatenate([[False], fixed[:-1] & fixed[1:]])
    last_locked = np.maximum.accumulate(np.where(locked, i, -1))
    diagonal = (rows == 1) & (cols == 1)
    squeeze = np.concatenate([[False], pause[:-1] & pause[1:]])
    allowed = inside & (all_soft | ~soft_only[:, None]) & ((last_locked[None, :] < first) | diagonal[:, None])
    allowed[-1] &= squeeze
    return _Moves(rows=rows, cols=cols, cell_lo=cell_lo, cell_hi=cell_hi, penalty=penalty, allowed=allowed)


def _step_costs(costs: np.ndarray, col_start: np.ndarray, moves: _Moves, active: np.ndarray, rows: range) -> np.ndarray:
    """What each move adds to the accumulated cost of its source, for a block of rows.

    Row ``i + k`` of a move from ``(i, j)`` is charged the mean of the costs of the cells it covers
    (summed left to right), and the rows' charges are summed in order, as the plain reference
    does; a move whose cells leave the band costs ``+inf``.

    Parameters
    ----------
    costs : np.ndarray [shape=(n_dub, width)] float32
    col_start : np.ndarray [shape=(n_dub,)] int64
    moves : _Moves
    active : np.ndarray [shape=(n_active,)] int
        The moves wanted: allowed in every row of ``rows``.
    rows : range
        Consecutive rows ``i`` in ``1 .. n_dub - 1``: where the moves end.

    Returns
    -------
    np.ndarray [shape=(len(rows), n_active, width)] float64
        Entry ``[r, a, t]``: move ``active[a]`` ending in cell ``(rows[r], col_start[rows[r]] + t)``.
    """
    w = costs.shape[1]
    i = np.arange(rows.start, rows.stop)
    span = int(moves.rows[active].max(initial=1))  # the moves cover rows i - span + 1 .. i
    first = rows.start - span + 1
    # pad columns of +inf: cells up to `pad` columns left of the band, or right of it, read +inf
    pad = int(moves.cols.max())
    padded = np.full((rows.stop - first, pad + 2 * w), np.inf)
    padded[:, pad : pad + w] = costs[first : rows.stop]
    window = np.lib.stride_tricks.sliding_window_view(padded, w, axis=1)  # [row, pad + d]: shifted by d
    lag = [col_start[i] - col_start[i - d] for d in range(span)]  # row i's band starts lag[d] right of row i - d's
    out = np.empty((len(i), len(active), w))
    for q, m in enumerate(active.tolist()):
        a, b = int(moves.rows[m]), int(moves.cols[m])
        step = None
        for k in range(a):
            d = a - 1 - k  # the move covers row i - d
            lo, hi = int(moves.cell_lo[m, k]), int(moves.cell_hi[m, k])
            total = None
            for c in range(lo, hi + 1):
                if d == 0:  # row i itself: one shift for all rows
                    cells = padded[rows.start - first :, pad + c - b : pad + c - b + w]
                else:
                    cells = window[i - d - first, np.minimum(lag[d] + c - b, w) + pad]
                total = cells if total is None else total + cells
            if hi > lo:
                total = total / (hi - lo + 1)
            step = total if step is None else step + total
        out[:, q] = step
    return out


# band cells per block of rows whose step costs are gathered at once: about 0.5 MB of scratch
# per move; blocks of 2**14 .. 2**18 cells ran about as fast on a 6,000 x 601 band
_BLOCK_CELLS = 1 << 16
# moves a run of (0, 1) moves is followed one by one before the rest is summed at once: about
# what one array operation costs
_SWEEP_STEPS = 8


def _blocks(allowed: np.ndarray, size: int) -> list[range]:
    """Rows ``1 .. n_dub - 1`` in blocks of at most ``size`` rows that allow the same moves.

    ``allowed`` [shape=(n_moves, n_dub)] bool, as in :class:`_Moves`.
    """
    n = allowed.shape[1]
    changes = np.flatnonzero((allowed[:, 2:] != allowed[:, 1:-1]).any(axis=0)) + 2
    bounds = [*sorted(set(changes.tolist()) | set(range(1, n, size))), n]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _forward(
    costs: np.ndarray, col_start: np.ndarray, start: tuple[int, int], constraints: PathConstraints, moves: _Moves
) -> tuple[np.ndarray, np.ndarray]:
    """Accumulated cost of the last row and the int8 backpointers.

    Rows are solved in turn, all cells of a row and all moves at once: a cell's cost is the
    least of ``source + step cost + penalty`` over the moves of :func:`_moves` (the first move
    wins on ties, so the earliest step in the pattern, and ``(1, 0)`` only when strictly
    cheaper), then the ``(0, 1)`` moves sweep along a pause row. Only the last
    ``max_step + 1`` rows of accumulated costs are kept.

    Parameters
    ----------
    costs : np.ndarray [shape=(n_dub, width)] float32
    col_start : np.ndarray [shape=(n_dub,)] int64
    start : (int, int)
        Inclusive range of columns the path may start in (row 0).
    constraints : PathConstraints
        For the pause rows and the ``(0, 1)`` charges.
    moves : _Moves
        From :func:`_moves` for the same constraints.

    Returns
    -------
    final : np.ndarray [shape=(width,)] float64
        Accumulated cost of the last row's cells; ``+inf`` where unreachable.
    back : np.ndarray [shape=(n_dub, width)] int8
        Move ``m + 1`` (see :class:`_Moves`), ``across`` for a ``(0, 1)`` move, 0 where there is
        no predecessor.
    """
    n, w = costs.shape
    pause = _row_mask(constraints.pause_rows, n).tolist()
    depth = int(moves.rows.max()) + 1
    pad = int(moves.cols.max())
    # accumulated cost of rows i - depth + 1 .. i in columns pad .. pad + w - 1, +inf around them
    ring = np.full((depth, pad + 2 * w), np.inf)
    window = np.lib.stride_tricks.sliding_window_view(ring, w, axis=1)  # [slot, pad + d]: shifted by d
    back = np.zeros((n, w), dtype=np.int8)

    cols0 = col_start[0] + np.arange(w)
    ring[0, pad : pad + w] = np.where((cols0 >= start[0]) & (cols0 <= start[1]), costs[0], np.inf)
    if pause[0]:
        _sweep_across(ring[0, pad : pad + w], back[0], _across_charges(costs[:1], constraints)[0], moves.across)
    for rows in _blocks(moves.allowed, max(_BLOCK_CELLS // w, 1)):
        active = np.flatnonzero(moves.allowed[:, rows.start])  # in order: ties go to the first
        steps = _step_costs(costs, col_start, moves, active, rows)
        penalty = moves.penalty[active, None]
        i = np.arange(rows.start, rows.stop)[:, None]
        source = i - moves.rows[active]
        # candidate 0 reads the +inf right of the band, so that cells nothing reaches get
        # backpointer 0 from the argmin
        slots = np.concatenate([np.zeros_like(i), source % depth], axis=1)
        shifts = np.minimum(col_start[i] - moves.cols[active] - col_start[source], w) + pad
        shifts = np.concatenate([np.full_like(i, pad + w), shifts], axis=1)
        codes = np.concatenate([[0], active + 1]).astype(np.int8)
        in_pause = any(pause[rows.start : rows.stop])
        extra = _across_charges(costs[rows.start : rows.stop], constraints) if in_pause else None
        for r, row in enumerate(rows):
            cand = window[slots[r], shifts[r]]
            cand[1:] += steps[r]
            cand[1:] += penalty
            best = ring[row % depth, pad : pad + w]
            cand.min(axis=0, out=best)
            np.take(codes, cand.argmin(axis=0), out=back[row])
            if pause[row]:
                _sweep_across(best, back[row], extra[r], moves.across)
    return ring[(n - 1) % depth, pad : pad + w].copy(), back


def _across_charges(costs: np.ndarray, constraints: PathConstraints) -> np.ndarray:
    """What a ``(0, 1)`` move into each cell adds: ``pause_weight * max(cost, 0) + pause_penalty``.

    ``costs`` [shape=(n_rows, width)] float32; returns float64 of the same shape, ``+inf`` on
    forbidden cells.
    """
    costs = costs.astype(np.float64)  # float32 would round the charges
    finite = np.isfinite(costs)
    extra = float(constraints.pause_weight) * np.maximum(np.where(finite, costs, 0.0), 0.0)
    extra += float(constraints.pause_penalty)
    return np.where(finite, extra, np.inf)


def _sweep_across(acc: np.ndarray, row_back: np.ndarray, extra: np.ndarray, code: int) -> None:
    """``(0, 1)`` moves along one pause row, left to right, in place.

    The result is that of the sequential sweep ``acc[t] = min(acc[t], acc[t - 1] + extra[t])``
    for ``t = 1 .. width - 1`` (``extra`` is ``+inf`` on forbidden cells), with
    ``row_back[t] = code`` where the move is strictly cheaper, and the same sums: a run of moves
    can only begin at a column where the move from the unchanged column before already gains.
    Most runs are short: each is followed move by move for ``_SWEEP_STEPS`` columns, then the rest
    of a long one at once, as running sums (``np.add.accumulate`` adds in order) while they stay
    below ``acc``. ``extra`` is used as scratch.
    """
    w = acc.shape[0]
    gains = np.flatnonzero(acc[:-1] + extra[1:] < acc[1:]) + 1
    done = 0
    for t in gains.tolist():
        if t <= done:  # inside the run that an earlier column began
            continue
        stop = min(t + _SWEEP_STEPS, w)
        while t < stop:
            value = acc[t - 1] + extra[t]
            if not value < acc[t]:
                break
            acc[t] = value
            row_back[t] = code
            t += 1
        else:
            if t < w:
                extra[t - 1] = acc[t - 1]  # the running sums start from the last column lowered
                run = np.add.accumulate(extra[t - 1 :])[1:]
                lower = run < acc[t:]
                n_lower = int(lower.argmin())
                if lower[n_lower]:  # all of them
                    n_lower = lower.shape[0]
                acc[t : t + n_lower] = run[:n_lower]
                row_back[t : t + n_lower] = code
                t += n_lower
        done = t


def _backtrace(back: np.ndarray, col_start: np.ndarray, end_col: int, moves: _Moves) -> tuple[np.ndarray, np.ndarray]:
    """Cells of the path ending at ``(n_dub - 1, end_col)``, start to end, as (dub, pic) arrays."""
    rows, cols = moves.rows.tolist(), moves.cols.tolist()
    cell_lo, cell_hi = moves.cell_lo.tolist(), moves.cell_hi.tolist()
    starts = col_start.tolist()
    runs = []  # the cells each move adds, end to start
    i, j = back.shape[0] - 1, end_col
    while code := int(back[i, j - starts[i]]):
        if code == moves.across:
            runs.append([(i, j)])
            j -= 1
            continue
        m = code - 1
        i, j = i - rows[m], j - cols[m]
        runs.append([(i + k + 1, j + c) for k in range(rows[m]) for c in range(cell_lo[m][k], cell_hi[m][k] + 1)])
    if i != 0:
        raise RuntimeError("broken backpointer chain")
    cells = [(0, j)] + [cell for run in reversed(runs) for cell in run]
    dub, pic = (np.array(frames, dtype=np.int64) for frames in zip(*cells, strict=True))
    return dub, pic


# ----------------------------------------------------------------------------------------------
# public solvers


def find_pauses(
    activity: np.ndarray,
    *,
    threshold: float = DEFAULT_PAUSE_THRESHOLD,
    min_frames: int = DEFAULT_PAUSE_MIN_FRAMES,
    margin: int = DEFAULT_PAUSE_MARGIN,
    edges: bool = False,
) -> np.ndarray:
    """Rows inside pauses, for ``pause_rows``: long runs of low speech activity, trimmed.

    Parameters
    ----------
    activity : np.ndarray [shape=(n_dub,)]
        Speech activity (or probability) per dub row, in ``[0, 1]``.
    threshold : float
        Rows below it are silent.
    min_frames : int
        Shorter silent runs (stop closures, short breaths inside a phrase) stay speech.
    margin : int
        Rows given back to speech at each end of a pause, so that word onsets and tails keep
        the speech slope limits.
    edges : bool
        Keep the silences before the first and after the last word. Off by default: they lie
        between no two words, the open start and end already place them, and freeing them
        lets the first and last words slide (on the re-performance benchmark they cost
        about 5 points of in-sync).

    Returns
    -------
    np.ndarray [shape=(n_dub,)] bool
    """
    a = np.asarray(activity, dtype=np.float64)
    if a.ndim != 1 or not np.isfinite(a).all():
        raise ParameterError(f"activity must be a finite 1-D array, got shape {a.shape}")
    if min_frames < 1 or margin < 0:
        raise ParameterError(f"need min_frames >= 1 and margin >= 0, got {min_frames}, {margin}")
    silent = np.concatenate([[False], a < threshold, [False]])
    flips = np.flatnonzero(np.diff(silent.astype(np.int8)))
    pause = np.zeros(a.shape[0], dtype=np.bool_)
    for start, stop in zip(flips[::2], flips[1::2], strict=True):
        if stop - start >= min_frames and (edges or (start > 0 and stop < a.shape[0])):
            pause[start + margin : stop - margin] = True
    return pause


def _check_band(costs, col_start) -> tuple[np.ndarray, np.ndarray]:
    costs = np.ascontiguousarray(costs, dtype=np.float32)
    if costs.ndim != 2 or costs.shape[0] < 1 or costs.shape[1] < 1:
        raise ParameterError(f"costs must be a non-empty (n_dub, width) matrix, got {costs.shape}")
    if np.isnan(costs).any() or np.isneginf(costs).any():
        raise ParameterError("costs contain NaN or -inf; mark forbidden cells with +inf")
    col_start = np.ascontiguousarray(col_start, dtype=np.int64)
    if col_start.shape != (costs.shape[0],):
        raise ParameterError(
            f"col_start must have one entry per cost row ({costs.shape[0]}), "
            f"got shape {col_start.shape}"
        )
    if col_start[0] < 0 or (np.diff(col_start) < 0).any():
        raise ParameterError("col_start must be non-negative and non-decreasing")
    return costs, col_start


def _check_range(name: str, cols) -> tuple[int, int]:
    lo, hi = (int(c) for c in cols)
    if lo > hi:
        raise ParameterError(f"{name} must be an inclusive (first, last) range, got {cols}")
    return lo, hi


def _unreachable(what: str) -> AlignmentError:
    return AlignmentError(f"no path satisfies the constraints: {what}; {_STRETCH_HINT}")


def solve_path(
    costs: np.ndarray,
    col_start: np.ndarray,
    *,
    start_cols: tuple[int, int],
    end_cols: tuple[int, int] | None = None,
    constraints: PathConstraints = PathConstraints(),
) -> WarpPath:
    """Cheapest slope-limited path through a banded cost matrix.

    Parameters
    ----------
    costs : np.ndarray [shape=(n_dub, width)] float32
        Row ``i`` holds the full-matrix columns ``col_start[i] .. col_start[i] + width - 1``;
        ``+inf`` marks forbidden cells.
    col_start : np.ndarray [shape=(n_dub,)] int
        First full-matrix column of each row, non-negative and non-decreasing.
    start_cols : (int, int)
        Inclusive range of columns the path may start in (row 0).
    end_cols : (int, int) or None
        Inclusive range of columns the path may end in (last row); None: any column.
    constraints : PathConstraints
        Slope limits, step pattern, penalties, pause, soft and fixed rows (masks of shape
        ``(n_dub,)``).

    Returns
    -------
    WarpPath
        Start to end; ties go to the lowest end column and the earliest step in the pattern.

    Raises
    ------
    ParameterError
        Malformed band or ranges, or masks of another length.
    AlignmentError
        No path reaches ``end_cols`` from ``start_cols`` through finite cells.
    """
    costs, col_start = _check_band(costs, col_start)
    start_lo, start_hi = _check_range("start_cols", start_cols)
    n, w = costs.shape
    constraints.check(n)
    moves = _moves(constraints, n)
    final, back = _forward(costs, col_start, (start_lo, start_hi), constraints, moves)
    end_col = _pick_end(
        final, col_start[-1] + np.arange(w), end_cols, costs[0], col_start[0], (start_lo, start_hi)
    )
    dub, pic = _backtrace(back, col_start, end_col, moves)
    return WarpPath(dub_frames=dub, pic_frames=pic, cost=float(final[end_col - col_start[-1]]) / n)


def _pick_end(final, final_cols, end_cols, first_row, first_col, start) -> int:
    """Lowest-cost column of the last row inside ``end_cols`` (lowest column on ties)."""
    first_cols = first_col + np.arange(first_row.shape[0])
    in_start = (first_cols >= start[0]) & (first_cols <= start[1])
    if not np.isfinite(first_row[in_start]).any():
        raise AlignmentError(
            f"no finite cost in row 0 within start columns {start[0]}..{start[1]}; "
            "the start range misses the band: widen --max-shift or check the picture padding"
        )
    allowed = np.isfinite(final)
    if end_cols is not None:
        lo, hi = _check_range("end_cols", end_cols)
        allowed &= (final_cols >= lo) & (final_cols <= hi)
    if not allowed.any():
        where = "the last row" if end_cols is None else f"end columns {end_cols[0]}..{end_cols[1]}"
        raise _unreachable(f"{where} cannot be reached from start columns {start[0]}..{start[1]}")
    masked = np.where(allowed, final, np.inf)
    return int(final_cols[int(np.argmin(masked))])


def solve_path_reference(
    costs: np.ndarray,
    col_start: np.ndarray,
    *,
    start_cols: tuple[int, int],
    end_cols: tuple[int, int] | None = None,
    constraints: PathConstraints = PathConstraints(),
) -> WarpPath:
    """Plain Python version of :func:`solve_path` on the full matrix (slow; for tests).

    Same parameters, semantics, tie-breaking and floating-point order of operations, so it
    returns identical paths and costs.
    """
    costs, col_start = _check_band(costs, col_start)
    start_lo, start_hi = _check_range("start_cols", start_cols)
    n, w = costs.shape
    constraints.check(n)
    pattern = constraints.pattern
    steps = [
        (
            int(a),
            int(b),
            [(int(lo), int(hi)) for lo, hi in zip(los[:a], his[:a], strict=True)],
            float(p),
        )
        for a, b, los, his, p in zip(
            pattern.rows,
            pattern.cols,
            pattern.cell_lo,
            pattern.cell_hi,
            pattern.penalty,
            strict=True,
        )
    ]
    soft_only = [b / a < constraints.min_slope - _SLOPE_TOL for a, b, _, _ in steps]
    pause = np.zeros(n, dtype=np.bool_) if constraints.pause_rows is None else constraints.pause_rows
    soft = np.zeros(n, dtype=np.bool_) if constraints.soft_rows is None else constraints.soft_rows
    fixed = np.zeros(n, dtype=np.bool_) if constraints.fixed_rows is None else constraints.fixed_rows
    locked = np.concatenate([[False], fixed[:-1] & fixed[1:]])  # row i entered from a fixed row, fixed itself
    pause_penalty = float(constraints.pause_penalty)
    pause_weight = float(constraints.pause_weight)
    down, across = len(steps), len(steps) + 1
    n_cols = int(col_start[-1]) + w
    full = np.full((n, n_cols), np.inf)
    for i in range(n):
        full[i, col_start[i] : col_start[i] + w] = costs[i]

    def sweep_across(i):
        for j in range(1, n_cols):
            if full[i, j] == np.inf:
                continue
            cand = acc[i, j - 1] + (pause_weight * max(full[i, j], 0.0) + pause_penalty)
            if cand < acc[i, j]:
                acc[i, j], back[i, j] = cand, across

    acc = np.full((n, n_cols), np.inf)
    back = np.full((n, n_cols), -1, dtype=np.int64)
    for j in range(max(start_lo, 0), min(start_hi, n_cols - 1) + 1):
        acc[0, j] = full[0, j]
    if pause[0]:
        sweep_across(0)
    for i in range(1, n):
        for j in range(n_cols):
            best, arg = np.inf, -1
            for s, (a, b, cells, pen) in enumerate(steps):
                i0, j0 = i - a, j - b
                if i0 < 0 or j0 < 0 or acc[i0, j0] == np.inf:
                    continue
                if soft_only[s] and not soft[i0 + 1 : i + 1].all():
                    continue
                if (a, b) != (1, 1) and locked[i0 + 1 : i + 1].any():
                    continue
                step = 0.0
                for k, (lo, hi) in enumerate(cells):
                    total = 0.0
                    for c in range(j0 + lo, j0 + hi + 1):
                        total += full[i0 + k + 1, c]
                    step += total / (hi - lo + 1)
                cand = acc[i0, j0] + step + pen
                if cand < best:
                    best, arg = cand, s
            if pause[i] and pause[i - 1]:
                cand = acc[i - 1, j] + full[i, j] + pause_penalty
                if cand < best:
                    best, arg = cand, down
            acc[i, j], back[i, j] = best, arg
        if pause[i]:
            sweep_across(i)

    end_col = _pick_end(acc[-1], np.arange(n_cols), end_cols, full[0], 0, (start_lo, start_hi))
    cell_runs = []
    i, j = n - 1, end_col
    while back[i, j] >= 0:
        code = back[i, j]
        if code == down:
            i0, j0, cells = i - 1, j, [(i, j)]
        elif code == across:
            i0, j0, cells = i, j - 1, [(i, j)]
        else:
            a, b, runs, _ = steps[code]
            i0, j0 = i - a, j - b
            cells = [(i0 + k + 1, j0 + c) for k, (lo, hi) in enumerate(runs) for c in range(lo, hi + 1)]
        cell_runs.append(cells)
        i, j = i0, j0
    assert i == 0
    path = [(0, j)] + [cell for run in reversed(cell_runs) for cell in run]
    dub = np.array([p[0] for p in path], dtype=np.int64)
    pic = np.array([p[1] for p in path], dtype=np.int64)
    return WarpPath(dub_frames=dub, pic_frames=pic, cost=float(acc[-1, end_col]) / n)


# ----------------------------------------------------------------------------------------------
# bands


def dense_band(
    n_dub: int,
    n_pic: int,
    *,
    start_cols: tuple[int, int],
    end_cols: tuple[int, int] | None = None,
    corridor: tuple[int, int] | None = None,
    constraints: PathConstraints = PathConstraints(),
) -> tuple[np.ndarray, int]:
    """Smallest band holding every cell a slope-limited path from ``start_cols`` can visit.

    The feasible region is the parallelogram opened by the slope limits from the start range
    (cut by the one closing on ``end_cols`` when given), with one column of margin for the
    rounding of the step cells, clipped to the columns ``0 .. n_pic - 1``.

    The slope limits are the constraints' ``lowest_slope`` (``soft_min_slope`` when there are
    soft rows, for every row) and ``max_slope``. With ``pause_rows`` the region opens further
    inside pauses: the lowest column grows by that lowest slope per row step only outside pauses
    (a pause may be squeezed to nothing), the highest by ``pause_max_slope`` per row step inside
    pauses (``(0, 1)`` moves are unbounded in the solver; this band is what limits how far a
    pause stretches, to about ``pause_max_slope`` times its length).

    Without ``corridor`` the band grows with ``(max_slope - min_slope) * n_dub``; for long
    inputs pass the largest shift you accept as ``corridor=(lo, hi)``: row ``i`` then keeps
    only the columns ``i + lo .. i + hi`` (a ``--max-shift`` of S seconds around a nominal
    offset o frames is ``(o - S * PATH_RATE, o + S * PATH_RATE)``). The band may hold a few
    cells outside the region (it has one width for all rows); those are merely unused by
    paths that respect the slope limits, except that a corridor is only guaranteed if the
    caller marks cells outside it +inf.

    Returns
    -------
    col_start : np.ndarray [shape=(n_dub,)] int64
        Non-decreasing; every band column lies in ``0 .. n_pic - 1``.
    width : int

    Raises
    ------
    AlignmentError
        Some row has no feasible column (the lengths are incompatible with the slope limits).
    """
    if n_dub < 1 or n_pic < 1:
        raise ParameterError(f"n_dub and n_pic must be >= 1, got {n_dub}, {n_pic}")
    start_lo, start_hi = _check_range("start_cols", start_cols)
    constraints.check(n_dub)
    min_slope, max_slope = constraints.lowest_slope, constraints.max_slope
    pause, pause_max_slope = constraints.pause_rows, constraints.pause_max_slope
    i = np.arange(n_dub)
    if pause is None:
        lo = start_lo + np.floor(min_slope * i).astype(np.int64) - 1
        hi = start_hi + np.ceil(max_slope * i).astype(np.int64) + 1
        if end_cols is not None:
            end_lo, end_hi = _check_range("end_cols", end_cols)
            rest = n_dub - 1 - i
            lo = np.maximum(lo, end_lo - np.ceil(max_slope * rest).astype(np.int64) - 1)
            hi = np.minimum(hi, end_hi - np.floor(min_slope * rest).astype(np.int64) + 1)
    else:
        # Least and most picture advance of each row step i -> i + 1: (1, 0) moves need both
        # rows in the pause, and a pause row's own (0, 1) run adds to either end of it.
        least = np.where(pause[:-1] & pause[1:], 0.0, float(min_slope))
        most = np.where(pause[:-1] | pause[1:], float(pause_max_slope), float(max_slope))
        run = np.where(pause, float(pause_max_slope), 0.0)
        gain_lo = np.concatenate([[0.0], np.cumsum(least)])
        gain_hi = np.concatenate([[0.0], np.cumsum(most)])
        eps = 1e-9  # cumulative sums of 2/3 must not lose a whole column to rounding
        lo = start_lo + np.floor(gain_lo + eps).astype(np.int64) - 1
        hi = start_hi + np.ceil(gain_hi + run[0] + run - eps).astype(np.int64) + 1
        if end_cols is not None:
            end_lo, end_hi = _check_range("end_cols", end_cols)
            rest_lo = gain_lo[-1] - gain_lo
            rest_hi = gain_hi[-1] - gain_hi + run + run[-1]
            lo = np.maximum(lo, end_lo - np.ceil(rest_hi - eps).astype(np.int64) - 1)
            hi = np.minimum(hi, end_hi - np.floor(rest_lo + eps).astype(np.int64) + 1)
    if corridor is not None:
        shift_lo, shift_hi = _check_range("corridor", corridor)
        lo = np.maximum(lo, i + shift_lo)
        hi = np.minimum(hi, i + shift_hi)
    lo = np.clip(lo, 0, n_pic - 1)
    hi = np.clip(hi, 0, n_pic - 1)
    if (hi < lo).any() or lo[0] > start_hi or hi[0] < start_lo:
        raise _unreachable(f"{n_dub} dub frames cannot span the allowed picture columns")
    width = int((hi - lo).max()) + 1
    col_start = np.clip(lo, 0, n_pic - width).astype(np.int64)
    return col_start, width


def band_around(
    path: WarpPath | tuple[np.ndarray, np.ndarray],
    n_dub: int,
    n_pic: int,
    *,
    radius: int,
    factor: int = 1,
) -> tuple[np.ndarray, int]:
    """A band of about ``+-radius`` columns around a (coarse) path, on the fine grid.

    Parameters
    ----------
    path : WarpPath or (dub_frames, pic_frames)
        Cells on a grid ``factor`` times coarser than the fine one (coarse cell ``(r, c)``
        pools the fine rows ``r * factor ..`` and columns ``c * factor ..``).
    n_dub, n_pic : int
        Fine grid size.
    radius : int
        Half width in fine columns; about ``2 * factor`` covers the coarse grid's rounding.
    factor : int
        Pooling factor of the path's grid.

    Returns
    -------
    col_start : np.ndarray [shape=(n_dub,)] int64
        Non-decreasing; every band column lies in ``0 .. n_pic - 1``.
    width : int
        ``2 * radius + 1``, or ``n_pic`` when that is smaller.
    """
    if isinstance(path, WarpPath):
        rows, cols = path.dub_frames, path.pic_frames
    else:
        rows, cols = (np.asarray(x, dtype=np.int64) for x in path)
    if rows.size == 0 or rows.shape != cols.shape:
        raise ParameterError("band_around needs a non-empty path with matching row/column arrays")
    if radius < 0 or factor < 1 or n_dub < 1 or n_pic < 1:
        raise ParameterError(
            f"need radius >= 0, factor >= 1, n_dub, n_pic >= 1; got {radius}, {factor}, "
            f"{n_dub}, {n_pic}"
        )
    coarse_rows = np.unique(rows)
    mean_col = np.bincount(rows, weights=cols)[coarse_rows] / np.bincount(rows)[coarse_rows]
    # Fine row i sits at coarse position (i + 0.5) / factor - 0.5 (cell centres line up);
    # past the path's ends the centre line continues at slope 1.
    u = (np.arange(n_dub) + 0.5) / factor - 0.5
    centre = np.interp(u, coarse_rows, mean_col)
    centre = np.where(u < coarse_rows[0], mean_col[0] + u - coarse_rows[0], centre)
    centre = np.where(u > coarse_rows[-1], mean_col[-1] + u - coarse_rows[-1], centre)
    centre = np.maximum.accumulate((centre + 0.5) * factor - 0.5)
    width = min(2 * int(radius) + 1, n_pic)
    col_start = np.clip(np.round(centre).astype(np.int64) - radius, 0, n_pic - width)
    return col_start, width


CostFn = Callable[[np.ndarray, int, int], np.ndarray]


def solve_coarse_to_fine(
    cost_fn: CostFn,
    n_dub: int,
    n_pic: int,
    *,
    start_cols: tuple[int, int],
    end_cols: tuple[int, int] | None = None,
    corridor: tuple[int, int] | None = None,
    constraints: PathConstraints = PathConstraints(),
    factor: int = 4,
    radius: int = 12,
    direct_max_cells: int = 30_000_000,
) -> WarpPath:
    """Solve directly in the dense band when it is small, else coarse first, then refine.

    Parameters
    ----------
    cost_fn : callable ``(col_start, width, factor) -> np.ndarray [shape=(len(col_start), width)]``
        Banded float32 costs on the grid pooled by ``factor`` (``factor=1``: the fine grid):
        row ``r`` holds the pooled columns ``col_start[r] .. col_start[r] + width - 1`` of the
        pooled rows ``0 .. len(col_start) - 1``. The bands asked for stay inside
        ``0 .. ceil(n_pic / factor) - 1``.
    n_dub, n_pic : int
        Fine grid size (``PATH_RATE`` frames).
    start_cols, end_cols
        As in :func:`solve_path`, on the fine grid.
    corridor : (int, int) or None
        As in :func:`dense_band`: the range of ``column - row`` offsets searched.
    constraints : PathConstraints
        As in :func:`solve_path`, masks on the fine grid; the coarse pass uses
        :meth:`PathConstraints.pooled`.
    factor : int
        Pooling factor of the coarse pass.
    radius : int
        Half width, in fine columns, of the band the fine pass searches around the coarse path.
    direct_max_cells : int
        Solve the dense band directly when it has at most this many cells.

    Returns
    -------
    WarpPath
        On the fine grid.
    """
    col_start, width = dense_band(
        n_dub, n_pic, start_cols=start_cols, end_cols=end_cols, corridor=corridor, constraints=constraints
    )
    if n_dub * width <= direct_max_cells or factor <= 1:
        costs = cost_fn(col_start, width, 1)
        return solve_path(costs, col_start, start_cols=start_cols, end_cols=end_cols, constraints=constraints)

    n_dub_c = -(-n_dub // factor)
    n_pic_c = -(-n_pic // factor)
    start_c = (start_cols[0] // factor, start_cols[1] // factor)
    # One pooled column of slack at the end absorbs the rounding of both lengths.
    end_c = None
    if end_cols is not None:
        end_c = (max(end_cols[0] // factor - 1, 0), min(end_cols[1] // factor + 1, n_pic_c - 1))
    corridor_c = None
    if corridor is not None:
        corridor_c = (corridor[0] // factor - 1, -(-corridor[1] // factor) + 1)
    coarse_constraints = constraints.pooled(factor)
    col_start_c, width_c = dense_band(
        n_dub_c, n_pic_c, start_cols=start_c, end_cols=end_c, corridor=corridor_c, constraints=coarse_constraints
    )
    coarse = solve_path(
        cost_fn(col_start_c, width_c, factor),
        col_start_c,
        start_cols=start_c,
        end_cols=end_c,
        constraints=coarse_constraints,
    )
    col_start, width = band_around(coarse, n_dub, n_pic, radius=radius, factor=factor)
    costs = cost_fn(col_start, width, 1)
    return solve_path(costs, col_start, start_cols=start_cols, end_cols=end_cols, constraints=constraints)
