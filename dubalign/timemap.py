"""The time map: a smooth, strictly monotone map between dub time and picture time.

The solver's path is a staircase on the ``PATH_RATE`` grid; :func:`path_to_timemap` turns it
into a piecewise-linear map whose local stretch stays inside the limits, so that it can be
saved, inspected and rendered. Rendering only follows the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError
from .path import PathConstraints, WarpPath
from .units import PATH_RATE

DEFAULT_SMOOTHING = 0.08  # seconds: time scale below which rate changes are smoothed away
DEFAULT_SPEECH_STIFFNESS = 10.0  # rate changes cost 10x more in speech, 10x less in pauses
# Weight of an anchor row against an ordinary row in the smoother's data term: large enough that
# the smoothed curve passes through the anchor, so the exact correction after clipping is small.
ANCHOR_WEIGHT = 1e4


@dataclass(frozen=True, eq=False)
class TimeMap:
    """Piecewise-linear map between dub time and picture time.

    dub_t : np.ndarray [shape=(n,)] float64
        Knot times on the dub, seconds, strictly increasing.
    pic_t : np.ndarray [shape=(n,)] float64
        The matching times on the picture, seconds, strictly increasing.

    Between the knots the map is linear; outside them it continues at slope 1 from the
    nearest knot, so times before the first or after the last knot keep their offset.
    """

    dub_t: np.ndarray
    pic_t: np.ndarray

    def __post_init__(self):
        dub_t = np.array(self.dub_t, dtype=np.float64)
        pic_t = np.array(self.pic_t, dtype=np.float64)
        if dub_t.ndim != 1 or dub_t.shape != pic_t.shape or dub_t.size < 2:
            raise ParameterError(
                f"a time map needs two 1-D knot arrays of equal length >= 2, "
                f"got shapes {dub_t.shape} and {pic_t.shape}"
            )
        if not (np.isfinite(dub_t).all() and np.isfinite(pic_t).all()):
            raise ParameterError("time map knots must be finite")
        if (np.diff(dub_t) <= 0).any() or (np.diff(pic_t) <= 0).any():
            raise ParameterError("time map knots must be strictly increasing on both axes")
        dub_t.flags.writeable = False
        pic_t.flags.writeable = False
        object.__setattr__(self, "dub_t", dub_t)
        object.__setattr__(self, "pic_t", pic_t)

    @classmethod
    def identity(cls, duration: float) -> TimeMap:
        """Picture time equals dub time (knots at 0 and ``duration`` seconds)."""
        return cls.shifted(0.0, duration=duration)

    @classmethod
    def shifted(cls, offset: float, *, duration: float = 1.0) -> TimeMap:
        """Picture time = dub time + ``offset``: the dub plays ``offset`` seconds later.

        ``duration`` only places the second knot; the map is exact at every time.
        """
        if not duration > 0:
            raise ParameterError(f"duration must be > 0, got {duration}")
        return cls(dub_t=np.array([0.0, duration]), pic_t=np.array([0.0, duration]) + offset)

    def to_picture(self, dub_times) -> np.ndarray:
        """Picture time of each dub time (seconds; any shape)."""
        return _interp_slope1(np.asarray(dub_times, dtype=np.float64), self.dub_t, self.pic_t)

    def to_dub(self, pic_times) -> np.ndarray:
        """Dub time of each picture time (seconds; any shape); the inverse of ``to_picture``."""
        return _interp_slope1(np.asarray(pic_times, dtype=np.float64), self.pic_t, self.dub_t)

    def stretch(self) -> np.ndarray:
        """Local slope ``d(pic) / d(dub)`` of each segment, shape ``(n - 1,)``.

        Above 1 the dub is slowed down (stretched), below 1 sped up.
        """
        return np.diff(self.pic_t) / np.diff(self.dub_t)

    def to_json(self) -> dict:
        """A JSON-serialisable dict; :meth:`from_json` restores the same map."""
        return {"dub_t": self.dub_t.tolist(), "pic_t": self.pic_t.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> TimeMap:
        """The map saved by :meth:`to_json`."""
        try:
            return cls(dub_t=np.asarray(d["dub_t"], float), pic_t=np.asarray(d["pic_t"], float))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(
                f"not a time map (need 'dub_t' and 'pic_t' lists of seconds): {exc}"
            ) from exc


def _interp_slope1(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    y = np.interp(x, xp, fp)
    y = np.where(x < xp[0], fp[0] + (x - xp[0]), y)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]), y)


def path_to_timemap(
    path: WarpPath,
    *,
    constraints: PathConstraints = PathConstraints(),  # noqa: B008 (frozen: one shared default is safe)
    rate: float = PATH_RATE,
    pic_origin: float = 0.0,
    smoothing: float = DEFAULT_SMOOTHING,
    dub_speech: np.ndarray | None = None,
    speech_stiffness: float = DEFAULT_SPEECH_STIFFNESS,
    anchors: Sequence[tuple[float, float]] = (),
) -> TimeMap:
    """Smooth, strictly monotone time map that follows a solver path.

    Each dub row takes the mean picture column it was matched to. That curve ``y`` is smoothed
    with a Whittaker smoother, ``argmin_x sum (x - y)^2 + sum lam_i (x[i-1] - 2 x[i] + x[i+1])^2``,
    whose curvature weight ``lam`` penalises changes of rate over about ``smoothing`` seconds.
    The local slopes are then clipped to the constraints' ``[min_slope, max_slope]`` and
    re-integrated with the offset that keeps the map closest (least squares) to ``y``, so the
    limits hold exactly.

    Silence can be squeezed or stretched freely, so with ``pause_rows`` the segments that touch
    a pause row are clipped to ``[pause_min_slope, pause_max_slope]`` instead, and the pause
    rows get the low curvature weight: the rate change of a squeezed or stretched pause stays
    inside it, and the words on either side keep ``[min_slope, max_slope]``. Segments that
    touch a soft row, and no pause row, are clipped to ``[soft_min_slope, max_slope]``. Segments
    between two ``fixed_rows`` get slope exactly 1: the dub plays there at its own speed.

    With ``anchors`` the map passes through each (an editor's sync point): the smoother holds
    the anchor rows, and after clipping, what each stretch between two anchors still misses is
    shared out over its segments as far as their limits allow (most of it in pauses, which have
    the most room; none in fixed segments). The map is then placed through the first anchor
    instead of by least squares; before the first anchor and after the last, what clipping took
    is given back as far as the limits allow, so the far ends stay where the smoothed path put
    them. The 10 ms segment holding an anchor gets slope 1, so the map passes through it exactly
    wherever it falls between two rows.

    Parameters
    ----------
    path : WarpPath
        Row ``i`` is dub time ``i / rate``, column ``j`` picture time ``pic_origin + j / rate``.
    constraints : PathConstraints
        The ones the path was solved with; the map needs ``min_slope <= 1 <= max_slope`` and
        masks with one entry per dub row of the path.
    rate : float
        Frames per second of both path axes.
    pic_origin : float
        Picture time of column 0, seconds (negative when the picture axis was padded before).
    smoothing : float
        Seconds; 0 keeps the path's own curve (still slope-clipped).
    dub_speech : np.ndarray [shape=(n_dub,)] or None
        Speech probability per dub row in ``[0, 1]``. When given, the curvature weight is
        multiplied by ``speech_stiffness ** (2 p - 1)``: rate changes move into pauses
        instead of bending words.
    speech_stiffness : float
        See ``dub_speech``; >= 1.
    anchors : sequence of (dub s, picture s)
        Points the map must pass through, increasing on both axes and more than two rows
        (``2 / rate`` s) apart on each. Anchors that contradict the slope limits or fixed rows
        are held as far as the limits allow, the first one exactly.

    Returns
    -------
    TimeMap
        One knot per dub row (every ``1 / rate`` seconds).
    """
    c = constraints
    if not c.min_slope <= 1 <= c.max_slope:
        raise ParameterError(f"a time map needs min_slope <= 1 <= max_slope, got {c.min_slope}, {c.max_slope}")
    if not (rate > 0 and smoothing >= 0 and speech_stiffness >= 1):
        raise ParameterError(
            f"need rate > 0, smoothing >= 0, speech_stiffness >= 1; "
            f"got {rate}, {smoothing}, {speech_stiffness}"
        )
    rows = np.asarray(path.dub_frames, dtype=np.int64)
    cols = np.asarray(path.pic_frames, dtype=np.float64)
    if rows.size == 0 or rows.min() < 0:
        raise ParameterError("the path is empty or has negative dub frames")
    n = int(rows.max()) + 1
    c.check(n)
    counts = np.bincount(rows, minlength=n)
    seen = counts > 0
    mean = np.bincount(rows, weights=cols, minlength=n)[seen] / counts[seen]
    # Rows a path skipped (not from solve_path, which matches every row) are interpolated.
    y = np.interp(np.arange(n), np.flatnonzero(seen), mean)
    anchor_rows, targets = _anchor_rows(anchors, n=n, rate=rate, pic_origin=pic_origin)
    y[anchor_rows] = targets

    if n == 1:
        x = y
    else:
        base = (smoothing * rate) ** 4  # cutoff of a 2nd-order Whittaker ~ lam^(1/4)
        lam = np.full(n, base)
        if dub_speech is not None:
            p = np.asarray(dub_speech, dtype=np.float64)
            if p.shape != (n,) or not np.isfinite(p).all():
                raise ParameterError(f"dub_speech must be finite with shape ({n},), got {p.shape}")
            lam = lam * speech_stiffness ** (2 * np.clip(p, 0, 1) - 1)
        if c.pause_rows is not None:
            pause = c.pause_rows
            # Curvatures that touch a pause row are free: any weight there makes the stiff
            # words next to a squeezed or stretched pause tilt towards its slope.
            near = pause.copy()
            near[1:] |= pause[:-1]
            near[:-1] |= pause[1:]
            lam = np.where(near, 0.0, lam)
        lo, hi, touches = _segment_limits(c, n)
        weight = None
        if len(anchor_rows):
            weight = np.ones(n)
            weight[anchor_rows] = ANCHOR_WEIGHT
        x = _whittaker(y, lam, weight)
        slopes = np.clip(np.diff(x), lo, hi)
        if c.pause_rows is not None:
            slopes = _keep_pause_totals(np.diff(x), slopes, lo, hi, touches)
        if len(anchor_rows):
            # before the first anchor and after the last, give back what clipping took, so the
            # far words stay where the smoothed path put them rather than hang off the anchor
            raw = np.diff(x)
            a, b = anchor_rows[0], anchor_rows[-1]
            slopes[:a] = _share_out(slopes[:a], raw[:a].sum(), lo[:a], hi[:a])
            slopes[b:] = _share_out(slopes[b:], raw[b:].sum(), lo[b:], hi[b:])
            x = _through_anchors(slopes, lo, hi, anchor_rows, targets)
        else:
            z = np.concatenate([[0.0], np.cumsum(slopes)])
            x = z + np.mean(y - z)

    if n == 1:  # a single row still needs two knots: continue at slope 1
        x = np.array([x[0], x[0] + 1.0])
        n = 2
    dub_t = np.arange(n) / rate
    return TimeMap(dub_t=dub_t, pic_t=pic_origin + x / rate)


def anchored_shift(
    n_rows: int,
    anchors: Sequence[tuple[float, float]],
    *,
    constraints: PathConstraints = PathConstraints(),  # noqa: B008 (frozen: one shared default is safe)
    rate: float = PATH_RATE,
    pic_origin: float = 0.0,
) -> TimeMap:
    """The dub at its own speed, moved to pass through ``anchors``, bent only where it must.

    Before the first anchor and after the last the map has slope 1. Between two anchors the
    difference from slope 1 is taken up by the segments that touch a pause row first, and only
    what they cannot absorb by the others, each within its limits (as in
    :func:`path_to_timemap`; fixed rows keep slope 1). One knot per row, like a solver's map.

    anchors : sequence of (dub s, picture s), at least one, as in :func:`path_to_timemap`
    """
    if n_rows < 2 or not rate > 0:
        raise ParameterError(f"need n_rows >= 2 and rate > 0, got {n_rows}, {rate}")
    constraints.check(n_rows)
    rows, targets = _anchor_rows(anchors, n=n_rows, rate=rate, pic_origin=pic_origin)
    if not len(rows):
        raise ParameterError("anchored_shift needs at least one anchor")
    lo, hi, touches = _segment_limits(constraints, n_rows)
    x = _through_anchors(np.ones(n_rows - 1), lo, hi, rows, targets, first=touches)
    return TimeMap(dub_t=np.arange(n_rows) / rate, pic_t=pic_origin + x / rate)


def _segment_limits(c: PathConstraints, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slope limits of each of the ``n - 1`` segments, and which segments touch a pause row.

    Pause segments: ``[pause_min_slope, pause_max_slope]``; soft ones ``[soft_min_slope,
    max_slope]``; between two fixed rows exactly 1; the rest ``[min_slope, max_slope]``.
    """
    lo = np.full(n - 1, float(c.min_slope))
    hi = np.full(n - 1, float(c.max_slope))
    touches = np.zeros(n - 1, dtype=bool)
    if c.pause_rows is not None:
        touches = c.pause_rows[:-1] | c.pause_rows[1:]
        lo[touches] = c.pause_min_slope
        hi[touches] = c.pause_max_slope
    if c.soft_rows is not None:
        soft = c.soft_rows
        lo = np.where((soft[:-1] | soft[1:]) & ~touches, c.soft_min_slope, lo)
    if c.fixed_rows is not None:
        fixed = c.fixed_rows[:-1] & c.fixed_rows[1:]  # fixed rows are no pause rows
        lo = np.where(fixed, 1.0, lo)
        hi = np.where(fixed, 1.0, hi)
    return lo, hi, touches


def _anchor_rows(
    anchors: Sequence[tuple[float, float]], *, n: int, rate: float, pic_origin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Anchor rows and the picture column each must map to: [shape=(m,)] int64 and float64.

    A (dub s, picture s) point between rows ``r`` and ``r + 1`` becomes two anchors, one on
    each, on a line of slope 1 through the point (one anchor when it falls on a row, or past
    the last row, where the map continues at slope 1 anyway).
    """
    if not len(anchors):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    pts = np.asarray(anchors, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise ParameterError(f"anchors must be finite (dub s, picture s) pairs, got {anchors!r}")
    rows, targets = [], []
    for dub_s, pic_s in pts:
        exact = dub_s * rate
        col = (pic_s - pic_origin) * rate
        r = int(np.floor(exact))
        if not 0 <= exact <= n - 1 + 0.5:
            raise ParameterError(f"anchor {dub_s:g} s lies outside the path's dub rows (0 .. {(n - 1) / rate:g} s)")
        rows.append(min(r, n - 1))
        targets.append(col - (exact - rows[-1]))
        if r + 1 <= n - 1 and exact > r:
            rows.append(r + 1)
            targets.append(col + (r + 1 - exact))
    rows_a, targets_a = np.array(rows, dtype=np.int64), np.array(targets)
    if (np.diff(rows_a) <= 0).any() or (np.diff(targets_a) <= 0).any():
        raise ParameterError(
            f"anchors must increase on both axes and lie more than {2 / rate:g} s apart on each, got {anchors!r}"
        )
    return rows_a, targets_a


def _through_anchors(
    slopes: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    *,
    first: np.ndarray | None = None,
) -> np.ndarray:
    """Integrate ``slopes`` into a curve through ``(rows, targets)``: [shape=(n,)].

    Between two anchors the slopes are changed, within ``[lo, hi]``, to add up to the rise
    between them (the segments in ``first`` give first); the curve is placed through the first
    anchor, and falls short of later ones only where the limits cannot reach them.
    """
    slopes = slopes.copy()
    for a, b, ta, tb in zip(rows[:-1], rows[1:], targets[:-1], targets[1:], strict=True):
        seg = slice(a, b)
        if first is not None and first[seg].any():
            part = first[seg]
            slopes[seg][part] = _share_out(slopes[seg][part], tb - ta - slopes[seg][~part].sum(), lo[seg][part],
                                           hi[seg][part])
        slopes[seg] = _share_out(slopes[seg], tb - ta, lo[seg], hi[seg])
    z = np.concatenate([[0.0], np.cumsum(slopes)])
    return z + (targets[0] - z[rows[0]])


def _share_out(slopes: np.ndarray, total: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``slopes`` changed so they sum to ``total``, each in proportion to its room to move.

    slopes, lo, hi : np.ndarray [shape=(n_segments,)]; the result stays inside ``[lo, hi]``, and
    falls short of ``total`` only when the limits cannot reach it.
    """
    missing = total - slopes.sum()
    room = hi - slopes if missing > 0 else slopes - lo
    if missing == 0 or room.sum() <= 0:
        return slopes
    return slopes + np.sign(missing) * room * min(abs(missing) / room.sum(), 1.0)


def _keep_pause_totals(
    raw: np.ndarray, clipped: np.ndarray, lo: np.ndarray, hi: np.ndarray, free: np.ndarray
) -> np.ndarray:
    """Give each run of pause segments back what clipping took, as far as its limits allow.

    A pause matched to a long picture gap may need a slope above its limit on one row and
    less on the next; clipping each segment alone would shift every later word instead.

    raw, clipped, lo, hi : np.ndarray [shape=(n_segments,)]
    free : np.ndarray [shape=(n_segments,)] bool
        Segments that touch a pause row.
    """
    out = clipped.copy()
    flips = np.flatnonzero(np.diff(np.concatenate([[0], free.astype(np.int8), [0]])))
    for a, b in zip(flips[::2], flips[1::2], strict=True):
        target = np.clip(raw[a:b].sum(), lo[a:b].sum(), hi[a:b].sum())
        missing = target - out[a:b].sum()
        room = hi[a:b] - out[a:b] if missing > 0 else out[a:b] - lo[a:b]
        if room.sum() > 0:
            out[a:b] += np.sign(missing) * room * min(abs(missing) / room.sum(), 1.0)
    return out


def _whittaker(y: np.ndarray, lam: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Solve ``(V + D' diag(w) D) x = V y``, D the second difference, w the curvature weights.

    y, lam : np.ndarray [shape=(n,)]
        ``lam[i]`` weighs the curvature at row ``i`` (used for rows ``1 .. n - 2``).
    weight : np.ndarray [shape=(n,)] or None
        The diagonal of V, how closely each row is held to ``y``; None: all 1.
    """
    n = y.shape[0]
    if n < 3 or not lam.any():
        return y.copy()
    w = lam[1:-1]  # one weight per second difference, centred on rows 1 .. n - 2
    # D' diag(w) D is symmetric pentadiagonal: its diagonal and the two upper bands.
    d0 = np.zeros(n)
    d1 = np.zeros(n - 1)
    d2 = np.zeros(n - 2)
    # Difference k touches rows k, k+1, k+2 with coefficients (1, -2, 1).
    d0[:-2] += w
    d0[1:-1] += 4 * w
    d0[2:] += w
    d1[:-1] += -2 * w
    d1[1:] += -2 * w
    d2 += w
    if weight is None:
        return solve_pentadiagonal(1.0 + d0, d1, d2, y)
    return solve_pentadiagonal(weight + d0, d1, d2, weight * y)


def solve_pentadiagonal(d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``A x = b`` for a symmetric positive-definite pentadiagonal ``A`` (LDL', no pivoting).

    What ``scipy.linalg.solveh_banded`` does for this band, without importing scipy (a third of a
    second of a short line's start-up). The recursion is sequential, so it runs on Python floats:
    about 20 ms for a minute of dub at PATH_RATE (6,000 rows) on the development machine.

    d0 : np.ndarray [shape=(n,)]
        The diagonal, ``A[i, i]``.
    d1, d2 : np.ndarray [shape=(n - 1,)], [shape=(n - 2,)]
        The first and second upper bands, ``A[i, i + 1]`` and ``A[i, i + 2]``.
    b : np.ndarray [shape=(n,)]
    """
    a0, a1, a2, z = (np.asarray(v, dtype=np.float64).tolist() for v in (d0, d1, d2, b))
    n = len(a0)
    d = [0.0] * n  # D of A = L D L'
    e = [0.0] * n  # L[i, i - 1]
    f = [0.0] * n  # L[i, i - 2]
    for i in range(n):
        if i >= 2:
            f[i] = a2[i - 2] / d[i - 2]
        if i >= 1:
            e[i] = (a1[i - 1] - (f[i] * d[i - 2] * e[i - 1] if i >= 2 else 0.0)) / d[i - 1]
        d[i] = a0[i] - (e[i] * e[i] * d[i - 1] if i >= 1 else 0.0) - (
            f[i] * f[i] * d[i - 2] if i >= 2 else 0.0)
        if not d[i] > 0.0:
            raise np.linalg.LinAlgError("the smoothing system is not positive definite")
    for i in range(1, n):  # L z = b
        z[i] -= e[i] * z[i - 1] + (f[i] * z[i - 2] if i >= 2 else 0.0)
    x = [zi / di for zi, di in zip(z, d, strict=True)]
    for i in range(n - 2, -1, -1):  # L' x = D^-1 z
        x[i] -= e[i + 1] * x[i + 1] + (f[i + 2] * x[i + 2] if i + 2 < n else 0.0)
    return np.array(x)
