"""The sync-error matrix: how badly each dub moment fits each picture moment.

Rows are dub frames at PATH_RATE (row i = dub time i / PATH_RATE). Columns are picture frames on
the same grid, padded by ``pad`` seconds on both sides so that the dub may start before the picture
or end after it (column j = picture time ``j / PATH_RATE - pad``). Only a band of columns is kept
per row (``col_start[i] .. col_start[i] + width - 1``), so memory stays linear in the dub's length.

Two sources of cost, each z-scored per row inside the band so that they mix on one scale:
- lips: the distance between the lip embedding of the picture frame and the audio embedding of the
  dub frame (the dual encoder, or the interim hand-made features);
- guide: the distance between the dub's and the picture audio's normalised log-mel frames, when the
  picture has an audio track, weighted by how trustworthy that track looks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import frame_energy_db, log_mel, normalize_mel
from .lips import LipTrack
from .units import PATH_RATE

ROW_CHUNK = 256  # rows computed at once: bounds the temporary (ROW_CHUNK, width, dim) gather
GUIDE_SNR_MID_DB = 12.0  # picture-audio dynamic range (dB) at which the guide gets half its weight
GUIDE_SNR_SLOPE_DB = 4.0  # how quickly the guide weight moves around that midpoint


@dataclass(frozen=True)
class SyncMatrix:
    """Banded cost matrix of dub frames against picture frames.

    costs : [shape=(n_dub, width)] float32, +inf outside the picture-axis range
    col_start : [shape=(n_dub,)] int64, first full-matrix column of each row
    pad : seconds of padding before picture time 0 (column 0 = picture time -pad)
    n_pic : number of columns of the full matrix
    guide_weight : weight of the guide term in [0, 1] (0 without a usable picture audio)
    lip_contrast, guide_contrast : how sharply each source singles out a column, for the report
    """

    costs: np.ndarray
    col_start: np.ndarray
    pad: float
    n_pic: int
    guide_weight: float
    lip_contrast: float
    guide_contrast: float

    @property
    def n_dub(self) -> int:
        return self.costs.shape[0]

    @property
    def width(self) -> int:
        return self.costs.shape[1]


def picture_grid(duration: float, pad: float) -> np.ndarray:
    """Picture times of the columns: [shape=(n_pic,)] from -pad to duration + pad at PATH_RATE."""
    n = int(np.ceil((duration + 2 * pad) * PATH_RATE)) + 1
    return np.arange(n) / PATH_RATE - pad


def resample_rows(values: np.ndarray, times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of per-frame rows at ``times`` onto ``grid`` (both seconds, increasing).

    values : [shape=(n_frames, dim)]; returns [shape=(len(grid), dim)], held constant past the ends.
    """
    idx = np.clip(np.searchsorted(times, grid) - 1, 0, max(len(times) - 2, 0))
    if len(times) < 2:
        return np.repeat(values[:1], len(grid), axis=0)
    t0, t1 = times[idx], times[idx + 1]
    w = np.clip((grid - t0) / np.maximum(t1 - t0, 1e-9), 0.0, 1.0)[:, None]
    return (1 - w) * values[idx] + w * values[idx + 1]


def frame_validity(track: LipTrack, grid: np.ndarray) -> np.ndarray:
    """True for grid times that fall within half a frame of a frame that shows the face."""
    if track.n_frames == 0:
        return np.zeros(len(grid), bool)
    nearest = np.clip(np.searchsorted(track.times, grid), 1, track.n_frames - 1)
    left = np.where(grid - track.times[nearest - 1] < track.times[nearest] - grid, nearest - 1, nearest)
    frame_dur = np.median(np.diff(track.times)) if track.n_frames > 1 else 1.0
    inside = (grid >= track.times[0] - frame_dur / 2) & (grid <= track.times[-1] + frame_dur / 2)
    return track.present[left] & inside


def banded_distance(
    rows: np.ndarray, cols: np.ndarray, col_start: np.ndarray, width: int, *, metric: str
) -> np.ndarray:
    """Distances between row vectors and a band of column vectors.

    rows : [shape=(n_dub, dim)], cols : [shape=(n_pic, dim)]; metric "cosine" (1 - dot product of
    unit vectors) or "sqeuclidean" (mean squared difference). Cells past the last column are inf.
    Returns [shape=(n_dub, width)] float32.
    """
    n_pic = len(cols)
    out = np.empty((len(rows), width), np.float32)
    offsets = np.arange(width)
    for lo in range(0, len(rows), ROW_CHUNK):
        hi = min(lo + ROW_CHUNK, len(rows))
        idx = col_start[lo:hi, None] + offsets
        band = cols[np.clip(idx, 0, n_pic - 1)]  # (rows, width, dim)
        r = rows[lo:hi, None, :]
        if metric == "cosine":
            d = 1.0 - np.sum(band * r, axis=-1)
        else:
            d = np.mean((band - r) ** 2, axis=-1)
        d[(idx < 0) | (idx >= n_pic)] = np.inf
        out[lo:hi] = d
    return out


