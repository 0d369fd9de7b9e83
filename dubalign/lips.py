"""Lips: track the face in every picture frame and extract what the mouth does.

MediaPipe Face Landmarker (video mode) gives 478 landmarks and 52 blendshapes per face. From them,
per frame: the 40 lip landmarks normalised for head position, roll and scale; the blendshapes; and a
grey mouth crop cut along the eye line at a size set by the eye distance (so it does not change
with how wide the mouth is open). Frames without a face are marked and carry zeros.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from . import media
from .errors import AlignmentError, MediaError

# MediaPipe face-mesh indices: outer lip contour (20) then inner lip contour (20).
LIP_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
LIP_POINTS = LIP_OUTER + LIP_INNER
INNER_TOP, INNER_BOTTOM = 13, 14  # mid points of the inner lips: their gap is the mouth opening
EYE_RIGHT_OUTER, EYE_LEFT_OUTER = 33, 263  # eye corners: the face's own scale and roll
N_BLENDSHAPES = 52

CROP_H, CROP_W = 48, 96  # px of the normalised mouth crop
CROP_WIDTH_EYES = 0.9  # crop width as a multiple of the outer eye-corner distance
CROP_DROP_EYES = 0.05  # crop centre below the lip centre, in eye distances (include the chin a bit)
ACTIVITY_SMOOTH = 5  # frames over which mouth activity is averaged
MAX_FACES = 2  # faces tracked at once; the speaking one is kept
MATCH_RADIUS = 0.15  # a detection continues a track when its mouth moved less than this share of the frame
FACE_PROBES = 5  # frames looked at first to count the faces on screen (one face: faster tracking)
FACE_PROBE_MIN_S = 15.0  # s: shorter pictures skip that probe and track up to MAX_FACES
PARALLEL_LIPS_MIN_S = 2.0  # s: pictures this long have their lips tracked by several threads (a span each)
# Hz: the lip model reads the lips at this rate (model.VIDEO_RATE, kept here so that tracking does not
# import the model). Pictures faster than TRACK_ALL_MAX_FPS are tracked on one frame per 1 / TRACK_RATE s
# only: the features are resampled to TRACK_RATE anyway, and landmarks cost ~13 ms a frame.
TRACK_RATE = 25.0
TRACK_ALL_MAX_FPS = 1.2 * TRACK_RATE
MAX_LIP_WORKERS = 4  # at most this many lip-tracking threads
PROGRESS_POLL_S = 0.25  # s between progress updates while workers track lips


@dataclass(frozen=True)
class LipTrack:
    """The mouth of the chosen face, frame by frame.

    times : [shape=(n_frames,)] picture time of each frame (s), from the frames' own timestamps
    present : [shape=(n_frames,)] bool, face found in the frame
    lips : [shape=(n_frames, 40, 2)] float32 lip landmarks, centred on the mouth, de-rotated,
        divided by the eye-corner distance
    blendshapes : [shape=(n_frames, 52)] float32 MediaPipe blendshape scores
    crops : [shape=(n_frames, CROP_H, CROP_W)] uint8 grey mouth crops
    face : index of the chosen face among the tracked ones; n_faces how many were tracked
    face_x : horizontal position of the chosen face (0 left .. 1 right), for the report
    """

    times: np.ndarray
    present: np.ndarray
    lips: np.ndarray
    blendshapes: np.ndarray
    crops: np.ndarray
    face: int
    n_faces: int
    face_x: float

    @property
    def n_frames(self) -> int:
        return len(self.times)

    def mouth_opening(self) -> np.ndarray:
        """Inner-lip gap per frame in eye distances [shape=(n_frames,)]."""
        top = LIP_POINTS.index(INNER_TOP)
        bottom = LIP_POINTS.index(INNER_BOTTOM)
        return np.linalg.norm(self.lips[:, bottom] - self.lips[:, top], axis=-1)


def mouth_activity(track: LipTrack) -> np.ndarray:
    """How much the mouth is speaking in each frame, in [0, 1] [shape=(n_frames,)].

    Motion and opening away from the mouth's rest shape, smoothed over ACTIVITY_SMOOTH frames and
    scaled between the clip's quiet (10th percentile) and busy (90th) frames. Frames without a
    face get 0.
    """
    if not track.present.any():
        return np.zeros(track.n_frames, np.float32)
    opening = track.mouth_opening()
    rest = np.median(opening[track.present])
    raw = np.abs(np.gradient(opening)) + 0.5 * np.abs(opening - rest) if track.n_frames > 1 else opening * 0
    raw = np.where(track.present, raw, 0.0)
    smooth = np.convolve(raw, np.ones(ACTIVITY_SMOOTH) / ACTIVITY_SMOOTH, mode="same")
    lo, hi = np.percentile(smooth[track.present], [10, 90])
    return np.where(track.present, np.clip((smooth - lo) / (hi - lo + 1e-9), 0.0, 1.0), 0.0).astype(np.float32)


def landmarker_model_path() -> str:
    """Path of the shipped MediaPipe Face Landmarker model."""
    ref = importlib.resources.files("dubalign.models") / "face_landmarker.task"
    if not ref.is_file():
        raise MediaError("the face landmarker model is missing from the installation; reinstall dubalign")
    return str(ref)


@dataclass(frozen=True)
class _MediaPipeAPI:
    """The pieces of MediaPipe that dubalign calls (see ``_mediapipe``)."""

    face_landmarker: types.ModuleType  # FaceLandmarker, FaceLandmarkerOptions
    BaseOptions: type
    Image: type
    ImageFormat: type
    RunningMode: type


_MEDIAPIPE_LOCK = threading.Lock()
_MEDIAPIPE: _MediaPipeAPI | None = None
# The parent packages whose __init__ imports every MediaPipe task (text, audio, the drawing utils
# and with them matplotlib's pyplot): 1-2 s of a short line's start-up.
_MEDIAPIPE_PARENTS = ("mediapipe", "mediapipe.tasks", "mediapipe.tasks.python",
                      "mediapipe.tasks.python.vision")


def _mediapipe() -> _MediaPipeAPI:
    """MediaPipe's Face Landmarker API, imported once per process (thread-safe).

    When the caller has not imported mediapipe, only the modules the Face Landmarker needs (and its
    C library) are loaded, under empty stand-ins for its parent packages (``_MEDIAPIPE_PARENTS``):
    0.2 s instead of 2 s on the development machine. Every ``mediapipe`` module is then dropped from
    ``sys.modules`` again (dubalign keeps its own references), so a later ``import mediapipe``
    loads the whole package as usual. Should another MediaPipe release move these modules, the
    plain import is used.
    """
    global _MEDIAPIPE
    with _MEDIAPIPE_LOCK:
        if _MEDIAPIPE is None:
            _MEDIAPIPE = None if "mediapipe" in sys.modules else _import_mediapipe_light()
            if _MEDIAPIPE is None:
                from mediapipe.tasks.python import vision
                from mediapipe.tasks.python.core import base_options
                from mediapipe.tasks.python.vision.core import image

                _MEDIAPIPE = _MediaPipeAPI(vision.face_landmarker, base_options.BaseOptions,
                                           image.Image, image.ImageFormat, vision.RunningMode)
        return _MEDIAPIPE


def _import_mediapipe_light() -> _MediaPipeAPI | None:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    for name in _MEDIAPIPE_PARENTS:
        stand_in = types.ModuleType(name)
        stand_in.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = stand_in
    try:
        face_landmarker = importlib.import_module("mediapipe.tasks.python.vision.face_landmarker")
        base_options = importlib.import_module("mediapipe.tasks.python.core.base_options")
        image = importlib.import_module("mediapipe.tasks.python.vision.core.image")
        running_mode = importlib.import_module(
            "mediapipe.tasks.python.vision.core.vision_task_running_mode")
        # The C library is found through importlib.resources, which would import the package:
        # load it now, while the stand-ins are there (MediaPipe keeps it for every later call).
        importlib.import_module("mediapipe.tasks.python.core.mediapipe_c_bindings").load_raw_library()
        return _MediaPipeAPI(face_landmarker, base_options.BaseOptions, image.Image,
                             image.ImageFormat, running_mode.VisionTaskRunningMode)
    except (ImportError, AttributeError):
        return None
    finally:
        for name in [n for n in sys.modules if n == "mediapipe" or n.startswith("mediapipe.")]:
            del sys.modules[name]


def make_landmarker(max_faces: int = MAX_FACES, *, video: bool = True):
    """A MediaPipe FaceLandmarker, in video mode (it tracks between frames) or for single images."""
    mp = _mediapipe()
    options = mp.face_landmarker.FaceLandmarkerOptions(
        base_options=mp.BaseOptions(model_asset_path=landmarker_model_path()),
        running_mode=mp.RunningMode.VIDEO if video else mp.RunningMode.IMAGE,
        num_faces=max_faces,
        output_face_blendshapes=True,
        min_face_detection_confidence=0.4,
        min_face_presence_confidence=0.4,
        min_tracking_confidence=0.4,
    )
    return mp.face_landmarker.FaceLandmarker.create_from_options(options)


def _image(rgb: np.ndarray):
    """An RGB frame as a MediaPipe image."""
    mp = _mediapipe()
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)


@dataclass
class _Track:
    """A face followed across frames while tracking (internal, mutable)."""

    first: tuple[float, float]
    x: float
    y: float
    last: int
    rows: dict


@dataclass(frozen=True)
class FaceCandidates:
    """Every face tracked over one run of frames, before the speaking one is chosen.

    faces : one dict per face with ``present``, ``lips``, ``blend``, ``crops`` (arrays over the run's
        frames) and ``first``/``end`` (x, y) mouth positions (shares of the frame) at its ends.
    """

    times: np.ndarray
    faces: list


def track_lips(
    frames: Iterable[tuple[float, np.ndarray]],
    *,
    audio_energy: Callable[[np.ndarray], np.ndarray] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> LipTrack:
    """Run the face landmarker over ``frames`` and keep the speaking face.

    frames : iterable of (time, rgb [shape=(h, w, 3)] uint8 contiguous), times increasing.
    audio_energy : optional function giving the picture audio's energy envelope at given times;
        when present the speaking face is the one whose mouth opening follows it best, otherwise
        the one whose mouth moves most.
    on_frame : called with the number of frames done so far (progress).
    """
    return choose_speaker([track_faces(frames, on_frame=on_frame)], audio_energy=audio_energy)


def count_faces(images: Iterable[np.ndarray]) -> int:
    """The most faces seen in any of ``images`` (rgb uint8), up to MAX_FACES."""
    most = 0
    with make_landmarker(MAX_FACES, video=False) as landmarker:
        for rgb in images:
            result = landmarker.detect(_image(rgb))
            most = max(most, len(result.face_landmarks))
    return most


def track_faces(
    frames: Iterable[tuple[float, np.ndarray]],
    *,
    max_faces: int = MAX_FACES,
    on_frame: Callable[[int], None] | None = None,
) -> FaceCandidates:
    """Track up to ``max_faces`` faces over ``frames`` (one run; runs can be tracked in parallel).

    With ``max_faces`` > 1 MediaPipe runs its face detector on every frame in which it tracks
    fewer faces (about 30 % slower), so pictures known to hold one face should pass 1.
    """
    times: list[float] = []
    tracks: list[_Track] = []
    last_ms = -1
    with make_landmarker(max_faces) as landmarker:
        for i, (t, rgb) in enumerate(frames):
            times.append(t)
            ms = max(int(round(t * 1000)), last_ms + 1)  # mediapipe needs strictly increasing stamps
            last_ms = ms
            result = landmarker.detect_for_video(_image(rgb), ms)
            h, w = rgb.shape[:2]
            grey = None
            for k, marks in enumerate(result.face_landmarks):
                pts = np.array([(p.x * w, p.y * h) for p in marks], dtype=np.float32)
                if grey is None:
                    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
                row = _frame_features(pts, grey, result.face_blendshapes[k] if result.face_blendshapes else None)
                cx, cy = pts[list(LIP_OUTER)].mean(axis=0) / np.array([w, h])
                track = _nearest_track(tracks, cx, cy, i)
                if track is None:
                    tracks.append(_Track((float(cx), float(cy)), float(cx), float(cy), i, {i: row}))
                else:
                    track.x, track.y, track.last = float(cx), float(cy), i
                    track.rows[i] = row
            if on_frame is not None:
                on_frame(i + 1)
    n = len(times)
    return FaceCandidates(times=np.asarray(times, dtype=np.float64), faces=[_assemble(tr, n) for tr in tracks])


def choose_speaker(
    parts: Sequence[FaceCandidates], *, audio_energy: Callable[[np.ndarray], np.ndarray] | None = None
) -> LipTrack:
    """Join runs tracked separately (in time order) and keep the face that speaks.

    A face continues from one run into the next when its mouth is where the previous run left one.
    """
    times = np.concatenate([p.times for p in parts]) if parts else np.zeros(0)
    if len(times) == 0:
        raise MediaError("the picture has no decodable video frames")
    merged: list[dict] = []
    done = 0
    for part in parts:
        n = len(part.times)
        taken: set[int] = set()
        for face in part.faces:
            match = _continuing_face(merged, face, taken)
            if match is None:
                merged.append(_empty_face(done, face))
                match = len(merged) - 1
            taken.add(match)
            m = merged[match]
            for key in ("present", "lips", "blend", "crops"):
                m[key].append(face[key])
            m["end"] = face["end"]
        for k, m in enumerate(merged):
            if k not in taken:
                _pad_face(m, n)
        done += n
    if not merged:
        raise AlignmentError("no face found in the picture: dubalign needs the speaker's face on screen")
    faces = []
    for m in merged:
        face = {key: np.concatenate(m[key]) for key in ("present", "lips", "blend", "crops")}
        face["x"], face["times"] = m["first"][0], times
        faces.append(face)
    n = len(times)
    candidates = [f for f in faces if f["present"].sum() >= max(3, 0.1 * n)] or [
        max(faces, key=lambda f: f["present"].sum())
    ]
    scores = [_speaking_score(c, audio_energy) for c in candidates]
    best = int(np.argmax(scores))
    chosen = candidates[best]
    return LipTrack(
        times=times, present=chosen["present"], lips=chosen["lips"], blendshapes=chosen["blend"],
        crops=chosen["crops"], face=best, n_faces=len(candidates), face_x=float(chosen["x"]),
    )


def _continuing_face(merged: list[dict], face: dict, taken: set[int]) -> int | None:
    best, best_d = None, 2 * MATCH_RADIUS
    for k, m in enumerate(merged):
        if k in taken:
            continue
        d = float(np.hypot(m["end"][0] - face["first"][0], m["end"][1] - face["first"][1]))
        if d < best_d:
            best, best_d = k, d
    return best


def _empty_face(n_before: int, face: dict) -> dict:
    m = {"present": [], "lips": [], "blend": [], "crops": [], "first": face["first"], "end": face["end"]}
    _pad_face(m, n_before)
    return m


def _pad_face(m: dict, n: int) -> None:
    """Append ``n`` frames without this face."""
    m["present"].append(np.zeros(n, bool))
    m["lips"].append(np.zeros((n, len(LIP_POINTS), 2), np.float32))
    m["blend"].append(np.zeros((n, N_BLENDSHAPES), np.float32))
    m["crops"].append(np.zeros((n, CROP_H, CROP_W), np.uint8))


def _nearest_track(tracks: list[_Track], x: float, y: float, frame: int) -> _Track | None:
    best, best_d = None, MATCH_RADIUS
    for tr in tracks:
        if tr.last == frame:  # already matched in this frame
            continue
        d = float(np.hypot(tr.x - x, tr.y - y))
        if d < best_d:
            best, best_d = tr, d
    return best


def _frame_features(pts: np.ndarray, grey: np.ndarray, blend) -> tuple:
    """Normalised lip landmarks, blendshapes and mouth crop of one face in one frame."""
    eye_r, eye_l = pts[EYE_RIGHT_OUTER], pts[EYE_LEFT_OUTER]
    eye_vec = eye_l - eye_r
    eye_dist = float(np.hypot(*eye_vec)) + 1e-6
    angle = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    lip = pts[list(LIP_POINTS)]
    centre = pts[list(LIP_OUTER)].mean(axis=0)
    c, s = eye_vec / eye_dist
    derotate = np.array([[c, s], [-s, c]], dtype=np.float32)
    lips = ((lip - centre) @ derotate.T) / eye_dist

    crop_centre = centre + np.array([-s, c]) * CROP_DROP_EYES * eye_dist
    scale = CROP_W / (CROP_WIDTH_EYES * eye_dist)
    m = cv2.getRotationMatrix2D((float(crop_centre[0]), float(crop_centre[1])), angle, scale)
    m[0, 2] += CROP_W / 2 - crop_centre[0]
    m[1, 2] += CROP_H / 2 - crop_centre[1]
    crop = cv2.warpAffine(grey, m, (CROP_W, CROP_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    scores = np.zeros(N_BLENDSHAPES, np.float32)
    if blend is not None:
        scores[: len(blend)] = [b.score for b in blend][:N_BLENDSHAPES]
    return lips.astype(np.float32), scores, crop


def _assemble(track: _Track, n: int) -> dict:
    present = np.zeros(n, bool)
    lips = np.zeros((n, len(LIP_POINTS), 2), np.float32)
    blend = np.zeros((n, N_BLENDSHAPES), np.float32)
    crops = np.zeros((n, CROP_H, CROP_W), np.uint8)
    for i, (lp, bs, cr) in track.rows.items():
        present[i], lips[i], blend[i], crops[i] = True, lp, bs, cr
    return {"present": present, "lips": lips, "blend": blend, "crops": crops, "first": track.first,
            "end": (track.x, track.y)}


def _speaking_score(c: dict, audio_energy: Callable[[np.ndarray], np.ndarray] | None) -> float:
    """How much this face looks like the one speaking: mouth motion, or its fit to the audio."""
    top, bottom = LIP_POINTS.index(INNER_TOP), LIP_POINTS.index(INNER_BOTTOM)
    opening = np.linalg.norm(c["lips"][:, bottom] - c["lips"][:, top], axis=-1)
    p = c["present"]
    if p.sum() < 3:
        return -np.inf
    motion = float(np.std(opening[p])) * p.mean()
    if audio_energy is None:
        return motion
    e = audio_energy(c["times"][p])
    if np.std(e) < 1e-6 or np.std(opening[p]) < 1e-6:
        return motion
    return float(np.corrcoef(opening[p], e)[0, 1]) * p.mean() + 1e-3 * motion


# ----------------------------------------------------------------------------- a whole picture


@dataclass(frozen=True)
class TrackedRun:
    """One run of frames tracked by one landmarker (one thread), with what it cost."""

    candidates: FaceCandidates
    decode_s: float  # s of decoding and scaling frames
    landmarks_s: float  # s inside the face landmarker


@dataclass(frozen=True)
class PictureTracking:
    """The speaking face's lips over a picture region, and what finding them cost."""

    track: LipTrack
    # s per step: face_probe, decode and landmarks (wall, summed over the threads), lips_wall,
    # lips_cpu (CPU of the whole process while tracking, every thread)
    timings: dict
    workers: int  # threads that tracked it


