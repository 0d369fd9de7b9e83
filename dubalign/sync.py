"""The sync-error matrix: how badly each dub moment fits each picture moment.

Rows are dub frames at PATH_RATE (row i = dub time i / PATH_RATE). Columns are picture frames on
the same grid, padded by ``pad`` seconds on both sides so that the dub may start before the picture
or end after it (column j = picture time ``j / PATH_RATE - pad``). Only a band of columns is kept
per row (``col_start[i] .. col_start[i] + width - 1``), so memory stays linear in the dub's length.

Two sources of cost, each z-scored per row inside the band so that they mix on one scale:
- lips: the distance between the lip embedding of the picture frame and the audio embedding of the
  dub frame (the dual encoder);
- guide: the distance between the dub's and the picture audio's normalised log-mel frames, when the
  picture has an audio track, weighted by how trustworthy that track looks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from .audio import frame_energy_db, log_mel
from .lips import LipTrack, mouth_activity
from .units import ANALYSIS_SR, PATH_RATE

BAND_BLOCK_ROWS = 256  # dub rows whose banded distances come from one matrix product (banded_distance)
N_CEPSTRA = 13  # cepstral coefficients of the guide features (c0, the level, left out)
# The guide of the dub's own performance (see GuideTrust.same_performance) keeps the finer spectral
# detail as well (up to cepstrum 30 of 40 mel bands: the low harmonics, so the intonation), which a
# new performance of the line does not share. Benchmark dev warped cases, noisy pictures, guide alone
# on the pipeline's path: 13 cepstra 77.1, 20: 83.4, 30: 88.4, 39: 88.2 % in sync; fused with the
# lips at the guide temperatures below 0.04 / 0.03 / 0.02 / 0.015: 87.9 / 89.3 / 89.6 / 89.9 (13
# cepstra at 0.04: 83.6). Clean warped 92.9 -> 93.3. Given to every picture, 30 cepstra lost on new
# performances (clean natural 93.1 -> 88.0, fluent 92.5 -> 91.7), hence the switch.
FINE_CEPSTRA = 30
DELTA_WIDTH = 5  # frames over which the guide's deltas are taken
# Softmax temperatures of the two sources' distances. Only their ratio (and the path penalties)
# matter; chosen on the benchmark's warped dev cases, where a flat optimum spans ratios 3 to 4
# (noisy pictures: guide alone 86 %, fused 92 to 93 % in sync on the truth maps).
LIP_TEMPERATURE = 0.15  # the trained encoder's cosine distances
GUIDE_TEMPERATURE = 0.04  # the guide's cepstral cosine distances
FINE_GUIDE_TEMPERATURE = 0.02  # the same with FINE_CEPSTRA (the dub's own performance)
# Averaging each cell's lip distance along its diagonal (a longer context bought at the cost matrix)
# was measured and not kept: +-240 ms gave 72.4 / 47.7 / 82.6 / 81.2 % lips-only in sync on the dev
# warped / spliced / fluent / natural cases against 70.1 / 52.8 / 83.1 / 76.0, and lost on
# ../shared/eval's warped cases (models/MODEL_CARD.md, "Inference-time levers").
# Weight of |dub speech activity - picture mouth activity| added to the fused cost (in the same
# negative-log-probability units). Lips-only in-sync % on the benchmark's dev cases at weights
# 0 / 1.5 / 3: warped 57.5 / 60.0 / 57.9, re-performance 29.3 / 32.0 / 34.0.
ACTIVITY_WEIGHT = 2.0
# The envelope agreement of the aligned dub with the picture audio is about 0.9 for clean
# production sound, 0.2 to 0.8 under babble at -5 dB SNR, and can fall to ~0.03 under louder
# babble of the same voice, where the guide still helps a little. Audio that does not follow the
# dub at all (agreement at or below GUIDE_MIN_AGREEMENT) is dropped; above, the weight rises to
# full at GUIDE_FULL_AGREEMENT. Tuned on the benchmark's dev cases: full weight from 0.0 let
# babble over a new performance outvote the lips (noisy fluent 60.7, natural 65.9 % in sync);
# from 0.5: 68.6 and 68.1, spliced 37.2 -> 44.1, warped noisy 81.3 -> 80.9, clean unchanged.
GUIDE_MIN_AGREEMENT = -0.1  # at or below this the picture's audio is not the line: dropped
GUIDE_FULL_AGREEMENT = 0.5  # the guide counts in full from this agreement
# A noisy guide is only worth its weight when it is the dub's own performance (an alternate mic,
# the same take re-timed): a new performance under babble outvotes the lips with the babble's
# speech (benchmark dev, noisy pictures: lips alone 83.1 / 76.0 / 52.8 % in sync on the fluent,
# natural and spliced re-performances, fused with the noisy guide 68.6 / 68.1 / 44.1). Two ramps,
# low to high, tuned on those dev cases; the guide keeps its weight when either says so:
# - the picture audio's spread between speech peaks and noise floor (audio_range_db): 5 to 11 dB
#   under -5 dB babble, 14 to 45 dB for clean production sound;
# - the pitch contrast of the picture audio against the placed dub (same_take_contrast): the same
#   take 0.074 to 0.26 under babble (median 0.16) and 0.39 to 0.68 clean; new performances of the
#   line at most 0.065 under babble and 0.19 clean.
# With this trust (and the lips' proportional aim, pipeline.LIPS_ONLY_AIM_S), noisy fluent / natural /
# spliced read 83.5 / 76.6 / 52.8 and noisy warped 80.9 -> 83.6; clean unchanged.
GUIDE_CLEAN_RANGE_DB = (12.0, 20.0)
GUIDE_SAME_TAKE = (0.05, 0.10)
# The fine guide is used when the pitch contrast shows the dub's own performance: at least
# SAME_PERFORMANCE_CONTRAST outright, or SAME_PERFORMANCE_PER_DB per dB of the picture audio's range
# (the same take's contrast falls with the noise). Dev benchmark cases: new performances of the line
# at most 0.19 (clean) and 0.07 (under babble), per 100 dB of range -0.12 to 0.99; the same take
# 0.39 to 0.68 clean and 0.01 to 0.26 under -5 dB babble (per 100 dB 1.3 to 4.8 and 0.15 to 3.3,
# 20 of 22 from 1.18 up). ../shared/eval's warped cases (checked after the choice of 0.011): clean
# 0.29 to 0.50, and its noisy pictures, whose babble leaves gaps, 0.10 to 0.32 at 17 to 55 dB of
# range, which the ratio alone missed (noisy 83.2 % in sync with the ratio alone, 84.9 with both).
SAME_PERFORMANCE_CONTRAST = 0.25
SAME_PERFORMANCE_PER_DB = 0.011
DIGITAL_SILENCE_DB = -120.0  # frames below this are the zeros before a track starts, not a noise floor
PITCH_WIN = 1024  # samples at ANALYSIS_SR (64 ms): resolves the harmonics of voices from 80 Hz up
PITCH_QUEFRENCY = (32, 200)  # samples: the cepstrum's pitch region, periods 2 to 12.5 ms (500 to 80 Hz)
PITCH_CHANCE_SHIFTS_S = (-0.9, -0.7, -0.5, -0.3, 0.3, 0.5, 0.7, 0.9)  # s: offsets that give chance level
PITCH_MAX_FRAMES = 2000  # speech frames compared at most (evenly spread), to bound the cost on long lines


@dataclass(frozen=True)
class SyncMatrix:
    """Banded cost matrix of dub frames against picture frames.

    costs : [shape=(n_dub, width)] float32, +inf outside the picture-axis range
    col_start : [shape=(n_dub,)] int64, first full-matrix column of each row
    """

    costs: np.ndarray
    col_start: np.ndarray


@dataclass(frozen=True)
class SyncFeatures:
    """Per-frame vectors on both axes, from which any band of the cost matrix is computed.

    lip_dub : [shape=(n_dub, E)] unit audio embeddings of the dub
    lip_pic : [shape=(n_pic, E)] unit lip embeddings of the picture on the column grid
    lip_valid : [shape=(n_pic,)] bool, columns whose frame shows the face
    lip_temperature : softmax temperature of the lip distances (higher: weaker evidence)
    dub_activity : [shape=(n_dub,)] speech activity of the dub in [0, 1]
    dub_pause : [shape=(n_dub,)] bool, dub frames inside a pause (their lip cost is neutral)
    pic_activity : [shape=(n_pic,)] how much the mouth speaks in each picture frame, in [0, 1]
    guide_dub, guide_pic : [shape=(n_dub, M)], [shape=(n_pic, M)] unit cepstral vectors, or None
    guide_weight : weight of the guide term in [0, 1] (0 without picture audio; set from
        :func:`guide_agreement` by the orchestrator)
    guide_temperature : softmax temperature of the guide distances (GUIDE_TEMPERATURE, or
        FINE_GUIDE_TEMPERATURE for the fine guide of the dub's own performance)
    pad : seconds of padding before picture time 0 (column 0 = picture time -pad)
    factor : how many PATH_RATE frames each row/column stands for (1, or pooled)
    """

    lip_dub: np.ndarray
    lip_pic: np.ndarray
    lip_valid: np.ndarray
    lip_temperature: float
    dub_activity: np.ndarray
    dub_pause: np.ndarray
    pic_activity: np.ndarray
    guide_dub: np.ndarray | None
    guide_pic: np.ndarray | None
    guide_weight: float
    pad: float
    factor: int = 1
    guide_temperature: float = GUIDE_TEMPERATURE

    @property
    def n_dub(self) -> int:
        return len(self.lip_dub)

    @property
    def n_pic(self) -> int:
        return len(self.lip_pic)

    def pooled(self, factor: int) -> SyncFeatures:
        """The same features averaged over ``factor`` frames on both axes (for a coarse pass)."""
        if factor == 1:
            return self

        def pool(x):
            if x is None:
                return None
            n = -(-len(x) // factor) * factor
            padded = np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)])
            return padded.reshape(n // factor, factor, *x.shape[1:]).mean(axis=1)

        def unit(x):
            return None if x is None else x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)

        return SyncFeatures(
            lip_dub=unit(pool(self.lip_dub)), lip_pic=unit(pool(self.lip_pic)),
            lip_valid=pool(self.lip_valid.astype(float)) > 0.5, lip_temperature=self.lip_temperature,
            dub_activity=pool(self.dub_activity), dub_pause=pool(self.dub_pause.astype(float)) > 0,
            pic_activity=pool(self.pic_activity),
            guide_dub=unit(pool(self.guide_dub)), guide_pic=unit(pool(self.guide_pic)),
            guide_weight=self.guide_weight, pad=self.pad, factor=self.factor * factor,
            guide_temperature=self.guide_temperature,
        )

    def band(self, col_start: np.ndarray, width: int) -> SyncMatrix:
        """Fused costs over a band (cells past the picture axis are +inf).

        Each source's distances become per-row negative log-probabilities (a softmax over the
        row's picture frames), and the two are added: evidence from independent sources combines,
        and a row where one source is unsure (flat) leaves the decision to the other.
        """
        lip = banded_distance(self.lip_dub, self.lip_pic, col_start, width)
        idx = np.clip(col_start[:, None] + np.arange(width), 0, self.n_pic - 1)
        fused = row_neg_log_softmax(lip, self.lip_temperature, valid=self.lip_valid[idx])
        # a pause in the dub says nothing about which mouth shape it meets: neutral lip cost...
        if self.dub_pause.any():
            pause = fused[self.dub_pause]
            finite = np.isfinite(pause)
            total = np.where(finite, pause, 0.0).sum(axis=1, keepdims=True)
            mean = total / np.maximum(finite.sum(axis=1, keepdims=True), 1)
            fused[self.dub_pause] = np.where(finite, mean, np.inf)
        # ...but speech belongs where the mouth moves, and pauses where it rests
        fused += ACTIVITY_WEIGHT * np.abs(self.dub_activity[:, None] - self.pic_activity[idx])
        if self.guide_dub is not None and self.guide_weight > 0:
            guide = banded_distance(self.guide_dub, self.guide_pic, col_start, width)
            fused += self.guide_weight * row_neg_log_softmax(guide, self.guide_temperature)
        costs = np.where(np.isfinite(lip), fused, np.inf).astype(np.float32)
        return SyncMatrix(costs=costs, col_start=col_start)


def picture_grid(duration: float, pad: float) -> np.ndarray:
    """Picture times of the columns: [shape=(n_pic,)] from -pad to duration + pad at PATH_RATE."""
    n = int(np.ceil((duration + 2 * pad) * PATH_RATE)) + 1
    return np.arange(n) / PATH_RATE - pad


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
    rows: np.ndarray, cols: np.ndarray, col_start: np.ndarray, width: int
) -> np.ndarray:
    """Cosine distances (1 - dot product) between unit row vectors and a band of unit column vectors.

    rows : [shape=(n_dub, dim)], cols : [shape=(n_pic, dim)]. Cells past the last column are inf.
    Returns [shape=(n_dub, width)] float32. One matrix product per BAND_BLOCK_ROWS rows, over the
    columns their band spans (about 4x faster than gathering each row's band of vectors).
    """
    n_pic = len(cols)
    out = np.full((len(rows), width), np.inf, np.float32)
    offsets = np.arange(width)
    for lo in range(0, len(rows), BAND_BLOCK_ROWS):
        hi = min(lo + BAND_BLOCK_ROWS, len(rows))
        c0 = int(np.clip(col_start[lo:hi].min(), 0, n_pic))
        c1 = int(np.clip(col_start[lo:hi].max() + width, c0, n_pic))
        if c1 == c0:  # the whole block lies past the picture axis
            continue
        dist = 1.0 - rows[lo:hi] @ cols[c0:c1].T
        idx = col_start[lo:hi, None] + offsets
        local = np.clip(idx - c0, 0, c1 - c0 - 1)
        out[lo:hi] = np.where((idx >= 0) & (idx < n_pic), np.take_along_axis(dist, local, axis=1), np.inf)
    return out


def row_neg_log_softmax(costs: np.ndarray, temperature: float, *, valid: np.ndarray | None = None) -> np.ndarray:
    """-log softmax(-costs / temperature) over each row's finite, valid cells.

    Cells that are finite but not valid (no face in that frame) carry no evidence: they get the
    row's mean, so they neither attract nor repel the path. Infinite cells stay infinite.
    valid : optional [shape=costs.shape] bool.
    """
    usable = np.isfinite(costs) if valid is None else np.isfinite(costs) & valid
    scores = np.where(usable, -costs / temperature, -np.inf)
    top = scores.max(axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    log_total = top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True) + 1e-30)
    out = np.where(usable, log_total - scores, 0.0)
    mean = out.sum(axis=1, keepdims=True) / np.maximum(usable.sum(axis=1, keepdims=True), 1)
    return np.where(usable, out, np.where(np.isfinite(costs), mean, np.inf)).astype(np.float32)


def guide_agreement(dub_y16: np.ndarray, picture_y16: np.ndarray, timemap) -> float:
    """How well the picture's audio follows the dub once the dub is placed by ``timemap``.

    The correlation of the two energy envelopes (dB) over the picture: near 1 when the picture's
    track is clean speech of the same words, lower as noise or other voices fill it. ``timemap``
    is the guide-only alignment (dub time -> picture time).
    """
    dub_db, pic_db = frame_energy_db(dub_y16), frame_energy_db(picture_y16)
    if len(pic_db) < 10 or np.std(pic_db) < 1e-3:
        return 0.0
    dub_frames = timemap.to_dub(np.arange(len(pic_db)) / PATH_RATE) * PATH_RATE
    placed = np.interp(dub_frames, np.arange(len(dub_db)), dub_db, left=dub_db.min(), right=dub_db.min())
    if np.std(placed) < 1e-3:
        return 0.0
    return float(np.corrcoef(placed, pic_db)[0, 1])


def guide_weight(agreement: float) -> float:
    """The guide's weight from its agreement with the dub (see guide_agreement).

    Below GUIDE_MIN_AGREEMENT the picture's audio is not this line at all (another take, music,
    wild sound): it is dropped. Above, its weight rises linearly to full at GUIDE_FULL_AGREEMENT;
    how sharply its own costs pick a picture frame then sets its say against the lips, row by row
    (see SyncFeatures.band).
    """
    ramp = GUIDE_FULL_AGREEMENT - GUIDE_MIN_AGREEMENT
    return float(np.clip((agreement - GUIDE_MIN_AGREEMENT) / ramp, 0.0, 1.0))


@dataclass(frozen=True)
class GuideTrust:
    """Whether a guide that follows the dub may be trusted: its ``factor`` multiplies guide_weight.

    Full when the picture's audio is clean or is the dub's own performance; none for a new
    performance under noise (see GUIDE_CLEAN_RANGE_DB, GUIDE_SAME_TAKE).

    range_db : the picture audio's spread between speech peaks and noise floor (audio_range_db)
    same_take : its pitch contrast against the placed dub (same_take_contrast)
    """

    range_db: float
    same_take: float

    @property
    def clean(self) -> float:
        return _ramp(self.range_db, GUIDE_CLEAN_RANGE_DB)

    @property
    def own_performance(self) -> float:
        return _ramp(self.same_take, GUIDE_SAME_TAKE)

    @property
    def factor(self) -> float:
        return max(self.clean, self.own_performance)

    @property
    def same_performance(self) -> bool:
        """Clearly the dub's own performance: its fine spectral detail may guide (FINE_CEPSTRA)."""
        return self.same_take >= SAME_PERFORMANCE_CONTRAST or (
            self.range_db > 0 and self.same_take >= SAME_PERFORMANCE_PER_DB * self.range_db
        )


def _ramp(x: float, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def audio_range_db(y16: np.ndarray) -> float:
    """Spread between a track's speech peaks and its noise floor (dB): a proxy for its SNR.

    The 95th minus the 10th percentile of the frame energies, leaving out digital silence (a track
    that starts after the picture is padded with zeros).
    """
    db = frame_energy_db(y16)
    db = db[db > DIGITAL_SILENCE_DB]
    if len(db) < 10:
        return 0.0
    return float(np.percentile(db, 95) - np.percentile(db, 10))


def same_take_contrast(dub_y16: np.ndarray, picture_y16: np.ndarray, timemap, speech: np.ndarray) -> float:
    """How much the picture audio's pitch follows the dub's once placed by ``timemap``, above chance.

    The pitch region of the cepstrum (the harmonics' spacing) of each dub speech frame is compared
    (cosine) with the picture audio's at the frame's picture time, and the mean is taken less the
    mean at PITCH_CHANCE_SHIFTS_S. The dub's own performance keeps its intonation under noise;
    a new performance of the line does not. 0 when there is too little speech to say.

    speech : [shape=(n_dub,)] speech activity of the dub at PATH_RATE
    """
    rows = np.flatnonzero(speech > 0.5)
    if len(rows) < 10:
        return 0.0
    rows = rows[:: max(1, -(-len(rows) // PITCH_MAX_FRAMES))]
    dub_t = rows / PATH_RATE
    dub = pitch_cepstra(dub_y16, dub_t)
    pic_t = timemap.to_picture(dub_t)
    sims = [float(np.mean(np.sum(dub * pitch_cepstra(picture_y16, pic_t + shift), axis=1)))
            for shift in (0.0, *PITCH_CHANCE_SHIFTS_S)]
    return sims[0] - float(np.mean(sims[1:]))


def pitch_cepstra(y16: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Unit, mean-free pitch regions of the real cepstrum of PITCH_WIN frames centred on ``times`` (s).

    Frames past either end of ``y16`` read zeros. Returns [shape=(len(times), n_quefrencies)].
    """
    padded = np.pad(np.asarray(y16, np.float32), (PITCH_WIN, PITCH_WIN))
    starts = np.round(np.asarray(times) * ANALYSIS_SR).astype(np.int64) + PITCH_WIN // 2
    starts = np.clip(starts, 0, len(padded) - PITCH_WIN)
    frames = padded[starts[:, None] + np.arange(PITCH_WIN)] * np.hanning(PITCH_WIN).astype(np.float32)
    log_spec = np.log(np.abs(np.fft.rfft(frames, axis=1)) + 1e-6)
    lo, hi = PITCH_QUEFRENCY
    c = np.fft.irfft(log_spec, axis=1)[:, lo:hi]
    c -= c.mean(axis=1, keepdims=True)
    return c / (np.linalg.norm(c, axis=1, keepdims=True) + 1e-9)


def sync_features(
    track: LipTrack,
    dub_mel: np.ndarray,
    model,
    *,
    dub_speech: np.ndarray,
    dub_pause: np.ndarray,
    duration: float,
    pad: float,
    picture_y16: np.ndarray | None = None,
) -> SyncFeatures:
    """Embed the lips and the dub (and the picture audio, when given) on the path grids.

    dub_mel : [shape=(n_dub, N_MELS)] raw log-mel of the dub at FEATURE_RATE (= PATH_RATE)
    dub_speech, dub_pause : [shape=(n_dub,)] speech activity in [0, 1] and pause mask of the dub
    picture_y16 : the picture's own audio at ANALYSIS_SR on picture time, or None (lips only)
    """
    grid = picture_grid(duration, pad)
    video = model.embed_video(track, times=grid).astype(np.float32)
    audio = model.embed_audio(dub_mel).astype(np.float32)
    guide_dub = guide_pic = None
    if picture_y16 is not None:
        guide_dub, guide_pic = guide_vectors(dub_mel, picture_y16, grid)
    return SyncFeatures(
        lip_dub=audio, lip_pic=video, lip_valid=frame_validity(track, grid), lip_temperature=LIP_TEMPERATURE,
        dub_activity=np.clip(dub_speech, 0.0, 1.0).astype(np.float32), dub_pause=dub_pause.astype(bool),
        pic_activity=np.interp(grid, track.times, mouth_activity(track), left=0.0, right=0.0).astype(np.float32),
        guide_dub=guide_dub, guide_pic=guide_pic, guide_weight=1.0 if guide_dub is not None else 0.0, pad=pad,
    )


def with_fine_guide(features: SyncFeatures, dub_mel: np.ndarray, picture_y16: np.ndarray) -> SyncFeatures:
    """``features`` with the fine guide of the dub's own performance (FINE_CEPSTRA, at
    FINE_GUIDE_TEMPERATURE) in place of the envelope guide; unpooled features only."""
    if features.factor != 1:
        raise ValueError("the fine guide replaces the guide of unpooled features only")
    grid = np.arange(features.n_pic) / PATH_RATE - features.pad
    guide_dub, guide_pic = guide_vectors(dub_mel, picture_y16, grid, n_cepstra=FINE_CEPSTRA)
    return replace(features, guide_dub=guide_dub, guide_pic=guide_pic, guide_temperature=FINE_GUIDE_TEMPERATURE)


def guide_vectors(
    dub_mel: np.ndarray, picture_y16: np.ndarray, grid: np.ndarray, *, n_cepstra: int = N_CEPSTRA
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length cepstral vectors of the dub (rows) and the picture audio (columns).

    Cepstra (the spectral envelope, without level) with their deltas, normalised per utterance:
    on the benchmark's noisy pictures they beat normalised log-mel by a wide margin (85 % against
    71 % in sync, guide alone), and tie on clean ones. ``n_cepstra``: N_CEPSTRA (the envelope,
    which a new performance of the line shares), or FINE_CEPSTRA for the dub's own performance.
    """
    pic = cepstral_features(log_mel(picture_y16), n_cepstra)
    n = len(pic)
    # picture audio frame k sits at picture time k / PATH_RATE; columns before 0 or past the end
    # of the track get the quietest frame (silence), which is what the picture plays there
    frames = np.round(grid * PATH_RATE).astype(int)
    quiet = pic[np.argmin(np.abs(pic).sum(axis=1))]
    cols = np.where(((frames >= 0) & (frames < n))[:, None], pic[np.clip(frames, 0, n - 1)], quiet)
    rows = cepstral_features(dub_mel, n_cepstra)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True) + 1e-8
    cols /= np.linalg.norm(cols, axis=1, keepdims=True) + 1e-8
    return rows.astype(np.float32), cols.astype(np.float32)


def cepstral_features(mel: np.ndarray, n_cepstra: int = N_CEPSTRA) -> np.ndarray:
    """Cepstral coefficients 1..n_cepstra of log-mel frames and their deltas, z-scored over time.

    mel : [shape=(n_frames, N_MELS)]; returns [shape=(n_frames, 2 * n_cepstra)]
    """
    c = mel @ _dct_basis(mel.shape[1])[:, 1 : n_cepstra + 1]
    c = (c - c.mean(axis=0)) / (c.std(axis=0) + 1e-6)
    return np.hstack([c, deltas(c)]).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _dct_basis(n: int) -> np.ndarray:
    """[shape=(n, n)]: ``x @ basis`` is the orthonormal DCT-II of rows ``x`` (scipy.fft.dct(norm="ortho"))."""
    k = np.arange(n)
    basis = np.cos(np.pi * (k[:, None] + 0.5) * k[None, :] / n) * np.sqrt(2.0 / n)
    basis[:, 0] /= np.sqrt(2.0)
    return basis


def deltas(x: np.ndarray) -> np.ndarray:
    """Least-squares slope over DELTA_WIDTH frames along axis 0, edges repeated: librosa's delta
    (scipy's savgol_filter(x, DELTA_WIDTH, 1, deriv=1, mode="nearest"); scipy.signal is slow to import).
    """
    half = DELTA_WIDTH // 2
    padded = np.pad(x, [(half, half)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    n = len(x)
    return sum(k * padded[half + k : half + k + n] for k in range(-half, half + 1)) / sum(
        k * k for k in range(-half, half + 1)
    )