def zscore_rows(costs: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Each row to zero mean and unit spread over its finite (and valid) cells; others to 0 (neutral).

    valid : optional [shape=costs.shape] bool of cells that carry evidence.
    """
    finite = np.isfinite(costs) if valid is None else np.isfinite(costs) & valid
    x = np.where(finite, costs, 0.0)
    n = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    mean = x.sum(axis=1, keepdims=True) / n
    var = (np.where(finite, costs - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / n
    z = np.where(finite, (costs - mean) / np.sqrt(var + 1e-8), 0.0)
    return z.astype(np.float32)


def contrast(z: np.ndarray) -> float:
    """How far below its row the best cell lies, in standard deviations (median over rows)."""
    return float(np.median(-z.min(axis=1))) if z.size else 0.0


def guide_weight_from_audio(y16: np.ndarray) -> float:
    """Trust in the picture audio as a guide, from its speech-to-noise dynamic range.

    Clean production sound has speech peaks far above the floor; a track under steady noise or
    babble does not. Returns a weight in [0, 1].
    """
    db = frame_energy_db(y16)
    if len(db) < 10 or np.max(db) < -70:
        return 0.0
    dyn = float(np.percentile(db, 95) - np.percentile(db, 10))
    return float(1.0 / (1.0 + np.exp(-(dyn - GUIDE_SNR_MID_DB) / GUIDE_SNR_SLOPE_DB)))


def lip_costs(
    track: LipTrack, dub_mel: np.ndarray, model, grid: np.ndarray, col_start: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lip cost band and its validity mask (columns whose picture frame shows the face)."""
    video = model.embed_video(track)  # (n_frames, E)
    audio = model.embed_audio(dub_mel)  # (n_dub, E)
    v = resample_rows(video, track.times, grid).astype(np.float32)
    if model.metric == "cosine":
        v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-8
    costs = banded_distance(audio.astype(np.float32), v, col_start, width, metric=model.metric)
    valid_col = frame_validity(track, grid)
    idx = np.clip(col_start[:, None] + np.arange(width), 0, len(grid) - 1)
    return costs, valid_col[idx]


def guide_costs(
    dub_mel: np.ndarray, picture_y16: np.ndarray, grid: np.ndarray, col_start: np.ndarray, width: int
) -> np.ndarray:
    """Dub-vs-picture-audio cost band from per-utterance normalised log-mel (cosine distance)."""
    pic_mel = normalize_mel(log_mel(picture_y16))
    n = len(pic_mel)
    # picture audio frame k sits at picture time k / PATH_RATE; columns before 0 or past the end
    # of the track get the quietest frame (silence), which is what the picture plays there
    frames = np.round(grid * PATH_RATE).astype(int)
    quiet = pic_mel[np.argmin(pic_mel.mean(axis=1))]
    cols = np.where(((frames >= 0) & (frames < n))[:, None], pic_mel[np.clip(frames, 0, n - 1)], quiet)
    cols /= np.linalg.norm(cols, axis=1, keepdims=True) + 1e-8
    rows = normalize_mel(dub_mel)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True) + 1e-8
    return banded_distance(rows, cols.astype(np.float32), col_start, width, metric="cosine")


def build_sync_matrix(
    track: LipTrack,
    dub_mel: np.ndarray,
    model,
    *,
    duration: float,
    pad: float,
    col_start: np.ndarray,
    width: int,
    picture_y16: np.ndarray | None = None,
) -> SyncMatrix:
    """Fuse lip and guide costs over the band ``col_start``/``width``.

    dub_mel : [shape=(n_dub, N_MELS)] raw log-mel of the dub at FEATURE_RATE (= PATH_RATE)
    picture_y16 : the picture's own audio at ANALYSIS_SR on picture time, or None (lips only)
    """
    grid = picture_grid(duration, pad)
    lip, lip_valid = lip_costs(track, dub_mel, model, grid, col_start, width)
    lip_z = zscore_rows(lip, lip_valid)
    finite = np.isfinite(lip)
    guide_w, guide_c = 0.0, 0.0
    fused = lip_z
    if picture_y16 is not None:
        guide_w = guide_weight_from_audio(picture_y16)
        if guide_w > 0:
            g_z = zscore_rows(guide_costs(dub_mel, picture_y16, grid, col_start, width))
            guide_c = contrast(g_z)
            fused = (1.0 - guide_w) * lip_z + guide_w * g_z
    costs = np.where(finite, fused, np.inf).astype(np.float32)
    return SyncMatrix(
        costs=costs, col_start=col_start, pad=pad, n_pic=len(grid), guide_weight=guide_w,
        lip_contrast=contrast(lip_z), guide_contrast=guide_c,
    )
