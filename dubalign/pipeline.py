"""The orchestrator: picture + dub in, dub on the picture's timeline out.

    analyze_picture   decode the picture, track the lips, read its audio   (cacheable per picture)
    align_dub         features -> sync matrix -> path -> time map -> render (per take)
    align             both, then an atomic write

Each stage is one named call followed by ``hook(stage, value)``, where progress bars and artifact
dumps plug in. Progress inside a stage arrives as ``hook("progress", Progress(...))``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import media
from .audio import frame_energy_db, log_mel, speech_activity, to_analysis
from .errors import AlignmentError, ParameterError
from .lips import MAX_FACES, FaceCandidates, LipTrack, choose_speaker, count_faces, track_faces
from .path import WarpPath, band_around, find_pauses, solve_coarse_to_fine
from .render import render
from .sync import SyncFeatures, guide_agreement, guide_weight, sync_features
from .timemap import TimeMap, path_to_timemap
from .units import FEATURE_RATE, PATH_RATE

Hook = Callable[[str, object], None]

SHIPPED_MODEL = "shipped"  # AlignConfig.model for the weights in models/lipsync.pt
FACE_LOST_WARN = 0.10  # share of picture frames without a face that earns a warning
FACE_GAP_WARN_S = 1.0  # a single stretch without a face this long earns a warning
LOW_CONFIDENCE = 0.35  # overall confidence under this earns a warning
CONFIDENCE_TOLERANCE = 4  # frames (40 ms): probability mass this close to the path counts as sure
CONFIDENCE_RADIUS = 150  # frames each side of the path against which its cells are compared
FACE_PROBES = 5  # frames looked at first to count the faces on screen (one face: faster tracking)
FACE_PROBE_MIN_S = 15.0  # s: shorter pictures skip that probe and track up to MAX_FACES
# Lips-only maps are placed this much later (s): the centre of the BT.1359 window. On the dev
# benchmark's warped cases, lips only: 58.4 -> 66.2 % in sync; re-performance 36.4 -> 36.8 %.
LIPS_ONLY_AIM_S = 0.040
PARALLEL_LIPS_MIN_S = 20.0  # s: pictures this long have their lips tracked by several processes
MAX_LIP_WORKERS = 4  # at most this many lip-tracking processes
PROGRESS_POLL_S = 0.25  # s between progress updates while workers track lips
LONG_LINE_S = 20.0  # s: longer dubs are solved in a corridor of +-2 --max-shift, coarse-to-fine
EXTREME_STRETCH_MARGIN = 0.03  # stretch within this of a limit counts as 'at the limit'
# The fading tails of words (speech activity under TAIL_ACTIVITY, outside pauses) may be squeezed
# to TAIL_MIN_STRETCH: a re-performance's new gaps between words must close up, and the tails in
# them read as speech. Against no tail squeeze, on the ../shared/eval dev cases (clean / noisy /
# mute): re-performance 54.9 / 38.4 / 35.8 -> 62.1 / 40.1 / 32.2 %, warped 87.8 / 83.5 / 71.3 ->
# 90.0 / 85.4 / 71.2 %; project benchmark re-performance 74.7 / 31.5 / 50.8 -> 75.0 / 37.2 /
# 52.8 %, warped 92.9 / 82.0 / 71.8 -> 92.9 / 81.3 / 70.1 %. A threshold of 0.95 measured about
# the same; 0.5x for all speech gained more on the dev cases but lost a bundled CI case
# (re-performance clean 88.6 -> 80.0 %).
TAIL_ACTIVITY = 0.85
TAIL_MIN_STRETCH = 0.5


@dataclass(frozen=True)
class AlignConfig:
    """What the user can choose. Frozen: the CLI builds it once and the library only reads it."""

    guide: str = "auto"  # "auto": fuse the picture's own audio when it has a track; "off": lips only
    max_shift: float = 1.5  # s: how far the dub's start may move against the picture's start
    min_stretch: float = 2 / 3  # slowest local rate (picture time per dub time) the map may use
    max_stretch: float = 1.5  # fastest local rate the map may use
    model: str = "shipped"  # the lip model: "shipped" (models/lipsync.pt) or a checkpoint path
    renderer: str = "auto"  # "auto", "rubberband" or "vocoder"
    workers: int = 0  # processes tracking lips at once; 0: one per core for long pictures, else 1

    def check(self) -> None:
        if self.guide not in ("auto", "off"):
            raise ParameterError(f"--guide must be 'auto' or 'off', not {self.guide!r}")
        if not 0.0 < self.max_shift <= 30.0:
            raise ParameterError(f"--max-shift must be between 0 and 30 seconds, not {self.max_shift}")
        if not 0.0 < self.min_stretch < 1.0 < self.max_stretch:
            raise ParameterError("stretch limits must satisfy 0 < min_stretch < 1 < max_stretch")
        if self.model != SHIPPED_MODEL and not Path(self.model).is_file():
            raise ParameterError(
                f"--model: no checkpoint at {self.model}; give a file written by scripts/train.py "
                f"(with its .sha256 beside it) or leave --model out for the shipped model"
            )
        if self.workers < 0:
            raise ParameterError(f"workers must be 0 (automatic) or more, not {self.workers}")
        if self.renderer not in ("auto", "rubberband", "vocoder"):
            raise ParameterError(f"renderer must be 'auto', 'rubberband' or 'vocoder', not {self.renderer!r}")


@dataclass(frozen=True)
class Progress:
    """Progress inside a long stage: ``done`` of ``total`` units (total 0 when unknown)."""

    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class PictureAnalysis:
    """Everything dubalign needs from one picture (region), independent of the dub.

    audio : the picture's own audio, mono float32 at ANALYSIS_SR on the region's time, or None
    """

    path: str
    start: float  # s: region start in the picture file
    duration: float  # s: region length; the output has exactly this length
    fps: float
    width: int
    height: int
    track: LipTrack
    audio: np.ndarray | None
    timings: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Save as .npz (atomically), to be reloaded with :meth:`load`."""
        meta = {k: getattr(self, k) for k in ("path", "start", "duration", "fps", "width", "height")}
        meta["timings"] = self.timings
        meta["face"] = [int(self.track.face), int(self.track.n_faces), float(self.track.face_x)]
        arrays = {f"track_{k}": getattr(self.track, k) for k in ("times", "present", "lips", "blendshapes", "crops")}
        if self.audio is not None:
            arrays["audio"] = self.audio
        out = Path(path)
        tmp = out.with_name(f".{out.name}.part")
        try:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, meta=json.dumps(meta), **arrays)
            tmp.replace(out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> PictureAnalysis:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            face, n_faces, face_x = meta.pop("face")
            track = LipTrack(
                **{k: z[f"track_{k}"] for k in ("times", "present", "lips", "blendshapes", "crops")},
                face=int(face), n_faces=int(n_faces), face_x=float(face_x),
            )
            audio = z["audio"] if "audio" in z.files else None
        return cls(track=track, audio=audio, **meta)


@dataclass(frozen=True)
class AlignmentResult:
    """The aligned dub and how it was obtained.

    audio : [shape=(n_out, n_channels)] float32 on the picture timeline, n_out = duration * sr
    confidence : [shape=(n_seconds,)] per dub second, in [0, 1] (NaN where the dub is silent)
    """

    audio: np.ndarray
    sr: int
    subtype: str
    timemap: TimeMap
    confidence: np.ndarray
    overall_confidence: float
    model: str
    renderer: str
    face: str
    guide_weight: float
    stretch_range: tuple[float, float]
    timings: dict
    warnings: list[str]

    def to_json(self) -> dict:
        """A JSON-ready report (everything but the audio)."""
        return {
            "sample_rate": self.sr,
            "subtype": self.subtype,
            "channels": int(self.audio.shape[1]),
            "duration_s": round(len(self.audio) / self.sr, 4),
            "model": self.model,
            "renderer": self.renderer,
            "face": self.face,
            "guide_weight": round(self.guide_weight, 3),
            "overall_confidence": round(self.overall_confidence, 3),
            "confidence_per_second": [None if np.isnan(c) else round(float(c), 3) for c in self.confidence],
            "stretch_range": [round(s, 3) for s in self.stretch_range],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "time_map": self.timemap.to_json(),
        }


def _noop(stage: str, value: object) -> None:
    pass


@functools.lru_cache(maxsize=4)
def load_lip_model(name: str = SHIPPED_MODEL):
    """The lip model ``name`` (AlignConfig.model), loaded once per process."""
    from .model import load_model  # imports torch, which is slow: only once a model is wanted

    return load_model(None if name == SHIPPED_MODEL else name)


def analyze_picture(
    picture: str | Path,
    config: AlignConfig = AlignConfig(),
    *,
    start: float | None = None,
    end: float | None = None,
    hook: Hook | None = None,
) -> PictureAnalysis:
    """Decode a picture (or the region [start, end) s of it), track the lips, read its audio."""
    config.check()
    hook = hook or _noop
    info = media.probe_picture(picture)
    start = 0.0 if start is None else float(start)
    if start < 0 or (end is not None and end <= start):
        raise ParameterError(f"bad picture region {start}..{end} s")
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    audio = None
    if info.has_audio:
        audio = media.read_picture_audio(picture, start=start, end=end)
    timings["picture_audio"] = time.perf_counter() - t0
    hook("picture_audio", audio)

    stop = end if end is not None else info.duration
    expected = int(round((stop - start) * info.fps)) if info.fps else 0
    workers = config.workers or (
        min(os.cpu_count() or 1, MAX_LIP_WORKERS) if stop - start >= PARALLEL_LIPS_MIN_S else 1
    )
    t0 = time.perf_counter()
    max_faces = MAX_FACES
    if stop - start >= FACE_PROBE_MIN_S:  # the probe costs ~1 s: worth it on longer pictures only
        probe_times = np.linspace(start, stop, FACE_PROBES + 2)[1:-1]
        max_faces = count_faces(_frame_at(picture, t) for t in probe_times) or MAX_FACES
    timings["face_probe"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if workers <= 1:
        progress = lambda n: hook("progress", Progress("landmarks", n, expected))  # noqa: E731
        runs = [_track_run(picture, start, end, max_faces, on_frame=progress)]
    else:
        bounds = list(np.linspace(start, stop, workers + 1)[:-1]) + [end]
        spans = list(zip(bounds[:-1], bounds[1:], strict=True))
        runs = _track_parallel(picture, spans, max_faces, hook, expected)
    timings["decode"] = sum(r[1] for r in runs)
    timings["landmarks"] = sum(r[2] for r in runs)
    timings["lips_wall"] = time.perf_counter() - t0
    timings["lips_workers"] = float(len(runs))
    parts = [replace(r[0], times=r[0].times - start) for r in runs]
    envelope = _envelope_fn(audio) if audio is not None else None
    track = choose_speaker(parts, audio_energy=envelope)
    hook("lips", track)

    frame_dur = 1.0 / info.fps if info.fps else float(np.median(np.diff(track.times)))
    duration = (end - start) if end is not None else max(info.duration - start, track.times[-1] + frame_dur)
    return PictureAnalysis(
        path=str(picture), start=start, duration=float(duration), fps=info.fps, width=info.width,
        height=info.height, track=track, audio=audio, timings=timings,
    )


def _frame_at(picture: str | Path, t: float) -> np.ndarray:
    """The picture's frame at time ``t`` (s), as rgb."""
    return next(iter(media.iter_frames(picture, start=t)))[1]


def _track_run(
    picture: str | Path, start: float, end: float | None, max_faces: int,
    on_frame: Callable[[int], None] | None = None,
) -> tuple[FaceCandidates, float, float]:
    """Track faces over [start, end) s of the picture: (candidates, decode s, landmark s).

    Frame times stay relative to the file's first frame.
    """
    decode_time = 0.0
    it = media.iter_frames(picture, start=start, end=end)

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        nonlocal decode_time
        while True:
            t1 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                decode_time += time.perf_counter() - t1
            yield item

    t0 = time.perf_counter()
    run = track_faces(frames(), max_faces=max_faces, on_frame=on_frame)
    return run, decode_time, time.perf_counter() - t0 - decode_time


_frames_done = None  # a shared counter in lip-tracking worker processes (progress)


def _init_lips_worker(counter) -> None:
    global _frames_done
    _frames_done = counter


def _track_run_in_worker(
    picture: str, start: float, end: float | None, max_faces: int
) -> tuple[FaceCandidates, float, float]:
    last = [0]

    def count(n: int) -> None:
        with _frames_done.get_lock():
            _frames_done.value += n - last[0]
        last[0] = n

    return _track_run(picture, start, end, max_faces, on_frame=count)


def _track_parallel(
    picture: str | Path, spans: list[tuple[float, float | None]], max_faces: int, hook: Hook, expected: int
) -> list[tuple[FaceCandidates, float, float]]:
    """Track each span in its own process (MediaPipe runs one frame at a time per landmarker)."""
    ctx = multiprocessing.get_context("spawn")  # mediapipe's threads do not survive a fork
    counter = ctx.Value("i", 0)
    with ProcessPoolExecutor(len(spans), mp_context=ctx, initializer=_init_lips_worker, initargs=(counter,)) as ex:
        futures = [ex.submit(_track_run_in_worker, str(picture), a, b, max_faces) for a, b in spans]
        while not all(f.done() for f in futures):
            wait(futures, timeout=PROGRESS_POLL_S, return_when=FIRST_EXCEPTION)
            hook("progress", Progress("landmarks", counter.value, expected))
            if any(f.done() and f.exception() is not None for f in futures):
                break
        return [f.result() for f in futures]


def _envelope_fn(audio: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Energy of the picture audio at given times, for picking the speaking face."""
    db = frame_energy_db(audio)

    def at(times: np.ndarray) -> np.ndarray:
        return db[np.clip(np.round(times * FEATURE_RATE).astype(int), 0, len(db) - 1)]

    return at


def align_dub(
    picture: PictureAnalysis,
    dub: str | Path | media.DubAudio,
    config: AlignConfig = AlignConfig(),
    *,
    hook: Hook | None = None,
) -> AlignmentResult:
    """Align one dub (a path, or a dub already read) to an analysed picture. Writes nothing."""
    config.check()
    hook = hook or _noop
    timings = dict(picture.timings)

    t0 = time.perf_counter()
    if not isinstance(dub, media.DubAudio):
        dub = media.read_dub(dub)
    y16 = to_analysis(dub.samples, dub.sr)
    mel = log_mel(y16)
    speech = speech_activity(y16)
    timings["features"] = time.perf_counter() - t0
    hook("features", mel)

    pad = config.max_shift
    if dub.duration * config.min_stretch > picture.duration + 2 * pad:
        raise AlignmentError(
            f"the dub ({dub.duration:.1f} s) is much longer than the picture ({picture.duration:.1f} s) "
            f"plus --max-shift ({pad:g} s): trim the dub or give a longer picture"
        )

    t0 = time.perf_counter()
    model = load_lip_model(config.model)
    timings["model_load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    speech = speech[: len(mel)]
    pauses = find_pauses(speech)  # silence may be squeezed or stretched freely
    use_guide = config.guide == "auto" and picture.audio is not None
    features = sync_features(
        picture.track, mel, model, dub_speech=speech, dub_pause=pauses, duration=picture.duration, pad=pad,
        picture_y16=picture.audio if use_guide else None,
    )
    timings["model"] = time.perf_counter() - t0
    hook("sync_features", features)

    t0 = time.perf_counter()
    tails = word_tails(speech, pauses)
    solve = functools.partial(_solve_map, config=config, speech=speech, pauses=pauses, tails=tails)
    path, timemap = solve(features)
    if features.guide_dub is not None:
        # with the dub placed, how well does the picture's audio follow it? If hardly at all, that
        # audio is not this line (another take, music, wild sound): align again without it
        agreement = guide_agreement(y16, picture.audio, timemap)
        hook("guide_agreement", agreement)
        weight = guide_weight(agreement)
        if weight < features.guide_weight:
            features = replace(features, guide_weight=weight)
            path, timemap = solve(features)
    if features.guide_dub is None or features.guide_weight == 0:
        # lips alone place the dub within tens of ms either way; aim at the centre of the
        # ITU-R BT.1359 detectability window (audio may lag 125 ms unnoticed, lead only 45 ms)
        timemap = TimeMap(timemap.dub_t, timemap.pic_t + LIPS_ONLY_AIM_S)
    timings["path"] = time.perf_counter() - t0
    hook("path", path)
    hook("time_map", timemap)

    t0 = time.perf_counter()
    n_out = int(round(picture.duration * dub.sr))
    rendered = render(dub.samples, dub.sr, timemap, n_out=n_out, method=config.renderer)
    timings["render"] = time.perf_counter() - t0
    hook("render", rendered)

    confidence, overall = _confidence(features, path, speech)
    stretch = speech_stretch(timemap, pauses | tails)  # word bodies: tails may squeeze further
    result = AlignmentResult(
        audio=rendered.audio, sr=dub.sr, subtype=dub.subtype, timemap=timemap,
        confidence=confidence, overall_confidence=overall, model=model.name, renderer=rendered.method,
        face=_describe_face(picture.track), guide_weight=features.guide_weight,
        stretch_range=(float(stretch.min()), float(stretch.max())), timings=timings,
        warnings=assess(picture, features, stretch, overall, config, use_guide),
    )
    hook("result", result)
    return result


def align(
    picture: str | Path,
    dub: str | Path,
    output: str | Path,
    config: AlignConfig = AlignConfig(),
    *,
    hook: Hook | None = None,
) -> AlignmentResult:
    """Align ``dub`` to ``picture`` and write the result to ``output`` (atomically).

    Refuses to write over either input.
    """
    out = Path(output).resolve()
    for p in (picture, dub):
        if Path(p).exists() and out == Path(p).resolve():
            raise ParameterError(f"the output {output} would overwrite an input: choose another name")
    if not out.parent.is_dir():
        raise ParameterError(f"the output folder {out.parent} does not exist")
    dub_audio = media.read_dub(dub)  # fail fast on a bad dub, before the slow picture analysis
    analysis = analyze_picture(picture, config, hook=hook)
    result = align_dub(analysis, dub_audio, config, hook=hook)
    t0 = time.perf_counter()
    media.write_audio(out, result.audio, result.sr, subtype=result.subtype)
    result.timings["write"] = time.perf_counter() - t0
    return result


def word_tails(speech: np.ndarray, pauses: np.ndarray) -> np.ndarray:
    """Dub rows in the fading tails of words: some speech activity, but under TAIL_ACTIVITY.

    speech : [shape=(n_dub,)] speech activity per PATH_RATE row; pauses : [shape=(n_dub,)] bool.
    """
    return (speech < TAIL_ACTIVITY) & ~pauses


def _solve(
    features: SyncFeatures, config: AlignConfig, pauses: np.ndarray, tails: np.ndarray
) -> WarpPath:
    """The constrained DTW path through the sync matrix, coarse-to-fine when the line is long."""
    pad_cols = int(round(config.max_shift * PATH_RATE))
    corridor = None
    if features.n_dub > LONG_LINE_S * PATH_RATE:
        # long lines: no dub moment may move more than twice --max-shift, which bounds memory
        corridor = (-pad_cols, 3 * pad_cols)  # column - row; pad_cols = no shift
    pooled: dict[int, SyncFeatures] = {}

    def cost_fn(col_start: np.ndarray, width: int, factor: int) -> np.ndarray:
        if factor not in pooled:
            pooled[factor] = features.pooled(factor)
        return pooled[factor].band(col_start, width).costs

    return solve_coarse_to_fine(
        cost_fn, features.n_dub, features.n_pic, start_cols=(0, 2 * pad_cols), corridor=corridor,
        min_slope=config.min_stretch, max_slope=config.max_stretch, pause_rows=pauses,
        soft_rows=tails, soft_min_slope=min(TAIL_MIN_STRETCH, config.min_stretch),
    )


def _solve_map(
    features: SyncFeatures, *, config: AlignConfig, speech: np.ndarray, pauses: np.ndarray,
    tails: np.ndarray,
) -> tuple[WarpPath, TimeMap]:
    """The path through the fused costs and the smooth time map made from it."""
    path = _solve(features, config, pauses, tails)
    timemap = path_to_timemap(
        path, rate=PATH_RATE, pic_origin=-config.max_shift, min_stretch=config.min_stretch,
        max_stretch=config.max_stretch, dub_speech=speech, pause_rows=pauses,
        soft_rows=tails, soft_min_stretch=min(TAIL_MIN_STRETCH, config.min_stretch),
    )
    return path, timemap


def _confidence(features: SyncFeatures, path: WarpPath, speech: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-dub-second confidence: the probability mass the fused costs put near the path.

    Each row's costs are negative log-probabilities over its picture frames; the confidence of a
    dub frame is the share of that row's probability within CONFIDENCE_TOLERANCE of the path,
    averaged over the dub's speech frames of each second.
    """
    col_start, width = band_around(
        (path.dub_frames, path.pic_frames), features.n_dub, features.n_pic, radius=CONFIDENCE_RADIUS
    )
    costs = features.band(col_start, width).costs.astype(np.float64)
    rows = np.asarray(path.dub_frames)
    centre = np.zeros(features.n_dub)
    np.add.at(centre, rows, np.asarray(path.pic_frames, float))
    centre /= np.maximum(np.bincount(rows, minlength=features.n_dub), 1)
    prob = np.exp(-(costs - costs.min(axis=1, keepdims=True)))
    prob /= prob.sum(axis=1, keepdims=True)
    near = np.abs(col_start[:, None] + np.arange(width) - centre[:, None]) <= CONFIDENCE_TOLERANCE
    per_frame = (prob * near).sum(axis=1)
    sp = speech[: features.n_dub] > 0.5
    n_sec = int(np.ceil(features.n_dub / PATH_RATE))
    conf = np.full(n_sec, np.nan)
    for s in range(n_sec):
        sl = slice(s * PATH_RATE, (s + 1) * PATH_RATE)
        if sp[sl].sum() >= 0.1 * PATH_RATE:
            conf[s] = float(np.mean(per_frame[sl][sp[sl]]))
    overall = float(np.mean(per_frame[sp])) if sp.any() else 0.0
    return conf, overall


def _describe_face(track: LipTrack) -> str:
    side = "left" if track.face_x < 0.4 else "right" if track.face_x > 0.6 else "centre"
    found = 100.0 * track.present.mean()
    return f"face {track.face + 1} of {track.n_faces} ({side}), found in {found:.0f}% of frames"


def speech_stretch(timemap: TimeMap, pauses: np.ndarray) -> np.ndarray:
    """Local stretch of the map's segments that lie in speech (pauses may stretch freely).

    pauses : [shape=(n_dub,)] bool per dub frame at PATH_RATE. Returns at least one value.
    """
    stretch = timemap.stretch()
    if not len(pauses):
        return stretch
    # a segment touching a pause row takes the pause's freedom (as in path_to_timemap)
    last = len(pauses) - 1
    first_row = np.clip(np.floor(timemap.dub_t[:-1] * PATH_RATE + 1e-6).astype(int), 0, last)
    last_row = np.clip(np.ceil(timemap.dub_t[1:] * PATH_RATE - 1e-6).astype(int), 0, last)
    in_speech = ~(pauses[first_row] | pauses[last_row])
    return stretch[in_speech] if in_speech.any() else np.ones(1)


def assess(
    picture: PictureAnalysis, features: SyncFeatures, stretch: np.ndarray, overall: float,
    config: AlignConfig, use_guide: bool,
) -> list[str]:
    """Reasons not to trust the result, in words an editor can act on.

    stretch : local stretch of the time map inside speech (see speech_stretch)
    """
    warnings = []
    present = picture.track.present
    lost = 1.0 - present.mean()
    if lost > FACE_LOST_WARN:
        warnings.append(f"face lost in {100 * lost:.0f}% of frames: those spans follow the audio only")
    gap, longest = 0, 0
    for p in present:
        gap = 0 if p else gap + 1
        longest = max(longest, gap)
    if picture.fps and longest / picture.fps >= FACE_GAP_WARN_S:
        warnings.append(f"no face for {longest / picture.fps:.1f} s in a row")
    if overall < LOW_CONFIDENCE:
        warnings.append(f"low confidence ({overall:.2f}): check the sync by eye")
    at_limit = (stretch <= config.min_stretch * (1 + EXTREME_STRETCH_MARGIN)) | (
        stretch >= config.max_stretch * (1 - EXTREME_STRETCH_MARGIN)
    )
    if at_limit.mean() > 0.05:
        warnings.append(
            f"extreme stretch ({stretch.min():.2f}x to {stretch.max():.2f}x) over "
            f"{100 * at_limit.mean():.0f}% of the speech: listen for artefacts"
        )
    if config.guide == "auto" and picture.audio is None:
        warnings.append("the picture has no audio track: aligned on the lips only")
    elif use_guide and features.guide_weight < 1.0:
        warnings.append(
            f"the picture's audio hardly follows the dub (guide weight {features.guide_weight:.2f}): "
            "aligned mostly on the lips"
        )
    return warnings

