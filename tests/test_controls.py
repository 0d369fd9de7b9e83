"""The editor's controls on a bundled GRID clip: sync points, protected spans, tightness.

Each has a known answer: a sync point is held (within a few ms, far inside one 25 fps frame); a
protected span plays at exactly its own speed; tightness 0 is the best constant shift, found by
brute force over the same fused cost band; tightness 0.5 is the halfway blend of 1 and 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import DUB_SR, grid_analysis, grid_words, shifted_dub, write_dub

from dubalign import media
from dubalign import pipeline as pipeline_module
from dubalign.errors import AlignmentError, ParameterError
from dubalign.pipeline import (
    LIPS_ONLY_AIM_S,
    AlignConfig,
    align_dub,
    dub_features,
    load_lip_model,
    place_dub,
    speech_stretch,
)
from dubalign.sync import sync_features
from dubalign.timemap import TimeMap
from dubalign.units import PATH_RATE

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "grid_bbaf2n"
OFFSET = 0.3  # s: the shifted dub plays its speech this much later than the picture
FRAME_25 = 0.040  # s: one frame at 25 fps, the bound for a sync point
HELD = 0.005  # s: how closely the map holds a sync point (it is exact up to float rounding)


@pytest.fixture(scope="module")
def analysis():
    return grid_analysis()


@pytest.fixture(scope="module")
def dubs(tmp_path_factory) -> dict[str, media.DubAudio]:
    path = write_dub(tmp_path_factory.mktemp("controls") / "shifted.wav", shifted_dub(OFFSET))
    return {"shifted": media.read_dub(path), "warped": media.read_dub(EXAMPLE / "dub.wav")}


@pytest.fixture(scope="module")
def inputs(analysis, dubs):
    """(dub features, sync features, picture audio) per (dub name, guide), computed once."""
    model = load_lip_model()
    cache = {}

    def get(name: str, guide: str):
        if (name, guide) not in cache:
            feats = dub_features(dubs[name])
            y16 = analysis.audio if guide == "auto" else None
            sync = sync_features(
                analysis.track, feats.mel, model, dub_speech=feats.speech, dub_pause=feats.pauses,
                duration=analysis.duration, pad=AlignConfig().max_shift, picture_y16=y16,
            )
            cache[name, guide] = (feats, sync, y16)
        return cache[name, guide]

    return get


def place(inputs, name: str, guide: str, **controls):
    feats, sync, y16 = inputs(name, guide)
    return place_dub(sync, feats, y16, AlignConfig(guide=guide, **controls))


def truth() -> TimeMap:
    return TimeMap.from_json(json.loads((EXAMPLE / "truth.json").read_text())["time_map"])


def word_mid(k: int) -> float:
    w = grid_words()[k]
    return (w.start + w.end) / 2


# ---- sync points ---------------------------------------------------------------------------


@pytest.mark.parametrize("guide", ["auto", "off"])
def test_a_sync_point_moved_deliberately_is_held(inputs, guide):
    # the middle of "at" plays at dub time mid + OFFSET; the lips put it at mid. The editor asks
    # for 0.2 s later than that.
    mid = word_mid(2)
    dub_s, pic_s = mid + OFFSET, mid + 0.2
    plain = place(inputs, "shifted", guide)
    assert abs(float(plain.timemap.to_picture(dub_s)) - mid) <= FRAME_25 + plain.aim_s  # a real move
    pinned = place(inputs, "shifted", guide, sync_points=((dub_s, pic_s),))
    tm = pinned.timemap
    assert abs(float(tm.to_picture(dub_s)) - pic_s) <= HELD
    assert pinned.aim_s == 0.0  # the lips-only aim would move the editor's point
    # the path itself passes the point's row within a column (10 ms)
    row = int(round(dub_s * PATH_RATE))
    cols = pinned.path.pic_frames[pinned.path.dub_frames == row]
    assert np.abs(cols / PATH_RATE - AlignConfig().max_shift - pic_s).max() <= 1.5 / PATH_RATE
    # the rest stays monotone and inside the limits (speech) and the pause limits (anywhere)
    feats = inputs("shifted", guide)[0]
    assert (np.diff(tm.pic_t) > 0).all()
    speech = speech_stretch(tm, feats.pauses | feats.tails)
    assert speech.min() >= AlignConfig().min_stretch - 1e-9 and speech.max() <= AlignConfig().max_stretch + 1e-9


def test_two_sync_points_and_tightness_0_slide_through_one(inputs):
    # one point: tightness 0 is then the constant shift through it, whatever the lips say
    mid = word_mid(3)
    point = (mid + OFFSET, mid + 0.1)
    slid = place(inputs, "shifted", "auto", tightness=0.0, sync_points=(point,))
    np.testing.assert_allclose(slid.timemap.pic_t - slid.timemap.dub_t, point[1] - point[0], atol=1e-9)
    # two points 0.05 s further apart on the picture than on the dub: the take between them gives
    # way (its pauses first, then its words); outside them it is slid, not stretched
    first, last = (word_mid(1) + OFFSET, word_mid(1) + 0.02), (word_mid(5) + OFFSET, word_mid(5) + 0.07)
    both = place(inputs, "shifted", "auto", tightness=0.0, sync_points=(first, last))
    tm = both.timemap
    np.testing.assert_allclose(tm.to_picture([first[0], last[0]]), [first[1], last[1]], atol=HELD)
    stretch = tm.stretch()
    outside = (tm.dub_t[1:] <= first[0]) | (tm.dub_t[:-1] >= last[0])
    np.testing.assert_allclose(stretch[outside], 1.0, atol=1e-9)
    assert stretch[~outside].max() > 1.0 and stretch.max() <= AlignConfig().max_stretch + 1e-9


def test_sync_points_out_of_reach_are_refused(inputs):
    mid = word_mid(2) + OFFSET
    with pytest.raises(ParameterError, match="--max-shift"):
        place(inputs, "shifted", "auto", sync_points=((mid, 9.0),))  # past the picture and the shift
    with pytest.raises(ParameterError, match="out of reach.*raise --max-shift"):
        place(inputs, "shifted", "auto", sync_points=((0.1, 1.8),))  # the start would move 1.7 s
    with pytest.raises(ParameterError, match=r"1\.2=1 and 1\.5=2 contradict the stretch limits.*3\.33x"):
        place(inputs, "shifted", "auto", sync_points=((1.5, 2.0), (1.2, 1.0)))  # any order
    with pytest.raises(ParameterError, match="the dub is only"):
        place(inputs, "shifted", "auto", sync_points=((30.0, 2.0),))


def test_sync_points_a_protected_span_cannot_meet_fail(inputs):
    # both points inside one protected span, 30 ms further apart on the picture than on the dub:
    # the span may not stretch, so the alignment fails and says which point
    with pytest.raises(AlignmentError, match="sync-point"):
        place(inputs, "shifted", "auto", protect=((1.4, 2.2),), sync_points=((1.5, 1.2), (2.0, 1.73)))


@pytest.mark.parametrize(
    ("points", "match"),
    [
        (((1.0, 2.0), (1.5, 1.8)), "contradict each other"),  # later dub, earlier picture
        (((1.0, 2.0), (1.02, 2.5)), "at least 30 ms apart"),
        (((-0.5, 1.0),), "dub times start at 0"),
        (((1.0, float("nan")),), "not finite"),
        (((1.0, 2.0, 3.0),), "DUB_S=PIC_S pairs"),
        ((1.0, 2.0), "DUB_S=PIC_S pairs"),
    ],
)
def test_bad_sync_points_are_refused_by_check(points, match):
    with pytest.raises(ParameterError, match=match):
        AlignConfig(sync_points=points).check()


# ---- protected spans -----------------------------------------------------------------------


def test_a_protected_span_plays_at_its_own_speed(inputs):
    # "f two" of the warped example: the warp stretches the dub there, so the free map does too
    w = grid_words()
    span = tuple(float(t) for t in truth().to_dub([w[3].start, w[4].end]))
    free = place(inputs, "warped", "auto")
    kept = place(inputs, "warped", "auto", protect=(span,))

    def inside(tm: TimeMap) -> np.ndarray:
        return (tm.dub_t[:-1] >= span[0]) & (tm.dub_t[1:] <= span[1])

    assert inside(kept.timemap).sum() >= 40
    np.testing.assert_allclose(kept.timemap.stretch()[inside(kept.timemap)], 1.0, rtol=0, atol=1e-9)
    assert np.abs(free.timemap.stretch()[inside(free.timemap)] - 1.0).max() > 0.1  # it would stretch
    # moved, not lost: the span's middle still lands within a 25 fps frame of the lips
    middle = (span[0] + span[1]) / 2
    assert abs(float(kept.timemap.to_picture(middle) - truth().to_picture(middle))) <= FRAME_25


def test_protected_spans_are_checked(analysis, dubs):
    with pytest.raises(ParameterError, match="--protect 1.5-1"):
        AlignConfig(protect=((1.5, 1.0),)).check()
    with pytest.raises(ParameterError, match="START-END"):
        AlignConfig(protect=(1.5,)).check()
    with pytest.raises(ParameterError, match=r"--protect 3-99: the dub is only 3\.\d+ s long"):
        align_dub(analysis, dubs["shifted"], AlignConfig(protect=((3.0, 99.0),)))


# ---- tightness -----------------------------------------------------------------------------


@pytest.mark.parametrize("guide", ["auto", "off"])
def test_tightness_0_is_the_best_constant_shift(inputs, guide, monkeypatch):
    # record the fine fused cost band the solver saw, then brute-force every constant shift
    seen = []
    real = pipeline_module.solve_coarse_to_fine

    def recording(cost_fn, *args, **kwargs):
        def cost(col_start, width, factor):
            costs = cost_fn(col_start, width, factor)
            if factor == 1:
                seen.append((col_start.copy(), width, costs.copy()))
            return costs

        return real(cost, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "solve_coarse_to_fine", recording)
    placed = place(inputs, "shifted", guide, tightness=0.0)
    col_start, width, costs = seen[-1]  # the last solve made the map
    n = len(col_start)
    pad = int(round(AlignConfig().max_shift * PATH_RATE))
    totals = np.full(2 * pad + 1, np.inf)
    for s in range(2 * pad + 1):  # the path may start in columns 0 .. 2 * pad
        t = s + np.arange(n) - col_start
        if ((t >= 0) & (t < width)).all():
            totals[s] = costs[np.arange(n), t].astype(np.float64).sum()
    best = int(np.argmin(totals))
    np.testing.assert_array_equal(placed.path.pic_frames - placed.path.dub_frames, best)
    assert placed.path.cost == pytest.approx(totals[best] / n, rel=1e-9)
    aim = LIPS_ONLY_AIM_S if guide == "off" else 0.0
    offset = best / PATH_RATE - AlignConfig().max_shift + aim
    np.testing.assert_allclose(placed.timemap.pic_t - placed.timemap.dub_t, offset, atol=1e-9)
    assert abs(offset - aim + OFFSET) <= FRAME_25  # and it is the dub's true offset


def test_tightness_0_renders_a_plain_copy(analysis, dubs):
    res = align_dub(analysis, dubs["shifted"], AlignConfig(tightness=0.0))
    assert res.renderer == "copy"
    shift = int(round(float(res.timemap.pic_t[0] - res.timemap.dub_t[0]) * DUB_SR))
    dub = dubs["shifted"].samples
    k = np.arange(max(shift, 0), min(len(res.audio), len(dub) + shift))
    np.testing.assert_array_equal(res.audio[k], dub[k - shift])


@pytest.mark.parametrize("guide", ["auto", "off"])
def test_intermediate_tightness_blends_and_stretches_less(inputs, guide):
    maps = {t: place(inputs, "warped", guide, tightness=t) for t in (1.0, 0.5, 0.0)}
    assert len({p.features.guide_weight for p in maps.values()}) == 1  # same costs for all three
    half, full, slid = (maps[t].timemap for t in (0.5, 1.0, 0.0))
    np.testing.assert_allclose(half.pic_t, (full.pic_t + slid.pic_t) / 2, atol=1e-9)
    dev_half, dev_full = np.abs(half.stretch() - 1.0), np.abs(full.stretch() - 1.0)
    assert (dev_half <= dev_full / 2 + 1e-9).all()
    assert dev_full.max() > 0.1 and dev_half.max() < dev_full.max()
    # the cells of the placed map are the path the confidence is measured on
    rows = maps[0.5].path.dub_frames
    np.testing.assert_array_equal(rows, np.arange(len(rows)))
    np.testing.assert_allclose(
        maps[0.5].path.pic_frames, np.round((half.pic_t - maps[0.5].aim_s + 1.5) * PATH_RATE), atol=0
    )


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_tightness_outside_0_1_is_refused(value):
    with pytest.raises(ParameterError, match="--tightness must be between 0"):
        AlignConfig(tightness=value).check()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"min_stretch": 1.2}, "--min-stretch"), ({"min_stretch": 0.01}, "--min-stretch"),
     ({"max_stretch": 0.9}, "--max-stretch"), ({"max_stretch": 20.0}, "--max-stretch")],
)
def test_stretch_limits_name_their_options(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        AlignConfig(**kwargs).check()
