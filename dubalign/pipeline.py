"""The orchestrator: picture + dub in, dub on the picture's timeline out.

    analyze_picture   decode the picture, track the lips, read its audio   (cacheable per picture)
    align_dub         features -> sync matrix -> path -> time map -> render (per take)
    align             both, then an atomic write

Each stage is one named call followed by ``hook(stage, value)``, where progress bars and artifact
dumps plug in. Progress inside a stage arrives as ``hook("progress", Progress(...))``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import media
from .audio import frame_energy_db, log_mel, speech_activity, to_analysis
from .errors import AlignmentError, DubalignError, MediaError, ParameterError
from .files import atomic_output, atomic_outputs_by_path, check_outputs, write_json_to
from .lips import LipTrack, track_picture
from .path import (
    DEFAULT_PAUSE_MAX_SLOPE,
    DEFAULT_PAUSE_MIN_SLOPE,
    PathConstraints,
    WarpPath,
    band_around,
    find_pauses,
    solve_coarse_to_fine,
)
from .preview import preview_container, write_preview
from .render import render
from .sync import (
    GuideTrust,
    SyncFeatures,
    audio_range_db,
    guide_agreement,
    guide_weight,
    same_take_contrast,
    sync_features,
    with_fine_guide,
)
from .timemap import TimeMap, anchored_shift, path_to_timemap
from .units import FEATURE_RATE, PATH_RATE, frames_to_seconds

if TYPE_CHECKING:
    from .model import LipSyncModel

Hook = Callable[[str, object], None]

SHIPPED_MODEL = "shipped"  # AlignConfig.model for the weights in models/lipsync.pt
FACE_LOST_WARN = 0.10  # share of picture frames without a face that earns a warning
FACE_GAP_WARN_S = 1.0  # a single stretch without a face this long earns a warning
LOW_CONFIDENCE = 0.35  # overall confidence under this earns a warning ("low")
HIGH_CONFIDENCE = 0.7  # overall confidence from this on is "high" (between the two: "medium")
CONFIDENCE_TOLERANCE = 4  # frames (40 ms): probability mass this close to the path counts as sure
CONFIDENCE_RADIUS = 150  # frames each side of the path against which its cells are compared
# Lips-only maps are placed this much later (s): lips place the dub within tens of ms either way,
# and BT.1359 lets audio lag 125 ms unnoticed but lead only 45. Tuned on the dev benchmark cases
# (warped, lips only: +8 points in sync against no aim). A map the guide shares in is aimed in
# proportion to the lips' share (1 - guide weight): a guide weighted down to a few hundredths left
# the lips' map unaimed (noisy fluent re-performances, 6 of 30 cases: 100 % in sync aimed, 43-63 %
# not).
LIPS_ONLY_AIM_S = 0.040
LONG_LINE_S = 20.0  # s: longer dubs are solved in a corridor of +-2 --max-shift, coarse-to-fine
GUIDE_MODES = ("auto", "always", "off")  # see AlignConfig.guide
# Picture audio measured this far off its own lips, with at least this confidence, is not used as
# a guide. The offset is above BT.1359's acceptability window and above the largest constant error
# `check` measured on an in-sync dev clip (131 ms; median 25 ms). Confidence: set on the dev
# warped cases, where babble at -5 dB made `check` report wrong offsets of 0.46 s at confidence
# 0.62 to 0.73, while slipped clean sound measures 0.98 or more.
GUIDE_SLIP_S = 0.25
GUIDE_SLIP_CONFIDENCE = 0.9
GUIDE_SLIP_MAX_SEARCH_S = 5.0  # s: the largest offset `check` searches
WAV_SUFFIXES = (".wav", ".wave", ".bwf")  # output names dubalign accepts: it writes WAV audio
REPORT_MAP_TOLERANCE_S = 1e-4  # the report's time map: knots to 0.1 ms, straight runs merged
REPORT_STRETCH_DELTA = 0.05  # the report names regions stretched more than 5 % either way...
REPORT_STRETCH_MIN_S = 0.1  # ...and lasting this long (s of dub) at least
EXTREME_STRETCH_MARGIN = 0.03  # stretch within this of a limit counts as 'at the limit'
# The fading tails of words (speech activity under TAIL_ACTIVITY, outside pauses) may be squeezed
# to TAIL_MIN_STRETCH: a re-performance's new gaps between words must close up, and the tails in
# them read as speech. Both tuned on the dev benchmark cases (re-performance clean +7 points in
# sync on ../shared/eval, warped unchanged); 0.5x for all speech lost a bundled CI case.
TAIL_ACTIVITY = 0.85
TAIL_MIN_STRETCH = 0.5
SYNC_POINT_SLACK = 1  # path columns (10 ms) either side of a sync point its row may use
SYNC_POINT_MIN_GAP_S = 0.03  # closer sync points (on either axis) leave the map no room between them
SYNC_POINT_TOLERANCE_S = 1.0 / PATH_RATE  # the map holds every sync point this closely, or the alignment fails


@dataclass(frozen=True)
class AlignConfig:
    """What the user can choose. Frozen: the CLI builds it once and the library only reads it."""

    # "auto": fuse the picture's own audio when it has a track, unless it is clearly out of sync with
    # its own lips or does not follow the dub; "always": fuse it whatever it looks like; "off": lips only
    guide: str = "auto"
    max_shift: float = 1.5  # s: how far the dub's start may move against the picture's start
    # Stretch = picture time per dub time inside words: the smallest is the fastest the dub may be
    # played (2/3: 1.5x speed), the largest the slowest (1.5: played at 2/3 speed)
    min_stretch: float = 2 / 3
    max_stretch: float = 1.5
    model: str = "shipped"  # the lip model: "shipped" (models/lipsync.pt) or a checkpoint path
    renderer: str = "auto"  # "auto", "rubberband" or "vocoder"
    workers: int = 0  # threads tracking lips at once; 0: automatic (lips.track_picture)
    # (dub s, picture s) points the dub must pass through: an editor's fix for a moment placed
    # wrong (--sync-point DUB_S=PIC_S; picture s from the picture's (region's) start). Any order,
    # SYNC_POINT_MIN_GAP_S apart; each is held exactly (within SYNC_POINT_TOLERANCE_S, or the
    # alignment fails saying why), with no lips-only aim
    sync_points: tuple[tuple[float, float], ...] = ()
    # (start s, end s) spans of the dub played at their own speed, moved but never stretched: a
    # laugh, a breath, a musical phrase (--protect START-END)
    protect: tuple[tuple[float, float], ...] = ()
    # How closely the dub follows the lips moment by moment, against keeping the take's own timing
    # (--tightness). 1: follows the lips syllable by syllable, stretching words and pauses wherever
    # the picture asks. 0.5: every moment lands halfway between that and the take slid as a whole:
    # speed changes half as large, and each syllable about half as far off the lips as the plain
    # slide leaves it. 0: slides the whole take as one block to its best place, no stretching (the
    # samples are copied unchanged); with sync points, only the take's pauses give way between
    # them (its words too, if the pauses cannot). The map is that blend, tightness : 1 - tightness.
    tightness: float = 1.0
    # Another picture of the same speaker whose own sound is clean and in sync (another shot of the
    # reel, a wild line recorded on set): the lip model is adapted to this face and voice on it
    # before aligning (--adapt-from). None: the shipped model as it is.
    adapt_from: str | None = None

    def check(self) -> None:
        if self.guide not in GUIDE_MODES:
            raise ParameterError(f"--guide must be one of {', '.join(GUIDE_MODES)}, not {self.guide!r}")
        if not 0.0 < self.max_shift <= 30.0:
            raise ParameterError(f"--max-shift must be between 0 and 30 seconds, not {self.max_shift}")
        # pauses may already be squeezed to DEFAULT_PAUSE_MIN_SLOPE and stretched to
        # DEFAULT_PAUSE_MAX_SLOPE; speech may not go further than silence
        if not DEFAULT_PAUSE_MIN_SLOPE <= self.min_stretch < 1.0:
            raise ParameterError(
                f"--min-stretch (the fastest the dub may play, as picture time per dub time) must be at least "
                f"{DEFAULT_PAUSE_MIN_SLOPE:g} and below 1, not {self.min_stretch}"
            )
        if not 1.0 < self.max_stretch <= DEFAULT_PAUSE_MAX_SLOPE:
            raise ParameterError(
                f"--max-stretch (the slowest the dub may play, as picture time per dub time) must be above 1 "
                f"and at most {DEFAULT_PAUSE_MAX_SLOPE:g}, not {self.max_stretch}"
            )
        if not 0.0 <= self.tightness <= 1.0:
            raise ParameterError(
                f"--tightness must be between 0 (one shift for the whole take) and 1 (follow the lips), "
                f"not {self.tightness}"
            )
        for start, end in _pairs("--protect", self.protect, "START-END"):
            if not 0.0 <= start < end:
                raise ParameterError(
                    f"--protect {start:g}-{end:g}: a span of dub seconds must start at 0 or later "
                    f"and end after it starts"
                )
        points = sorted(_pairs("--sync-point", self.sync_points, "DUB_S=PIC_S"))
        for (d0, p0), (d1, p1) in zip(points, points[1:], strict=False):
            if d1 - d0 < SYNC_POINT_MIN_GAP_S or p1 - p0 < SYNC_POINT_MIN_GAP_S:
                raise ParameterError(
                    f"--sync-point {d0:g}={p0:g} and {d1:g}={p1:g} contradict each other: a later dub time "
                    f"must go to a later picture time, at least {1000 * SYNC_POINT_MIN_GAP_S:g} ms apart on both"
                )
        if any(d < 0 for d, _ in points):
            raise ParameterError(f"--sync-point {points[0][0]:g}={points[0][1]:g}: dub times start at 0")
        if self.model != SHIPPED_MODEL and not Path(self.model).is_file():
            raise ParameterError(
                f"--model: no checkpoint at {self.model}; give a file written by scripts/train.py "
                f"(with its .sha256 beside it) or leave --model out for the shipped model"
            )
        if self.workers < 0:
            raise ParameterError(f"workers must be 0 (automatic) or more, not {self.workers}")
        if self.adapt_from is not None and not Path(self.adapt_from).is_file():
            raise ParameterError(f"--adapt-from: no picture at {self.adapt_from}")
        if self.renderer not in ("auto", "rubberband", "vocoder"):
            raise ParameterError(f"renderer must be 'auto', 'rubberband' or 'vocoder', not {self.renderer!r}")


def _pairs(option: str, value: object, form: str) -> list[tuple[float, float]]:
    """``value`` as a list of pairs of finite floats, or a ParameterError naming ``option``."""
    try:
        pairs = [(float(a), float(b)) for a, b in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ParameterError(f"{option} must be a list of {form} pairs, not {value!r}") from None
    bad = [p for p in pairs if not all(map(math.isfinite, p))]
    if bad:
        raise ParameterError(f"{option} {bad[0][0]}, {bad[0][1]}: not finite seconds")
    return pairs


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
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, meta=json.dumps(meta), **arrays)

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
    speech_span : (first, last) s of speech in the dub; stretch_range : slowest and fastest local
        rate inside speech (word bodies; pauses and word tails excluded)
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
    speech_span: tuple[float, float]
    timings: dict
    warnings: list[str]
    adaptation: dict | None = None  # what adapting the lip model did (AdaptationReport.to_json), if asked
    # what the picture's audio showed once the dub was placed (None: no guide): see place_dub
    guide_evidence: dict | None = None

    def summary(self) -> dict:
        """What was done, for a person: where the line sits on the picture, shift, stretch, trust."""
        first, last = (float(t) for t in self.timemap.to_picture(self.speech_span))
        shift = first - self.speech_span[0]
        lo, hi = self.stretch_range
        level = confidence_level(self.overall_confidence)
        guide = (
            "not used" if self.guide_weight == 0 else
            "used" if self.guide_weight >= 1 else f"used at weight {self.guide_weight:.2f}"
        )
        if self.guide_weight > 0 and (self.guide_evidence or {}).get("fine_guide"):
            guide += " (the dub's own performance: its fine spectral detail too)"
        text = (
            f"The line's speech plays from {first:.3f} s to {last:.3f} s on the picture "
            f"({'later' if shift >= 0 else 'earlier'} by {abs(shift) * 1000:.0f} ms at its start), "
            f"speech stretched {lo:.2f}x to {hi:.2f}x; confidence {self.overall_confidence:.2f} ({level}); "
            f"{self.face}; picture audio as guide: {guide}; "
            + (f"{len(self.warnings)} warning(s)." if self.warnings else "no warnings.")
        )
        return {
            "text": text,
            "speech_on_picture_s": [round(first, 4), round(last, 4)],
            "shift_at_start_s": round(shift, 4),
            "speech_stretch": [round(lo, 3), round(hi, 3)],
            "stretched_regions": _stretched_regions(self.timemap, self.speech_span),
            "confidence": round(self.overall_confidence, 3),
            "confidence_level": level,
            "face": self.face,
            "guide": guide,
            "warnings": list(self.warnings),
        }

    def to_json(self) -> dict:
        """A JSON-ready report (everything but the audio), its human summary first."""
        return {
            "summary": self.summary(),
            "sample_rate": self.sr,
            "subtype": self.subtype,
            "channels": int(self.audio.shape[1]),
            "duration_s": round(len(self.audio) / self.sr, 4),
            "model": self.model,
            "renderer": self.renderer,
            "face": self.face,
            "guide_weight": round(self.guide_weight, 3),
            "guide_evidence": self.guide_evidence,
            "overall_confidence": round(self.overall_confidence, 3),
            "confidence_per_second": [None if np.isnan(c) else round(float(c), 3) for c in self.confidence],
            "stretch_range": [round(s, 3) for s in self.stretch_range],
            "speech_span_s": [round(t, 4) for t in self.speech_span],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "adaptation": self.adaptation,
            "time_map": report_map(self.timemap),
        }


def confidence_level(confidence: float) -> str:
    """"high", "medium" or "low", as the report, the plot and the review page name confidence."""
    return "high" if confidence >= HIGH_CONFIDENCE else "medium" if confidence >= LOW_CONFIDENCE else "low"


def report_map(timemap: TimeMap, *, tolerance: float = REPORT_MAP_TOLERANCE_S) -> dict:
    """The time map as the report stores it: knots rounded to ``tolerance`` s, and knots dropped
    where the map is a straight line within ``tolerance`` (a constant stretch needs two knots)."""
    dub, pic = timemap.dub_t, timemap.pic_t
    keep = [0]
    for j in range(2, len(dub)):
        i = keep[-1]
        mid = slice(i + 1, j)
        line = pic[i] + (dub[mid] - dub[i]) * (pic[j] - pic[i]) / (dub[j] - dub[i])
        if np.abs(line - pic[mid]).max() > tolerance / 2:
            keep.append(j - 1)
    keep.append(len(dub) - 1)
    digits = int(round(-np.log10(tolerance)))
    return {"dub_t": [round(float(dub[k]), digits) for k in keep],
            "pic_t": [round(float(pic[k]), digits) for k in keep]}


def _stretched_regions(timemap: TimeMap, span: tuple[float, float]) -> list[dict]:
    """Where the speech plays noticeably faster or slower than recorded, in picture seconds."""
    stretch = timemap.stretch()
    mid = (timemap.dub_t[:-1] + timemap.dub_t[1:]) / 2
    changed = (np.abs(stretch - 1.0) > REPORT_STRETCH_DELTA) & (mid >= span[0]) & (mid <= span[1])
    regions = []
    edges = np.flatnonzero(np.diff(np.r_[0, changed.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        dub_len = timemap.dub_t[b] - timemap.dub_t[a]
        if dub_len < REPORT_STRETCH_MIN_S:
            continue
        pic_len = timemap.pic_t[b] - timemap.pic_t[a]
        regions.append({"picture_s": [round(float(timemap.pic_t[a]), 3), round(float(timemap.pic_t[b]), 3)],
                        "stretch": round(float(pic_len / dub_len), 3)})
    return regions


def _noop(stage: str, value: object) -> None:
    pass


@functools.lru_cache(maxsize=4)
def load_lip_model(name: str = SHIPPED_MODEL):
    """The lip model ``name`` (AlignConfig.model), loaded once per process. It runs on numpy:
    aligning never imports torch (only ``adapt_from`` does, to train)."""
    from .model import load_model

    return load_model(None if name == SHIPPED_MODEL else name)


@functools.lru_cache(maxsize=2)
def adapted_lip_model(name: str, picture: str) -> tuple[LipSyncModel, dict]:
    """The lip model ``name`` adapted to the face and in-sync sound of ``picture`` (see adapt.py),
    once per process: every take aligned against that speaker reuses it.

    Returns (the model, the adaptation's report as JSON). The model is the unadapted one when the
    picture has too little speech, or the adaptation did not beat it on held-out speech; a picture
    without sound, or without a face, is an error naming it.
    """
    from .adapt import adapt_model

    base = load_lip_model(name)
    try:
        source = analyze_picture(picture)
    except DubalignError as e:
        raise type(e)(f"--adapt-from {picture}: {e}") from None
    if source.audio is None:
        raise MediaError(f"--adapt-from: {picture} has no audio track to adapt the lip model on")
    model, report = adapt_model(base, source.track, source.audio)
    return model, {"picture": str(picture), **report.to_json()}


def _adaptation_warnings(adaptation: dict | None, config: AlignConfig) -> list[str]:
    if adaptation is None or adaptation["kept"]:
        return []
    return [f"the lip model was not adapted to {config.adapt_from}: {adaptation['reason']}"]


def analyze_picture(
    picture: str | Path,
    config: AlignConfig = AlignConfig(),
    *,
    start: float | None = None,
    end: float | None = None,
    hook: Hook | None = None,
) -> PictureAnalysis:
    """Decode a picture (or the region [start, end) s of it), track the lips, read its audio.

    Of ``config`` only ``workers`` is read: the result does not depend on the other options.
    """
    config.check()
    hook = hook or _noop
    info = media.probe_picture(picture)
    start = 0.0 if start is None else float(start)
    if start < 0 or (end is not None and end <= start):
        raise ParameterError(f"bad picture region {start}..{end} s")

    t0 = time.perf_counter()
    audio = media.read_picture_audio(picture, start=start, end=end) if info.has_audio else None
    audio_s = time.perf_counter() - t0
    hook("picture_audio", audio)

    region = (end if end is not None else info.duration) - start
    tracking = track_picture(
        picture, start=start, end=end, duration=region, fps=info.fps, workers=config.workers,
        audio_energy=_envelope_fn(audio) if audio is not None else None,
        on_progress=lambda done, total: hook("progress", Progress("landmarks", done, total)),
    )
    track = tracking.track
    hook("lips", track)

    frame_dur = 1.0 / info.fps if info.fps else float(np.median(np.diff(track.times)))
    duration = (end - start) if end is not None else max(info.duration - start, track.times[-1] + frame_dur)
    return PictureAnalysis(
        path=str(picture), start=start, duration=float(duration), fps=info.fps, width=info.width,
        height=info.height, track=track, audio=audio, timings={"picture_audio": audio_s, **tracking.timings},
    )


def _envelope_fn(audio: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Energy of the picture audio at given times, for picking the speaking face."""
    db = frame_energy_db(audio)

    def at(times: np.ndarray) -> np.ndarray:
        return db[np.clip(np.round(times * FEATURE_RATE).astype(int), 0, len(db) - 1)]

    return at


@dataclass(frozen=True)
class DubFeatures:
    """What the alignment reads from the dub, frame i at i / PATH_RATE s.

    y16 : mono analysis audio at ANALYSIS_SR; mel : [shape=(n, N_MELS)] log-mel;
    speech : [shape=(n,)] speech activity in [0, 1]; pauses, tails : [shape=(n,)] bool, rows that
    may be squeezed or stretched freely (pauses) or squeezed to TAIL_MIN_STRETCH (word tails)
    """

    y16: np.ndarray
    mel: np.ndarray
    speech: np.ndarray
    pauses: np.ndarray
    tails: np.ndarray


@dataclass(frozen=True)
class Placement:
    """Where the dub goes: the path through the fused costs and the time map made from it.

    With 0 < tightness < 1 the map is a blend and ``path`` holds the map's own cell in each row
    (what the confidence and the plot should show); its cost is then not a solver cost.

    features : the sync features as finally weighted (the guide's weight may have been lowered)
    guide_agreement : how well the picture's audio follows the placed dub (None: no guide)
    guide_trust : whether that audio is clean or the dub's own performance (None: no guide)
    aim_s : s the map was placed later than the path (lips only aim at the BT.1359 window's centre)
    """

    features: SyncFeatures
    path: WarpPath
    timemap: TimeMap
    guide_agreement: float | None
    guide_trust: GuideTrust | None
    aim_s: float


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
    if not isinstance(dub, media.DubAudio):
        dub = media.read_dub(dub)

    with _timed(timings, "features"):
        feats = dub_features(dub)
    hook("features", feats)
    _check_fits(dub, picture.duration, config)

    with _timed(timings, "model_load"):
        model = load_lip_model(config.model)
    adaptation = None
    if config.adapt_from is not None:
        with _timed(timings, "adapt"):
            model, adaptation = adapted_lip_model(config.model, config.adapt_from)
    use_guide = config.guide != "off" and picture.audio is not None
    slip = None
    if use_guide and config.guide == "auto":
        with _timed(timings, "guide_check"):
            slip = guide_slip(picture, model, config)
        use_guide = slip is None
    with _timed(timings, "model"):
        sync = sync_features(
            picture.track, feats.mel, model, dub_speech=feats.speech, dub_pause=feats.pauses,
            duration=picture.duration, pad=config.max_shift, picture_y16=picture.audio if use_guide else None,
        )
    hook("sync_features", sync)

    with _timed(timings, "path"):
        placement = place_dub(sync, feats, picture.audio, config, hook=hook)
    hook("placement", placement)  # the costs as finally weighted, with the path through them
    hook("path", placement.path)
    hook("time_map", placement.timemap)

    with _timed(timings, "render"):
        n_out = int(round(picture.duration * dub.sr))
        rendered = render(dub.samples, dub.sr, placement.timemap, n_out=n_out, method=config.renderer)
    hook("render", rendered)

    confidence, overall = _confidence(placement.features, placement.path, feats.speech)
    stretch = speech_stretch(placement.timemap, feats.pauses | feats.tails)  # word bodies only
    result = AlignmentResult(
        audio=rendered.audio, sr=dub.sr, subtype=dub.subtype, timemap=placement.timemap,
        confidence=confidence, overall_confidence=overall, model=model.name, renderer=rendered.method,
        face=_describe_face(picture.track), guide_weight=placement.features.guide_weight,
        stretch_range=(float(stretch.min()), float(stretch.max())), speech_span=_speech_span(feats),
        timings=timings,
        warnings=[*dub.warnings, *assess(picture, placement.features, stretch, overall, config, use_guide, slip,
                         placement.guide_agreement, placement.guide_trust),
                  *_adaptation_warnings(adaptation, config)],
        adaptation=adaptation, guide_evidence=_guide_evidence(placement),
    )
    hook("result", result)
    return result


def _guide_evidence(placement: Placement) -> dict | None:
    """The report's account of the guide's weight (see place_dub)."""
    trust = placement.guide_trust
    if placement.guide_agreement is None or trust is None:
        return None
    return {
        "envelope_agreement": round(placement.guide_agreement, 3),
        "speech_above_noise_floor_db": round(trust.range_db, 1),
        "same_performance_pitch_contrast": round(trust.same_take, 3),
        "fine_guide": trust.same_performance,
        "trust": round(trust.factor, 3),
    }


def dub_features(dub: media.DubAudio) -> DubFeatures:
    """The dub's analysis audio, log-mel, speech activity, pauses and word tails."""
    y16 = to_analysis(dub.samples, dub.sr)
    mel = log_mel(y16)
    speech = speech_activity(y16)[: len(mel)]
    pauses = find_pauses(speech)  # silence may be squeezed or stretched freely
    return DubFeatures(y16=y16, mel=mel, speech=speech, pauses=pauses, tails=word_tails(speech, pauses))


def place_dub(
    sync: SyncFeatures,
    feats: DubFeatures,
    picture_y16: np.ndarray | None,
    config: AlignConfig,
    *,
    hook: Hook | None = None,
) -> Placement:
    """Fuse, solve and map: the path through the sync costs and the time map made from it.

    With a guide, the dub is placed once, then the placed dub sets the guide's weight: how well the
    picture's audio follows it (a guide that hardly does, such as music or wild sound, is weighted
    down or dropped) and whether that audio is clean or the dub's own performance (a new
    performance under noise is dropped, see sync.GuideTrust). The dub's own performance is then
    guided by its fine spectral detail too (sync.FINE_CEPSTRA). When either changes the costs (or
    the editor's tightness is below 1: the guide is judged on the free placement), the dub is
    placed again. Maps aim up to LIPS_ONLY_AIM_S later, in proportion to the lips' share, unless the
    editor's sync points pin them.
    """
    hook = hook or _noop
    # the guide is judged on the dub's free placement, whatever the editor's tightness
    first = config if sync.guide_dub is None or config.tightness == 1.0 else replace(config, tightness=1.0)
    path, timemap = _solve_map(sync, config=first, speech=feats.speech, pauses=feats.pauses, tails=feats.tails)
    agreement = trust = None
    if sync.guide_dub is not None:
        agreement = guide_agreement(feats.y16, picture_y16, timemap)
        hook("guide_agreement", agreement)
        trust = GuideTrust(
            range_db=audio_range_db(picture_y16),
            same_take=same_take_contrast(feats.y16, picture_y16, timemap, feats.speech),
        )
        hook("guide_trust", trust)
        weight = guide_weight(agreement) * trust.factor
        lowered = weight < sync.guide_weight and config.guide == "auto"
        if lowered:
            sync = replace(sync, guide_weight=weight)
        if trust.same_performance:
            sync = with_fine_guide(sync, feats.mel, picture_y16)
        if lowered or trust.same_performance or first is not config:
            path, timemap = _solve_map(
                sync, config=config, speech=feats.speech, pauses=feats.pauses, tails=feats.tails
            )
    # an editor's sync points hold as given: no aim then
    lips_share = 1.0 if sync.guide_dub is None else 1.0 - sync.guide_weight
    aim = LIPS_ONLY_AIM_S * lips_share if not config.sync_points else 0.0
    if aim:
        timemap = TimeMap(timemap.dub_t, timemap.pic_t + aim)
    return Placement(
        features=sync, path=path, timemap=timemap, guide_agreement=agreement, guide_trust=trust, aim_s=aim
    )


def align(
    picture: str | Path,
    dub: str | Path,
    output: str | Path,
    config: AlignConfig = AlignConfig(),
    *,
    report: str | Path | None = None,
    plot: str | Path | None = None,
    preview: str | Path | None = None,
    preview_guide: bool = False,
    hook: Hook | None = None,
) -> AlignmentResult:
    """Align ``dub`` to ``picture`` and write the aligned dub to ``output`` (a WAV).

    Optional outputs: ``report`` (JSON), ``plot`` (PNG: the sync costs with the path, confidence
    and stretch over picture time), ``preview`` (.mov/.mp4/.mkv: the picture with the aligned dub
    as its sound, and with ``preview_guide`` the picture's own sound as a second track). All
    outputs land together or none does. Before any slow work: refuses outputs that would
    overwrite an input or each other, folders that do not exist or cannot be written, and output
    names of the wrong kind.
    """
    outputs = {"output": output, "report": report, "plot": plot, "preview": preview}
    inputs = {"picture": picture, "dub": dub}
    if config.adapt_from is not None:
        inputs["--adapt-from picture"] = config.adapt_from
    check_outputs(outputs, inputs)
    if Path(output).suffix.lower() not in WAV_SUFFIXES:
        raise ParameterError(f"the output {output} must be a WAV file (.wav or .bwf): dubalign writes WAV audio")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise ParameterError(f"the plot {plot} must be a .png file")
    container = preview_container(preview) if preview is not None else None
    # fail fast on what can be known before the slow picture analysis: the dub, the model, lengths
    config.check()
    dub_audio = media.read_dub(dub)
    t0 = time.perf_counter()
    load_lip_model(config.model)
    model_load_s = time.perf_counter() - t0
    info = media.probe_picture(picture)
    _check_fits(dub_audio, info.duration, config)
    if config.adapt_from is not None and not media.probe_picture(config.adapt_from).has_audio:
        raise MediaError(f"--adapt-from: {config.adapt_from} has no audio track to adapt the lip model on")
    analysis = analyze_picture(picture, config, hook=hook)
    seen: dict[str, object] = {}

    def keep(stage: str, value: object) -> None:  # what the plot draws
        if stage == "placement":
            seen[stage] = value
        if hook is not None:
            hook(stage, value)

    result = align_dub(analysis, dub_audio, config, hook=keep)
    result.timings["model_load"] = model_load_s  # loaded above, before the picture, to fail fast
    with _timed(result.timings, "write"), atomic_outputs_by_path(output, report, plot, preview) as tmp:
        media.write_wav_to(tmp[output], result.audio, result.sr, subtype=result.subtype)
        if plot is not None:
            from .plot import plot_alignment  # matplotlib loads only when a plot is asked for

            placement = seen["placement"]
            plot_alignment(tmp[plot], placement.features, placement.path, result,
                           stretch_limits=(config.min_stretch, config.max_stretch))
        if preview is not None:
            guide = media.read_picture_audio(picture, sr=result.sr) if preview_guide else None
            if preview_guide and guide is None:
                result.warnings.append("--preview-guide: the picture has no audio track; the preview has the dub only")
            write_preview(picture, result.audio, result.sr, tmp[preview], container=container,
                          guide=guide, guide_sr=result.sr if guide is not None else None)
        if report is not None:
            write_json_to(tmp[report], {"picture": str(picture), "dub": str(dub), "output": str(output),
                                        **{k: str(v) for k, v in (("plot", plot), ("preview", preview)) if v},
                                        **result.to_json()})
    return result


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[name]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def _speech_span(feats: DubFeatures) -> tuple[float, float]:
    """First and last s of speech in the dub (the whole dub when it never rises to speech)."""
    rows = np.flatnonzero(feats.speech >= 0.5)
    if not len(rows):
        return 0.0, float(frames_to_seconds(max(len(feats.speech) - 1, 1), PATH_RATE))
    return float(frames_to_seconds(rows[0], PATH_RATE)), float(frames_to_seconds(rows[-1], PATH_RATE))


def _check_fits(dub: media.DubAudio, picture_s: float, config: AlignConfig) -> None:
    """Refuse a dub that cannot fit the picture (``picture_s`` long) at the fastest stretch allowed."""
    if dub.duration * config.min_stretch > picture_s + 2 * config.max_shift:
        raise AlignmentError(
            f"the dub ({dub.duration:.1f} s) is much longer than the picture ({picture_s:.1f} s) "
            f"plus --max-shift ({config.max_shift:g} s): trim the dub or give a longer picture"
        )


def word_tails(speech: np.ndarray, pauses: np.ndarray) -> np.ndarray:
    """Dub rows in the fading tails of words: some speech activity, but under TAIL_ACTIVITY.

    speech : [shape=(n_dub,)] speech activity per PATH_RATE row; pauses : [shape=(n_dub,)] bool.
    """
    return (speech < TAIL_ACTIVITY) & ~pauses


def _solve(features: SyncFeatures, config: AlignConfig, constraints: PathConstraints) -> WarpPath:
    """The constrained DTW path through the sync matrix, coarse-to-fine when the line is long.

    Each sync point's row may only use the columns within SYNC_POINT_SLACK of the point, on the
    fine grid and on every pooled one (there in pooled columns), so the coarse pass already
    passes through it and the fine band around it holds it.
    """
    pad_cols = int(round(config.max_shift * PATH_RATE))
    corridor = None
    if features.n_dub > LONG_LINE_S * PATH_RATE:
        # long lines: no dub moment may move more than twice --max-shift, which bounds memory
        corridor = (-pad_cols, 3 * pad_cols)  # column - row; pad_cols = no shift
    pooled: dict[int, SyncFeatures] = {}
    cells = [_sync_cell(point, config) for point in config.sync_points]

    def cost_fn(col_start: np.ndarray, width: int, factor: int) -> np.ndarray:
        if factor not in pooled:
            pooled[factor] = features.pooled(factor)
        costs = pooled[factor].band(col_start, width).costs
        for row, col in cells:
            r = row // factor
            if r < len(col_start):
                costs[r, np.abs(col_start[r] + np.arange(width) - col // factor) > SYNC_POINT_SLACK] = np.inf
        return costs

    return solve_coarse_to_fine(
        cost_fn, features.n_dub, features.n_pic, start_cols=(0, 2 * pad_cols), corridor=corridor,
        constraints=constraints,
    )


def _solve_map(
    features: SyncFeatures, *, config: AlignConfig, speech: np.ndarray, pauses: np.ndarray,
    tails: np.ndarray,
) -> tuple[WarpPath, TimeMap]:
    """The path through the fused costs and the smooth time map made from it, under the editor's
    controls (see AlignConfig): protected spans fix rows, sync points pin the path and the map,
    and below tightness 1 the map is blended with the take slid as a whole (``anchored_shift``
    through the sync points when there are any, else the best constant shift).

    Where the map is such a blend, the path returned is the map's cell in each dub row, its cost
    the mean fused cost of those cells in a band of +-CONFIDENCE_RADIUS around them (no
    penalties): what confidence and plots should measure is where the dub was placed.
    """
    n_dub = features.n_dub
    constraints = PathConstraints(
        min_slope=config.min_stretch, max_slope=config.max_stretch, pause_rows=pauses, soft_rows=tails,
        soft_min_slope=min(TAIL_MIN_STRETCH, config.min_stretch), fixed_rows=_protected_rows(config, n_dub),
    )
    points = sorted((float(d), float(p)) for d, p in config.sync_points)
    _check_sync_points(points, features, config, constraints)
    origin, t = -config.max_shift, config.tightness
    free = None
    if t > 0:
        try:
            path = _solve(features, config, constraints)
        except AlignmentError as exc:
            if not points:
                raise
            raise AlignmentError(
                f"no path passes through every --sync-point within the stretch limits, protected spans and "
                f"--max-shift: check the points or relax those limits ({exc})"
            ) from exc
        free = path_to_timemap(
            path, constraints=constraints, rate=PATH_RATE, pic_origin=origin, dub_speech=speech, anchors=points
        )
        if t == 1:
            _check_held(points, free)
            return path, free
    if points:
        rigid = anchored_shift(n_dub, points, constraints=constraints, rate=PATH_RATE, pic_origin=origin)
    else:
        every = replace(constraints, fixed_rows=np.ones(n_dub, dtype=bool))  # (1, 1) steps only
        path = _solve(features, replace(config, sync_points=()), every)
        rigid = path_to_timemap(path, constraints=every, rate=PATH_RATE, pic_origin=origin)
        if free is None:
            return path, rigid
    timemap = rigid if free is None else TimeMap(free.dub_t, t * free.pic_t + (1 - t) * rigid.pic_t)
    _check_held(points, timemap)
    return _map_path(timemap, features, config), timemap


def _check_held(points: list[tuple[float, float]], timemap: TimeMap) -> None:
    """Raise unless the map passes within SYNC_POINT_TOLERANCE_S of every sync point."""
    for dub_s, pic_s in points:
        miss = abs(float(timemap.to_picture(dub_s)) - pic_s)
        if miss > SYNC_POINT_TOLERANCE_S:
            raise AlignmentError(
                f"--sync-point {dub_s:g}={pic_s:g} could only be held within {1000 * miss:.0f} ms: the stretch "
                f"limits and protected spans leave too little room between the sync points; "
                f"widen --min-stretch/--max-stretch, shorten --protect or check the points"
            )


def _map_path(timemap: TimeMap, features: SyncFeatures, config: AlignConfig) -> WarpPath:
    """The cell of each dub row that ``timemap`` (on the path grid, one knot per row) passes."""
    rows = np.arange(features.n_dub)
    cols = np.round((timemap.pic_t[rows] + config.max_shift) * PATH_RATE)
    cols = np.clip(cols, 0, features.n_pic - 1).astype(np.int64)
    col_start, width = band_around((rows, cols), features.n_dub, features.n_pic, radius=CONFIDENCE_RADIUS)
    costs = features.band(col_start, width).costs
    return WarpPath(dub_frames=rows, pic_frames=cols, cost=float(np.mean(costs[rows, cols - col_start])))


def _protected_rows(config: AlignConfig, n_dub: int) -> np.ndarray | None:
    """Dub rows played at their own speed: those of --protect spans (None: no span)."""
    if not config.protect:
        return None
    fixed = np.zeros(n_dub, dtype=bool)
    for start, end in config.protect:
        # whole rows covering the span; a dub may end up to one row after its last row's time
        if end > n_dub / PATH_RATE:
            raise ParameterError(
                f"--protect {start:g}-{end:g}: the dub is only {n_dub / PATH_RATE:.2f} s long; "
                f"give a span inside it"
            )
        fixed[int(np.floor(start * PATH_RATE)) : int(np.ceil(end * PATH_RATE)) + 1] = True
    return fixed


def _sync_cell(point: tuple[float, float], config: AlignConfig) -> tuple[int, int]:
    """The (row, column) of a (dub s, picture s) sync point on the path grid."""
    dub_s, pic_s = point
    return int(round(dub_s * PATH_RATE)), int(round((pic_s + config.max_shift) * PATH_RATE))


def _check_sync_points(
    points: list[tuple[float, float]], features: SyncFeatures, config: AlignConfig, constraints: PathConstraints
) -> None:
    """Refuse sync points no path can pass through, naming them and what to change.

    Generous by a couple of columns: what these bounds cannot see, the solver still refuses.
    """
    if not points:
        return
    n_dub, n_pic = features.n_dub, features.n_pic
    pad_cols = int(round(config.max_shift * PATH_RATE))
    least, most = constraints.advance_bounds(n_dub)
    reach_lo = np.concatenate([[0.0], np.cumsum(least)])
    reach_hi = np.concatenate([[0.0], np.cumsum(most)])
    slack = 2 * SYNC_POINT_SLACK + 1  # the point's own columns and the steps' rounding
    picture_s = (n_pic - 1) / PATH_RATE - 2 * config.max_shift
    for point in points:
        (row, col), name = _sync_cell(point, config), f"--sync-point {point[0]:g}={point[1]:g}"
        if row >= n_dub:
            raise ParameterError(f"{name}: the dub is only {n_dub / PATH_RATE:.2f} s long")
        if not 0 <= col < n_pic:
            raise ParameterError(
                f"{name}: the picture runs from 0 to {picture_s:.2f} s, and --max-shift lets the dub "
                f"reach only {config.max_shift:g} s beyond either end"
            )
        if not reach_lo[row] - slack <= col <= 2 * pad_cols + reach_hi[row] + slack:
            raise ParameterError(
                f"{name} is out of reach: the dub's start may move at most --max-shift "
                f"({config.max_shift:g} s) and the dub before the point may only stretch within "
                f"--min-stretch and --max-stretch; raise --max-shift or check the point"
            )
        if n_dub > LONG_LINE_S * PATH_RATE and not -pad_cols - slack <= col - row <= 3 * pad_cols + slack:
            raise ParameterError(
                f"{name} moves that moment of this long line by more than twice --max-shift "
                f"({config.max_shift:g} s); raise --max-shift or check the point"
            )
    for a, b in zip(points, points[1:], strict=False):
        (r0, c0), (r1, c1) = _sync_cell(a, config), _sync_cell(b, config)
        if not reach_lo[r1] - reach_lo[r0] - slack <= c1 - c0 <= reach_hi[r1] - reach_hi[r0] + slack:
            rate = (b[1] - a[1]) / (b[0] - a[0])
            raise ParameterError(
                f"--sync-point {a[0]:g}={a[1]:g} and {b[0]:g}={b[1]:g} contradict the stretch limits: the "
                f"dub between them would have to play at {rate:.2f}x (picture time per dub time), beyond "
                f"--min-stretch {config.min_stretch:.2f} .. --max-stretch {config.max_stretch:.2f} even with its "
                f"pauses squeezed or stretched (and protected spans allow no change at all)"
            )


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


def _longest_gap_s(track: LipTrack) -> float:
    """The longest run of frames without a face, in s: measured on the track's own frame times
    (pictures above 30 fps are tracked at fewer frames than the file holds)."""
    if track.n_frames < 2 or track.present.all():
        return 0.0
    step = float(np.median(np.diff(track.times)))
    edges = np.flatnonzero(np.diff(np.r_[1, track.present.astype(np.int8), 1]))  # starts and ends of gaps
    starts, ends = edges[::2], edges[1::2]
    return float((ends - starts).max() * step)


def guide_slip(picture: PictureAnalysis, model, config: AlignConfig) -> float | None:
    """How far the picture's own audio is off its own lips (s, > 0: late), when clearly so.

    Production sound that has slipped against the picture would pull the dub off the lips with
    full confidence. Measured like ``dubalign check`` over the whole picture; None when the audio
    is within GUIDE_SLIP_S of the lips or the measurement is not sure (noise, no speech).
    """
    from .check import check_sync

    try:
        search = min(max(config.max_shift, 2 * GUIDE_SLIP_S), GUIDE_SLIP_MAX_SEARCH_S)
        measured = check_sync(picture, model=model, max_offset_s=search)
    except DubalignError:  # too little speech with a face to measure: nothing to say
        return None
    if measured.offset_s is None or measured.confidence < GUIDE_SLIP_CONFIDENCE:
        return None
    return measured.offset_s if abs(measured.offset_s) > GUIDE_SLIP_S else None


def assess(
    picture: PictureAnalysis, features: SyncFeatures, stretch: np.ndarray, overall: float,
    config: AlignConfig, use_guide: bool, slip: float | None = None,
    agreement: float | None = None, trust: GuideTrust | None = None,
) -> list[str]:
    """Reasons not to trust the result, in words an editor can act on.

    stretch : local stretch of the time map inside speech (see speech_stretch)
    agreement, trust : what the picture's audio showed once the dub was placed (see place_dub)
    """
    warnings = []
    present = picture.track.present
    lost = 1.0 - present.mean()
    if lost > FACE_LOST_WARN:
        follow = "the picture's audio" if use_guide and features.guide_weight > 0 else "the speech around them"
        warnings.append(f"face lost in {100 * lost:.0f}% of frames: those spans follow {follow} only")
    longest = _longest_gap_s(picture.track)
    if longest >= FACE_GAP_WARN_S:
        warnings.append(f"no face for {longest:.1f} s in a row")
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
    if config.guide != "off" and picture.audio is None:
        warnings.append("the picture has no audio track: aligned on the lips only")
    elif slip is not None:
        warnings.append(
            f"the picture's own audio is {abs(slip) * 1000:.0f} ms {'late' if slip > 0 else 'early'} against its "
            "lips: not used as a guide, aligned on the lips only (--guide always uses it anyway)"
        )
    elif use_guide and features.guide_weight < 1.0:
        why = []  # what held the guide's weight down (see place_dub)
        if agreement is None or guide_weight(agreement) < 1.0:
            why.append("hardly follows the dub")
        if trust is not None and trust.factor < 1.0:
            why.append(
                f"is noisy (speech {trust.range_db:.0f} dB above its noise floor) and not the dub's own performance"
            )
        warnings.append(
            f"the picture's audio {', and '.join(why)} (guide weight {features.guide_weight:.2f}): "
            "aligned mostly on the lips"
        )
    return warnings

