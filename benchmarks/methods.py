"""The methods the benchmark runs (BENCHMARK.md), and the whole run over cases and conditions.

``dubalign`` (the full pipeline) and ``dubalign-lips`` (lips only, no guide audio), against
reference methods that bracket them: ``none`` (the dub as it is), ``oracle-shift`` (the best
constant shift, knowing the truth), ``guide-dtw`` (audio-to-audio DTW against the picture's own
audio, as guide-track tools do) and ``true-warp`` (the dub rendered through the true map: the
ceiling the renderer and the scorer allow).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import librosa
import numpy as np
import soundfile as sf

from dubalign.errors import ParameterError
from dubalign.render import render
from dubalign.timemap import TimeMap
from dubalign.units import (
    ANALYSIS_SR,
    FEATURE_RATE,
    MEL_HOP,
    MEL_NFFT,
    MEL_WIN,
    N_MELS,
    frames_to_seconds,
    seconds_to_samples,
)

from .cases import CONDITIONS, DUB_SR, TRACKS, Case, fit, write_wav
from .report import BenchmarkResults, RunRecord
from .scoring import INSYNC_MS, SCORE_STEP_S, Score, mono, read_scoring_audio, resample, score_case, scorer_speech_mask

METHODS = ("dubalign", "dubalign-lips", "none", "oracle-shift", "guide-dtw", "true-warp")
PICTURE_INDEPENDENT = ("none", "oracle-shift", "true-warp")  # do not read the picture
GUIDE_MFCC = 20  # MFCCs of the guide-DTW reference (c0 dropped)


# ============================================================================================
# Reference methods
# ============================================================================================


def render_map(dub: np.ndarray, sr: int, pic_t: np.ndarray, dub_t: np.ndarray, n_out: int) -> np.ndarray:
    """The dub rendered onto the picture timeline through a map, by ``dubalign.render``.

    dub : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    Returns [shape=(n_out, n_channels)].
    """
    time_map = TimeMap(dub_t=np.asarray(dub_t, float), pic_t=np.asarray(pic_t, float))
    return render(np.asarray(dub, np.float32).reshape(len(dub), -1), sr, time_map, n_out=n_out).audio


def speech_times(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Picture times of the case's speech measurements and their weights (seconds)."""
    if case.kind == "reperformance":
        pic = np.array([w.centre for w in case.truth.words_pic])
        return pic, np.array([w.end - w.start for w in case.truth.words_pic])
    ref, ref_sr = sf.read(case.ref_path, dtype="float32", always_2d=True)
    mask = scorer_speech_mask(resample(ref.mean(axis=1), ref_sr, ANALYSIS_SR))
    step = int(round(SCORE_STEP_S * FEATURE_RATE))
    frames = np.arange(0, len(mask), step)
    frames = frames[mask[frames]]
    return frames_to_seconds(frames), np.full(len(frames), SCORE_STEP_S)


def best_shift(case: Case) -> float:
    """The constant shift s (output(t) = dub(t + s)) putting most speech in sync under the truth."""
    pic, w = speech_times(case)
    if case.kind == "reperformance":
        dub = np.array([w.centre for w in case.truth.words_dub])
    else:
        dub = case.truth.to_dub(pic)
    lead = dub - pic  # e = lead - s
    if len(lead) == 0:
        return 0.0
    grid = np.arange(lead.min() - 0.2, lead.max() + 0.2, 0.001)
    e = lead[None, :] - grid[:, None]
    ok = (e >= INSYNC_MS[0] / 1000) & (e <= INSYNC_MS[1] / 1000)
    hits = ok.astype(float) @ w
    median = np.median(np.abs(e), axis=1)
    cand = np.flatnonzero(hits >= hits.max() - 1e-9)
    return float(grid[cand[np.argmin(median[cand])]])


def shift_dub(dub: np.ndarray, sr: int, shift: float, n_out: int) -> np.ndarray:
    """output(t) = dub(t + shift), ``n_out`` samples, silence outside the dub."""
    dub = np.asarray(dub, np.float32).reshape(len(dub), -1)
    k = seconds_to_samples(shift, sr)
    if k >= 0:
        return fit(dub[k:], n_out)
    return fit(np.concatenate([np.zeros((-k, dub.shape[1]), np.float32), dub]), n_out)


