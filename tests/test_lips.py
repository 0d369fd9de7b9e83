"""Lips on a bundled GRID clip: the face is found, crops are well formed, the mouth moves with speech."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from helpers import black_picture, grid_analysis, grid_words

from dubalign.errors import AlignmentError, MediaError
from dubalign.lips import (
    CROP_H,
    CROP_W,
    LIP_POINTS,
    N_BLENDSHAPES,
    FaceCandidates,
    LipTrack,
    choose_speaker,
    count_faces,
    mouth_activity,
    track_lips,
)
from dubalign.media import iter_frames

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def track() -> LipTrack:
    return grid_analysis().track  # shared with the other modules: MediaPipe runs once per process


def test_face_found_in_every_frame(track):
    assert track.n_frames == 75
    assert track.present.mean() >= 0.95
    assert track.n_faces == 1 and track.face == 0
    assert 0.3 < track.face_x < 0.7  # GRID speakers sit in the middle of the frame


def test_track_arrays_are_well_formed(track):
    n = track.n_frames
    np.testing.assert_allclose(track.times, np.arange(n) / 25, atol=1e-9)
    assert track.crops.shape == (n, CROP_H, CROP_W) and track.crops.dtype == np.uint8
    assert track.lips.shape == (n, len(LIP_POINTS), 2) and track.lips.dtype == np.float32
    assert track.blendshapes.shape == (n, N_BLENDSHAPES)
    assert ((track.blendshapes >= 0) & (track.blendshapes <= 1)).all()
    # landmarks are centred on the mouth and in eye distances: a mouth is well under one eye distance
    assert np.abs(track.lips[track.present]).max() < 1.0
    assert np.abs(track.lips[track.present].mean(axis=1)).max() < 0.05
    assert track.crops[track.present].std() > 10  # a real image, not a flat fill


def test_mouth_opens_more_during_speech(track):
    opening = track.mouth_opening()
    assert opening.shape == (track.n_frames,)
    assert opening.std() > 0
    words = grid_words()
    speech = (track.times >= words[0].start) & (track.times < words[-1].end)
    lead = track.times < words[0].start - 0.1  # GRID starts with about a second of silence
    assert lead.sum() >= 15
    assert opening[speech].mean() > 1.5 * opening[lead].mean()
    assert opening[speech].max() > opening[lead].max()


def test_black_picture_has_no_face(tmp_path):
    path = black_picture(tmp_path / "black.mkv", seconds=0.4)
    with pytest.raises(AlignmentError, match="no face"):
        track_lips(iter_frames(path))


def test_no_frames_is_a_media_error():
    with pytest.raises(MediaError, match="no decodable video frames"):
        track_lips(iter([]))


def test_progress_is_reported(tmp_path):
    done = []
    path = black_picture(tmp_path / "black.mkv", seconds=0.2)
    with pytest.raises(AlignmentError):
        track_lips(iter_frames(path), on_frame=done.append)
    assert done == [1, 2, 3, 4, 5]


def _run(times, faces):
    """FaceCandidates from (first, end, present mask) triples, with the mask as lip offsets."""
    out = []
    for first, end, present in faces:
        n = len(times)
        lips = np.zeros((n, len(LIP_POINTS), 2), np.float32)
        lips[:, LIP_POINTS.index(14), 1] = np.where(present, np.linspace(0, 0.2, n), 0)  # mouth moves
        out.append({"present": np.asarray(present), "lips": lips,
                    "blend": np.zeros((n, N_BLENDSHAPES), np.float32),
                    "crops": np.zeros((n, CROP_H, CROP_W), np.uint8), "first": first, "end": end})
    return FaceCandidates(times=np.asarray(times, float), faces=out)


def test_choose_speaker_joins_runs_by_position():
    # run 1: one face on the left; run 2: a new face on the right appears, then the left one
    a = _run([0.0, 0.04], [((0.3, 0.5), (0.3, 0.5), [True, True])])
    b = _run([0.08, 0.12], [((0.8, 0.5), (0.8, 0.5), [True, False]), ((0.31, 0.5), (0.3, 0.5), [True, True])])
    track = choose_speaker([a, b])
    np.testing.assert_allclose(track.times, [0.0, 0.04, 0.08, 0.12])
    # the left face is present in all four frames; the right one (1 frame of 4) is too rare to compete
    assert track.present.tolist() == [True, True, True, True]
    assert track.face_x == pytest.approx(0.3)


def test_choose_speaker_without_faces_raises():
    with pytest.raises(AlignmentError, match="no face"):
        choose_speaker([FaceCandidates(times=np.arange(3) / 25, faces=[])])
    with pytest.raises(MediaError):
        choose_speaker([FaceCandidates(times=np.zeros(0), faces=[])])


def test_parallel_runs_match_a_single_run():
    """Tracking two halves in two threads gives the same lips as one pass (picture from the file)."""
    from helpers import grid_clip

    from dubalign.lips import track_picture
    from dubalign.media import probe_picture

    info = probe_picture(grid_clip())
    track = track_picture(grid_clip(), duration=info.duration, fps=info.fps, workers=1).track
    split = track_picture(grid_clip(), duration=info.duration, fps=info.fps, workers=2)
    assert split.workers == 2
    np.testing.assert_allclose(split.track.times, track.times, atol=1e-9)
    both = split.track.present & track.present
    assert both.mean() > 0.9
    # MediaPipe re-detects the face at the start of the second half, so allow small differences
    np.testing.assert_allclose(split.track.lips[both], track.lips[both], atol=0.05)


def test_count_faces(tmp_path):
    from helpers import grid_clip

    frames = [rgb for _, rgb in iter_frames(grid_clip(), start=1.0, end=1.2)]
    assert count_faces(frames) == 1
    assert count_faces([np.zeros_like(frames[0])]) == 0


def test_mouth_activity_is_high_in_words_and_low_in_the_leading_silence(track):
    act = mouth_activity(track)
    assert act.shape == (track.n_frames,) and act.min() >= 0 and act.max() <= 1
    words = grid_words()
    speech = (track.times >= words[0].start) & (track.times < words[-1].end)
    lead = track.times < words[0].start - 0.4  # the lips start moving a little before the sound
    assert act[speech].mean() > 0.4
    assert act[lead].mean() < 0.15
    blank = dataclasses.replace(track, present=np.zeros(track.n_frames, bool))
    assert (mouth_activity(blank) == 0).all()


def test_fast_pictures_are_tracked_at_the_lip_model_rate(tmp_path, monkeypatch):
    """A 50 fps picture (each frame of a 25 fps clip shown twice) is tracked on one frame per
    1 / TRACK_RATE s, and those frames' lips match tracking every frame."""
    import av
    from helpers import grid_clip

    from dubalign import lips
    from dubalign.model import VIDEO_RATE

    assert lips.TRACK_RATE == VIDEO_RATE
    path = tmp_path / "fast.mp4"
    with av.open(str(grid_clip())) as inp, av.open(str(path), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=50)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        i = 0
        for frame in inp.decode(vin):
            img = frame.to_ndarray(format="rgb24")
            for _ in range(2):
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts = i
                i += 1
                for p in vout.encode(f):
                    out.mux(p)
        for p in vout.encode():
            out.mux(p)
    capped = lips.track_picture(path, duration=3.0, fps=50.0, workers=1)
    assert capped.track.n_frames == 75
    np.testing.assert_allclose(np.diff(capped.track.times), 1 / lips.TRACK_RATE, atol=1e-3)
    monkeypatch.setattr(lips, "TRACK_ALL_MAX_FPS", np.inf)
    every = lips.track_picture(path, duration=3.0, fps=50.0, workers=1).track
    assert every.n_frames == 150
    same = np.searchsorted(every.times, capped.track.times)
    np.testing.assert_allclose(every.times[same], capped.track.times, atol=1e-6)
    both = every.present[same] & capped.track.present
    assert both.mean() > 0.9
    np.testing.assert_allclose(capped.track.lips[both], every.lips[same][both], atol=0.05)


def test_mediapipe_is_imported_light_and_still_whole_for_the_caller():
    # In a fresh process: dubalign loads only the Face Landmarker's modules, leaves no stand-in
    # package behind, and the caller's own `import mediapipe` afterwards gets the whole package.
    code = (
        "import sys\n"
        "from dubalign import lips\n"
        "api = lips._mediapipe()\n"
        "assert 'matplotlib' not in sys.modules\n"
        "assert not [n for n in sys.modules if n.startswith('mediapipe')]\n"
        "lips.make_landmarker(1).close()\n"
        "assert 'matplotlib' not in sys.modules\n"
        "import mediapipe as mp\n"
        "from mediapipe.tasks.python import vision\n"
        "assert vision.FaceLandmarker and mp.Image\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
