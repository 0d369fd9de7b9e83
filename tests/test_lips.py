"""Lips on a bundled GRID clip: the face is found, crops are well formed, the mouth moves with speech."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import black_picture, grid_analysis, grid_words

from dubalign.errors import AlignmentError, MediaError
from dubalign.lips import CROP_H, CROP_W, LIP_POINTS, N_BLENDSHAPES, LipTrack, track_lips
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