def guide_dtw_map(
    dub: np.ndarray, dub_sr: int, guide: np.ndarray, guide_sr: int
) -> tuple[np.ndarray, np.ndarray]:
    """Audio-to-audio DTW of the dub against the picture's audio (MFCC, cosine cost), as
    guide-track tools do. Returns (pic_t, dub_t) knots of a strictly increasing map."""
    feats = []
    for y, sr in ((dub, dub_sr), (guide, guide_sr)):
        y16 = resample(mono(y), sr, ANALYSIS_SR)
        m = librosa.feature.mfcc(
            y=y16,
            sr=ANALYSIS_SR,
            n_mfcc=GUIDE_MFCC + 1,
            n_fft=MEL_NFFT,
            hop_length=MEL_HOP,
            win_length=MEL_WIN,
            n_mels=N_MELS,
        )[1:].T
        m = (m - m.mean(axis=0)) / (m.std(axis=0) + 1e-6)
        feats.append(m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-9))
    a, b = feats
    cost = 1.0 - a @ b.T  # (n_dub, n_pic)
    _, path = librosa.sequence.dtw(C=cost, backtrack=True)
    path = path[::-1]  # start to end: (dub frame, picture frame)
    pic_frames = np.arange(b.shape[0])
    dub_of_pic = np.array([path[path[:, 1] == j, 0].mean() for j in pic_frames])
    width = 5  # 50 ms: the path's stair steps become a slope
    dub_of_pic = np.convolve(np.pad(dub_of_pic, width, mode="edge"), np.ones(width) / width, "same")[width:-width]
    pic_t = frames_to_seconds(pic_frames)
    dub_t = frames_to_seconds(dub_of_pic)
    keep = np.concatenate([[True], np.diff(np.maximum.accumulate(dub_t)) > 1e-4])
    dub_t = np.maximum.accumulate(dub_t)
    return pic_t[keep], dub_t[keep]


@dataclass(frozen=True)
class MethodOutput:
    """One method's output on one case and condition."""

    audio: np.ndarray  # [shape=(n_out, n_channels)] on the picture timeline
    sr: int
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def run_method(method: str, case: Case, condition: str) -> MethodOutput:
    """Run ``method`` on ``case`` under ``condition``; returns the output audio.

    Raises ParameterError for an unknown method or guide-dtw on a mute picture.
    """
    t0 = time.perf_counter()
    dub, sr = sf.read(case.dub_path, dtype="float32", always_2d=True)
    n_out = seconds_to_samples(case.truth.picture_duration, sr)
    if method == "none":
        out = shift_dub(dub, sr, 0.0, n_out)
    elif method == "oracle-shift":
        out = shift_dub(dub, sr, best_shift(case), n_out)
    elif method == "true-warp":
        out = render_map(dub, sr, case.truth.pic_t, case.truth.dub_t, n_out)
    elif method == "guide-dtw":
        if condition == "mute":
            raise ParameterError("guide-dtw needs picture audio; it has no result on mute pictures")
        guide = read_scoring_audio(case.picture(condition), ANALYSIS_SR)
        pic_t, dub_t = guide_dtw_map(dub, sr, guide, ANALYSIS_SR)
        out = render_map(dub, sr, pic_t, dub_t, n_out)
    elif method in ("dubalign", "dubalign-lips"):
        # imported here: the pipeline brings PyAV (and mediapipe once a picture is analysed), slow
        # to load; scoring and the reference methods alone do not need them
        from dubalign.pipeline import AlignConfig, align_dub, analyze_picture

        cfg = AlignConfig(guide="auto" if method == "dubalign" else "off")
        t0 = time.perf_counter()  # whole align, model loading included, reading the dub too
        pic = analyze_picture(str(case.picture(condition)), cfg)
        res = align_dub(pic, str(case.dub_path), cfg)
        wall = time.perf_counter() - t0
        return MethodOutput(
            audio=np.asarray(res.audio, np.float32),
            sr=int(res.sr),
            wall_s=wall,
            timings={k: float(v) for k, v in dict(res.timings).items()},
            warnings=tuple(res.warnings),
        )
    else:
        raise ParameterError(f"unknown method {method!r}; use one of {METHODS}")
    return MethodOutput(audio=np.asarray(out, np.float32), sr=sr, wall_s=time.perf_counter() - t0)