def track_picture(
    picture: str | Path,
    *,
    start: float = 0.0,
    end: float | None = None,
    duration: float,
    fps: float,
    workers: int = 0,
    audio_energy: Callable[[np.ndarray], np.ndarray] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PictureTracking:
    """Track the speaking face over [start, end) s of ``picture`` (``duration`` s long).

    Frame times in the result are relative to ``start``. ``workers`` 0 picks one thread per core
    (up to MAX_LIP_WORKERS) for pictures of PARALLEL_LIPS_MIN_S or more, else one; each thread
    tracks its own span of the picture with its own landmarker. ``on_progress(done, expected)``
    reports frames tracked (always from the calling thread).
    """
    stop = start + duration
    rate = TRACK_RATE if fps > TRACK_ALL_MAX_FPS else None  # None: every frame
    expected = int(round(duration * min(fps, rate or fps))) if fps else 0
    workers = workers or (min(os.cpu_count() or 1, MAX_LIP_WORKERS) if duration >= PARALLEL_LIPS_MIN_S else 1)
    timings: dict[str, float] = {}
    cpu0 = time.process_time()

    t0 = time.perf_counter()
    max_faces = MAX_FACES
    if duration >= FACE_PROBE_MIN_S:  # worth it on longer pictures only
        probe_times = np.linspace(start, stop, FACE_PROBES + 2)[1:-1]
        frames = (_frame_near(picture, t) for t in probe_times)
        max_faces = count_faces(f for f in frames if f is not None) or MAX_FACES
    timings["face_probe"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bounds = [start + k * duration / workers for k in range(workers)] + [end]
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    runs = _track_spans(picture, spans, max_faces, rate, on_progress, expected)
    timings["decode"] = sum(r.decode_s for r in runs)
    timings["landmarks"] = sum(r.landmarks_s for r in runs)
    timings["lips_wall"] = time.perf_counter() - t0
    timings["lips_cpu"] = time.process_time() - cpu0
    parts = [replace(r.candidates, times=r.candidates.times - start) for r in runs]
    return PictureTracking(
        track=choose_speaker(parts, audio_energy=audio_energy), timings=timings, workers=len(runs)
    )


def _frame_near(picture: str | Path, t: float) -> np.ndarray | None:
    """A frame of the picture near time ``t`` (s): the key frame at or before it, as rgb (None
    when there is none). For sampling what is on screen: nothing is decoded beyond the key frame.
    """
    frame = next(iter(media.iter_frames(picture, start=t, from_key_frame=True)), None)
    return None if frame is None else frame[1]


def _track_run(
    picture: str | Path, start: float, end: float | None, max_faces: int, rate: float | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> TrackedRun:
    """Track faces over [start, end) s of the picture (at most ``rate`` frames a second when
    given); frame times stay relative to the file."""
    decode_time = 0.0
    it = media.iter_frames(picture, start=start, end=end, max_rate=rate)

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
    candidates = track_faces(frames(), max_faces=max_faces, on_frame=on_frame)
    return TrackedRun(candidates, decode_time, time.perf_counter() - t0 - decode_time)


def _track_spans(
    picture: str | Path, spans: list[tuple[float, float | None]], max_faces: int, rate: float | None,
    on_progress: Callable[[int, int], None] | None, expected: int,
) -> list[TrackedRun]:
    """Track each span with its own landmarker, one thread each.

    Threads, not processes: MediaPipe, PyAV and OpenCV release the GIL while they work, and a
    thread costs nothing to start, where each process paid ~2 s of CPU to import mediapipe and
    the parent's modules again and had to pickle its mouth crops back.
    """
    if len(spans) == 1:
        progress = (lambda n: on_progress(n, expected)) if on_progress else None
        return [_track_run(picture, *spans[0], max_faces, rate, on_frame=progress)]
    done = [0] * len(spans)
    stop = threading.Event()  # set when one span failed or the caller was interrupted

    def run(k: int) -> TrackedRun:
        def count(n: int) -> None:
            if stop.is_set():
                raise _Stopped
            done[k] = n  # one writer per slot; the caller only sums them

        return _track_run(picture, *spans[k], max_faces, rate, on_frame=count)

    with ThreadPoolExecutor(len(spans), thread_name_prefix="dubalign-lips") as ex:
        futures = [ex.submit(run, k) for k in range(len(spans))]
        try:
            while not all(f.done() for f in futures):
                wait(futures, timeout=PROGRESS_POLL_S, return_when=FIRST_EXCEPTION)
                if on_progress is not None:
                    on_progress(sum(done), expected)
                if any(f.done() and f.exception() is not None for f in futures):
                    break
        finally:
            stop.set()  # the others stop at their next frame instead of tracking on for nothing
    for f in futures:
        if not isinstance(f.exception(), _Stopped | None):
            raise f.exception()
    return [f.result() for f in futures]


class _Stopped(Exception):
    """Raised inside a tracking thread to end it early (another span failed)."""
