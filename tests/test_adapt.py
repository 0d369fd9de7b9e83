"""Run-time adaptation (dubalign.adapt) on the bundled GRID clip with the shipped model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import grid_analysis

from dubalign.adapt import _heldout_frames, _pairs, adapt_from_alignment, adapt_model
from dubalign.audio import log_mel
from dubalign.errors import ParameterError
from dubalign.model import VIDEO_RATE
from dubalign.pipeline import load_lip_model
from dubalign.timemap import TimeMap
from dubalign.units import ANALYSIS_SR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def picture():
    return grid_analysis()


@pytest.fixture(scope="module")
def model():
    return load_lip_model()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small steps on a shared machine: a second thread multiplied their CPU time by five."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.encoder.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_adaptation_leaves_the_input_model_alone_and_is_deterministic(picture, model):
    before = state(model)
    # GRID's 1.7 s of speech is too little to adapt on once a block is held out: every frame counts
    adapted, report = adapt_model(model, picture.track, picture.audio, steps=8, speech_only=False, guard=False)
    assert report.ran and report.kept and report.steps == 8 and report.train_frames > 0
    assert adapted is not model
    assert same_weights(before, state(model))
    assert not same_weights(before, state(adapted))
    again, report2 = adapt_model(model, picture.track, picture.audio, steps=8, speech_only=False, guard=False)
    assert same_weights(state(adapted), state(again))
    assert report2.heldout_loss_after == report.heldout_loss_after
    json.dumps(report.to_json())


def test_guard_rejects_an_adaptation_that_breaks_the_model(picture, model):
    before = state(model)
    out, report = adapt_model(model, picture.track, picture.audio, steps=5, lr=0.1, speech_only=False)
    assert report.ran and not report.kept
    assert report.heldout_loss_after > report.heldout_loss_before
    assert out is model and same_weights(before, state(model))


def test_guard_rejects_learning_from_out_of_sync_sound(picture, model):
    """Sound 0.3 s late except on the held-out blocks, where it stays in sync: what the model
    learns from the late pairs must not pass the in-sync held-out test."""
    y = picture.audio
    mel = log_mel(y)
    pairs = _pairs(model, picture.track, mel, np.ones(len(mel), bool))
    held = np.repeat(_heldout_frames(pairs, 0.2), ANALYSIS_SR // VIDEO_RATE)
    assert held.any()
    lag = int(0.3 * ANALYSIS_SR)
    late = np.concatenate([np.zeros(lag, np.float32), y[:-lag]])
    in_sync = np.zeros(len(y), bool)
    in_sync[: min(len(y), len(held))] = held[: len(y)]
    mixed = np.where(in_sync, y, late)
    out, report = adapt_model(model, picture.track, mixed, steps=25, lr=1e-3, speech_only=False)
    assert report.ran and not report.kept and out is model
    # unguarded, the same steps do learn the wrong sync
    _, unguarded = adapt_model(model, picture.track, mixed, steps=25, lr=1e-3, speech_only=False, guard=False)
    assert unguarded.kept and unguarded.heldout_acc_after < unguarded.heldout_acc_before


def test_nothing_to_adapt_on(picture, model):
    out, report = adapt_model(model, picture.track, picture.audio, steps=0)
    assert out is model and not report.ran and not report.kept
    silent = np.zeros_like(picture.audio)
    out, report = adapt_model(model, picture.track, silent, steps=5)
    assert out is model and not report.ran and "speech" in report.reason


@pytest.mark.parametrize("kwargs", [{"layers": "audio"}, {"lr": 0.0}, {"holdout": 1.0}, {"segments": 0}])
def test_bad_options_are_refused(picture, model, kwargs):
    with pytest.raises(ParameterError):
        adapt_model(model, picture.track, picture.audio, **kwargs)


def test_self_training_uses_only_confident_seconds(picture, model):
    """The picture's own sound as the 'dub' with an identity map: with every second used, the same
    pairs as adapting on the sound itself; with the most confident share, only those seconds."""
    y = picture.audio
    n_sec = int(np.ceil(len(y) / ANALYSIS_SR))
    identity = TimeMap.identity(picture.duration)
    _, every = adapt_from_alignment(model, picture.track, y, identity, np.ones(n_sec), duration=picture.duration,
                                    confident_share=1.0, steps=4, guard=False)
    _, direct = adapt_model(model, picture.track, y, steps=4, guard=False)
    assert every.train_frames > 0 and abs(direct.train_frames - every.train_frames) <= 2
    # GRID: speech from about 1 s to 2.7 s; only the second second is sure
    conf = np.full(n_sec, 0.1)
    conf[1] = 0.3
    _, part = adapt_from_alignment(model, picture.track, y, identity, conf, duration=picture.duration,
                                   confident_share=0.3, steps=4, guard=False)
    assert 0 < part.train_frames < every.train_frames and part.train_frames <= VIDEO_RATE
    _, none = adapt_from_alignment(model, picture.track, y, identity, np.full(n_sec, np.nan),
                                   duration=picture.duration, steps=4)
    assert not none.ran and none.train_frames == 0