# ============================================================================================
# The whole run
# ============================================================================================


def decode_time(path: str | Path) -> float:
    """Wall seconds to decode every video frame of ``path``: the floor of any aligner."""
    t0 = time.perf_counter()
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"
        for _ in container.decode(video=0):
            pass
    return time.perf_counter() - t0


def check_selection(methods: Sequence[str], conditions: Sequence[str], tracks: Sequence[str] = ()) -> None:
    """Raise ParameterError, naming the choices, for an unknown method, condition or track."""
    for t in tracks:
        if t not in TRACKS:
            raise ParameterError(f"unknown track {t!r}; use some of {', '.join(TRACKS)}")
    for m in methods:
        if m not in METHODS:
            raise ParameterError(f"unknown method {m!r}; use some of {', '.join(METHODS)}")
    for c in conditions:
        if c not in CONDITIONS:
            raise ParameterError(f"unknown condition {c!r}; use some of {', '.join(CONDITIONS)}")


def evaluate(
    cases: Sequence[Case],
    *,
    methods: Sequence[str] = METHODS,
    conditions: Sequence[str] = CONDITIONS,
    seed: int = 7,
    output_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchmarkResults:
    """Run every method on every case and condition, and score the outputs.

    Methods that do not read the picture (``PICTURE_INDEPENDENT``) run once per case and count
    under every condition. Errors of the tool under test (DubalignError and the like) are
    recorded: that output then scores as all speech out of sync. ``output_dir`` keeps the outputs.
    """
    check_selection(methods, conditions)
    records: list[RunRecord] = []
    scores: dict = {}
    for case in cases:
        cache: dict = {}
        decode_s = {}
        for m in methods:
            once = m in PICTURE_INDEPENDENT
            for j, c in enumerate(conditions):
                if m == "guide-dtw" and c == "mute":
                    continue
                if once and j > 0:
                    prev = records[-1]
                    records.append(RunRecord(**{**asdict(prev), "condition": c, "metrics": prev.metrics}))
                    scores.setdefault((m, c, case.track), []).append(scores[(m, conditions[0], case.track)][-1])
                    continue
                if progress:
                    progress(f"{case.name} {m} {c}")
                error = None
                try:
                    out = run_method(m, case, c)
                    score = score_case(case, out.audio, out.sr, cache=cache)
                except Exception as exc:  # a failing method scores as out of sync, run goes on
                    if m not in ("dubalign", "dubalign-lips"):
                        raise
                    error = f"{type(exc).__name__}: {exc}"
                    out = MethodOutput(audio=np.zeros((0, 1), np.float32), sr=DUB_SR, wall_s=0.0)
                    pic, w = speech_times(case)
                    score = Score(errors_ms=np.full(len(w), np.nan), weights=w)
                if output_dir is not None and error is None:
                    d = Path(output_dir) / case.track / case.name
                    d.mkdir(parents=True, exist_ok=True)
                    write_wav(d / f"{m}_{c}.wav", out.audio, out.sr, "PCM_16")
                dec = None
                if out.timings:
                    if c not in decode_s:
                        decode_s[c] = decode_time(case.picture(c))
                    dec = decode_s[c]
                scores.setdefault((m, c, case.track), []).append(score)
                records.append(
                    RunRecord(
                        case=case.name,
                        kind=case.kind,
                        track=case.track,
                        method=m,
                        condition=c,
                        metrics=score.metrics(),
                        picture_s=case.truth.picture_duration,
                        wall_s=out.wall_s,
                        decode_s=dec,
                        timings=out.timings,
                        error=error,
                    )
                )
    return BenchmarkResults(
        records=tuple(records),
        scores=scores,
        seed=seed,
        methods=tuple(methods),
        conditions=tuple(conditions),
    )
