"""The orchestrator end to end on a bundled GRID clip, against a dub with a known offset."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import (
    DUB_SR,
    grid_analysis,
    grid_audio,
    grid_clip,
    grid_words,
    lag_seconds,
    shifted_dub,
    to_rate,
    write_dub,
)

from dubalign import pipeline as align_module
from dubalign.errors import AlignmentError, MediaError, ParameterError
from dubalign.pipeline import AlignConfig, AlignmentResult, PictureAnalysis, align, align_dub, analyze_picture
from dubalign.sync import GuideTrust
from dubalign.timemap import TimeMap
from dubalign.units import ANALYSIS_SR

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent

OFFSET = 0.3  # s: the dub plays its speech this much later than the picture
TOLERANCE = 0.040  # s: the offset must be recovered within this (one GRID frame)
REPORT_KEYS = {
    "summary", "speech_span_s", "adaptation", "sample_rate", "subtype", "channels", "duration_s", "model",
    "renderer", "face", "guide_weight", "guide_evidence",
    "overall_confidence", "confidence_per_second", "stretch_range", "timings_s", "warnings", "time_map",
}


@pytest.fixture(scope="module")
def analysis() -> PictureAnalysis:
    return grid_analysis()


@pytest.fixture(scope="module")
def dub_path(tmp_path_factory):
    return write_dub(tmp_path_factory.mktemp("dub") / "dub.wav", shifted_dub(OFFSET))


@pytest.fixture(scope="module")
def guided(analysis, dub_path) -> AlignmentResult:
    return align_dub(analysis, dub_path, AlignConfig(guide="auto"))


@pytest.fixture(scope="module")
def lips_only(analysis, dub_path) -> AlignmentResult:
    return align_dub(analysis, dub_path, AlignConfig(guide="off"))


def speech_mids() -> np.ndarray:
    return np.array([(w.start + w.end) / 2 for w in grid_words()])


def test_analysis_of_grid_clip(analysis):
    assert analysis.duration == pytest.approx(3.0, abs=0.01)
    assert analysis.fps == 25.0
    assert (analysis.width, analysis.height) == (360, 288)
    assert analysis.start == 0.0
    assert analysis.audio is not None and analysis.audio.dtype == np.float32
    assert len(analysis.audio) == pytest.approx(3.0 * 16000, abs=400)
    assert {"picture_audio", "decode", "landmarks"} <= set(analysis.timings)


@pytest.mark.parametrize("result_name", ["guided", "lips_only"])
def test_output_is_on_the_picture_timeline_in_the_dub_format(result_name, analysis, request):
    res = request.getfixturevalue(result_name)
    assert res.sr == DUB_SR and res.subtype == "PCM_24"
    assert res.audio.shape == (round(analysis.duration * DUB_SR), 2)
    assert res.audio.dtype == np.float32
    assert np.isfinite(res.audio).all()


def test_offset_recovered_with_the_guide(guided):
    assert guided.guide_weight > 0.5
    # the picture's own clean sound: clean, and the same performance as the dub
    evidence = guided.guide_evidence
    assert evidence["speech_above_noise_floor_db"] > 20 and evidence["same_performance_pitch_contrast"] > 0.3
    assert evidence["trust"] == 1.0 and evidence["fine_guide"]
    assert "the dub's own performance" in guided.summary()["text"]
    y, sr = grid_audio()
    picture_audio = to_rate(y, sr, DUB_SR)
    assert abs(lag_seconds(guided.audio[:, 0], picture_audio, DUB_SR)) <= TOLERANCE
    mids = speech_mids()
    np.testing.assert_allclose(guided.timemap.to_picture(mids + OFFSET), mids, atol=TOLERANCE)
    # both channels went through the same map: the right one is still 0.7 x the left
    loud = np.abs(guided.audio[:, 0]) > 0.05
    np.testing.assert_allclose(guided.audio[loud, 1] / guided.audio[loud, 0], 0.7, atol=0.01)


def test_lips_only_returns_a_valid_map(lips_only):
    cfg = AlignConfig()
    tm = lips_only.timemap
    assert lips_only.guide_weight == 0.0 and lips_only.guide_evidence is None
    assert lips_only.model.startswith("lipsync")
    assert (np.diff(tm.dub_t) > 0).all() and (np.diff(tm.pic_t) > 0).all()
    # the stretch limits bind inside speech; pauses may be squeezed or stretched much further
    lo, hi = lips_only.stretch_range
    assert lo >= cfg.min_stretch - 1e-6 and hi <= cfg.max_stretch + 1e-6
    stretch = tm.stretch()
    assert stretch.min() >= 0.05 - 1e-6 and stretch.max() <= 8.0 + 1e-6
    assert stretch.min() - 1e-9 <= lo <= hi <= stretch.max() + 1e-9
    # the dub's start may move at most --max-shift against the picture's start
    assert abs(float(tm.to_picture(0.0))) <= cfg.max_shift + 1e-6
    assert 0.0 <= lips_only.overall_confidence <= 1.0


def test_to_json_is_serialisable_with_the_documented_keys(guided):
    report = json.loads(json.dumps(guided.to_json()))
    assert set(report) == REPORT_KEYS
    assert (report["sample_rate"], report["subtype"], report["channels"]) == (DUB_SR, "PCM_24", 2)
    assert report["duration_s"] == pytest.approx(3.0, abs=0.01)
    assert len(report["confidence_per_second"]) == len(guided.confidence)
    # the report's map is rounded to 0.1 ms with straight runs merged: it must still be the same
    # map within that, at every dub time, and much shorter than the raw knot list
    restored = TimeMap.from_json(report["time_map"])
    t = np.linspace(0.0, guided.timemap.dub_t[-1], 2000)
    np.testing.assert_allclose(restored.to_picture(t), guided.timemap.to_picture(t), atol=1e-4)
    assert len(restored.dub_t) < len(guided.timemap.dub_t)
    assert set(report["timings_s"]) >= {"features", "model", "path", "render"}
    assert all(isinstance(v, float) for v in report["timings_s"].values())


def test_summary_says_where_the_line_went(guided):
    summary = guided.to_json()["summary"]
    first, last = summary["speech_on_picture_s"]
    # the dub's speech starts OFFSET later than the picture's: the summary must say so
    assert summary["shift_at_start_s"] == pytest.approx(-OFFSET, abs=TOLERANCE)
    assert 0.0 <= first < last <= 3.0
    assert summary["confidence_level"] in ("high", "medium", "low")
    assert "picture audio as guide: used" in summary["text"]
    assert f"from {first:.3f} s to {last:.3f} s" in summary["text"]


def test_hook_sees_every_stage(analysis, dub_path):
    stages = []
    align_dub(analysis, dub_path, AlignConfig(guide="off"), hook=lambda s, v: stages.append(s))
    assert stages == ["features", "sync_features", "placement", "path", "time_map", "render", "result"]


def test_dub_format_is_kept(analysis, tmp_path):
    mono = to_rate(shifted_dub(OFFSET, sr=DUB_SR, channels=1), DUB_SR, 44100)
    path = write_dub(tmp_path / "mono.wav", mono, sr=44100, subtype="PCM_16")
    res = align_dub(analysis, path, AlignConfig(guide="auto"))
    assert (res.sr, res.subtype) == (44100, "PCM_16")
    assert res.audio.shape == (round(analysis.duration * 44100), 1)


def test_picture_analysis_save_load_round_trip(analysis, tmp_path):
    path = tmp_path / "pic.npz"
    analysis.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pic.npz"]
    back = PictureAnalysis.load(path)
    for k in ("path", "start", "duration", "fps", "width", "height", "timings"):
        assert getattr(back, k) == getattr(analysis, k)
    for k in ("times", "present", "lips", "blendshapes", "crops"):
        a, b = getattr(analysis.track, k), getattr(back.track, k)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert (back.track.face, back.track.n_faces, back.track.face_x) == (
        analysis.track.face, analysis.track.n_faces, analysis.track.face_x
    )
    np.testing.assert_array_equal(back.audio, analysis.audio)


def test_picture_analysis_without_audio_round_trips(analysis, tmp_path):
    mute = PictureAnalysis(
        path=analysis.path, start=0.5, duration=2.0, fps=analysis.fps, width=analysis.width,
        height=analysis.height, track=analysis.track, audio=None,
    )
    mute.save(tmp_path / "mute.npz")
    back = PictureAnalysis.load(tmp_path / "mute.npz")
    assert back.audio is None and (back.start, back.duration) == (0.5, 2.0)


def test_no_picture_audio_warns_and_aligns_on_lips(analysis, dub_path):
    mute = PictureAnalysis(
        path=analysis.path, start=0.0, duration=analysis.duration, fps=analysis.fps, width=analysis.width,
        height=analysis.height, track=analysis.track, audio=None,
    )
    res = align_dub(mute, dub_path, AlignConfig(guide="auto"))
    assert res.guide_weight == 0.0
    assert any("no audio track" in w for w in res.warnings)


def test_unrelated_picture_audio_is_dropped_as_a_guide(analysis, dub_path, rng):
    # the picture's track holds something else entirely: noise that sounds where the line pauses
    # and stops where it speaks (effects, another take). Random bursts are no test: on a 3 s clip
    # they follow the speech envelope by chance as often as not.
    n = len(analysis.audio)
    block = 1600  # 0.1 s at the analysis rate
    energy = np.add.reduceat(analysis.audio.astype(np.float64) ** 2, np.arange(0, n, block))
    gaps = np.repeat(energy < np.median(energy), block)[:n]
    other = (rng.standard_normal(n) * gaps).astype(np.float32)
    wild = dataclasses.replace(analysis, audio=0.1 * other)
    seen = {}
    res = align_dub(wild, dub_path, AlignConfig(guide="auto"), hook=seen.__setitem__)
    assert seen["guide_agreement"] < 0.2
    assert res.guide_weight < 1.0
    assert any("hardly follows the dub" in w for w in res.warnings)


def test_the_warning_says_what_held_the_guide_down(analysis, dub_path):
    seen = {}
    align_dub(analysis, dub_path, AlignConfig(guide="always"), hook=seen.__setitem__)
    weak = dataclasses.replace(seen["sync_features"], guide_weight=0.03)
    noisy_new_take = GuideTrust(range_db=6.6, same_take=0.02)

    def warning(agreement: float, trust: GuideTrust) -> str:
        found = [w for w in align_module.assess(analysis, weak, np.ones(3), 0.9, AlignConfig(), True, None,
                                                agreement, trust) if w.startswith("the picture's audio")]
        assert len(found) == 1
        return found[0]

    follows_but_noisy = warning(0.9, noisy_new_take)
    assert "is noisy (speech 7 dB above its noise floor) and not the dub's own performance" in follows_but_noisy
    assert "hardly follows" not in follows_but_noisy and "guide weight 0.03" in follows_but_noisy
    assert "is noisy" not in warning(0.0, GuideTrust(range_db=30.0, same_take=0.5))
    assert "hardly follows the dub, and is noisy" in warning(0.0, noisy_new_take)


def test_the_lips_keep_their_aim_in_proportion_to_their_share(analysis, dub_path):
    seen = {}
    align_dub(analysis, dub_path, AlignConfig(guide="always"), hook=seen.__setitem__)
    sync, feats = seen["sync_features"], seen["features"]
    for weight in (1.0, 0.25, 0.0):
        weighted = dataclasses.replace(sync, guide_weight=weight)
        placed = align_module.place_dub(weighted, feats, analysis.audio, AlignConfig(guide="always"))
        assert placed.features.guide_weight == weight
        assert placed.aim_s == pytest.approx(align_module.LIPS_ONLY_AIM_S * (1.0 - weight))


def test_align_writes_the_output(analysis, dub_path, tmp_path, monkeypatch):
    # the picture analysis is tested above; reuse it rather than run MediaPipe again
    monkeypatch.setattr(align_module, "analyze_picture", lambda *a, **k: analysis)
    out = tmp_path / "synced.wav"
    res = align(grid_clip(), dub_path, out, AlignConfig(guide="auto"))
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_24", 2, DUB_SR)
    assert info.frames == round(analysis.duration * DUB_SR)
    assert "write" in res.timings
    written, _ = sf.read(str(out), dtype="float32", always_2d=True)
    np.testing.assert_allclose(written, np.clip(res.audio, -1, 1), atol=2.0**-22)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synced.wav"]


def test_dub_much_longer_than_picture(analysis, tmp_path):
    y = np.tile(shifted_dub(0.0), (8, 1))  # 24 s against a 3 s picture with 1.5 s of slack each side
    path = write_dub(tmp_path / "long.wav", y)
    with pytest.raises(AlignmentError, match="much longer than the picture"):
        align_dub(analysis, path, AlignConfig())


def test_output_may_not_overwrite_an_input(dub_path, tmp_path):
    with pytest.raises(ParameterError, match="would overwrite the dub"):
        align(grid_clip(), dub_path, dub_path)
    with pytest.raises(ParameterError, match="would overwrite the picture"):
        align(grid_clip(), dub_path, grid_clip())
    with pytest.raises(ParameterError, match="would overwrite the dub"):
        align(grid_clip(), dub_path, tmp_path / "out.wav", report=dub_path)


def test_outputs_may_not_name_the_same_file(dub_path, tmp_path):
    out = tmp_path / "out.wav"
    with pytest.raises(ParameterError, match="same file"):
        align(grid_clip(), dub_path, out, report=tmp_path / "." / "out.wav")
    assert list(tmp_path.iterdir()) == []


def test_output_must_be_named_wav(dub_path, tmp_path):
    with pytest.raises(ParameterError, match="must be a WAV file"):
        align(grid_clip(), dub_path, tmp_path / "out.mp3")


def test_output_and_report_land_together(analysis, dub_path, tmp_path, monkeypatch):
    monkeypatch.setattr(align_module, "analyze_picture", lambda *a, **k: analysis)
    out, rep = tmp_path / "synced.wav", tmp_path / "synced.json"
    res = align(grid_clip(), dub_path, out, AlignConfig(guide="auto"), report=rep)
    report = json.loads(rep.read_text())
    assert report["output"] == str(out) and report["summary"]["confidence"] == round(res.overall_confidence, 3)
    assert sf.info(str(out)).frames == round(analysis.duration * DUB_SR)

    # a failed report write (disk full) leaves neither file, and says so in one line
    out.unlink(), rep.unlink()

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(align_module, "write_json_to", full_disk)
    with pytest.raises(MediaError, match="no space left on device; nothing was written"):
        align(grid_clip(), dub_path, out, AlignConfig(guide="auto"), report=rep)
    assert list(tmp_path.iterdir()) == []


def test_output_folder_must_exist(dub_path, tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        align(grid_clip(), dub_path, tmp_path / "missing" / "out.wav")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"guide": "on"},
        {"max_shift": 0.0},
        {"max_shift": -1.0},
        {"max_shift": 31.0},
        {"min_stretch": 1.2},
        {"min_stretch": 0.0},
        {"max_stretch": 0.9},
        {"model": "big"},
        {"renderer": "sox"},
    ],
)
def test_bad_config_is_refused(analysis, dub_path, kwargs):
    cfg = AlignConfig(**kwargs)
    with pytest.raises(ParameterError):
        cfg.check()
    with pytest.raises(ParameterError):
        align_dub(analysis, dub_path, cfg)


@pytest.mark.parametrize(("start", "end"), [(-1.0, None), (2.0, 1.0), (1.0, 1.0)])
def test_bad_picture_region_is_refused(start, end):
    with pytest.raises(ParameterError, match="region"):
        analyze_picture(grid_clip(), AlignConfig(), start=start, end=end)


# ---- the bundled example (examples/grid_bbaf2n, made by scripts/make_example.py) ----------------

EXAMPLE = REPO / "examples" / "grid_bbaf2n"


def load_make_example():
    spec = importlib.util.spec_from_file_location("make_example", REPO / "scripts" / "make_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def word_errors(truth: TimeMap, found: TimeMap) -> np.ndarray:
    """Where the result puts each word start, middle and end, minus where the lips say (s)."""
    pic = np.array([t for w in grid_words() for t in (w.start, (w.start + w.end) / 2, w.end)])
    return found.to_picture(truth.to_dub(pic)) - pic


def test_make_example_writes_a_known_warp(tmp_path):
    meta = load_make_example().make_example(grid_clip(), tmp_path, seed=3, offset=0.25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dub.wav", "picture.mkv", "truth.json"]
    assert (tmp_path / "picture.mkv").read_bytes() == grid_clip().read_bytes()
    truth = TimeMap.from_json(json.loads((tmp_path / "truth.json").read_text())["time_map"])
    assert meta["seed"] == 3
    assert float(truth.to_dub(0.0)) == pytest.approx(0.25)
    stretch = truth.stretch()
    assert stretch.min() >= 0.8 - 1e-9 and stretch.max() <= 1.25 + 1e-9
    assert stretch.max() - stretch.min() > 0.1  # really non-linear
    info = sf.info(str(tmp_path / "dub.wav"))
    assert (info.samplerate, info.subtype) == (DUB_SR, "PCM_24")
    assert info.duration == pytest.approx(truth.dub_t[-1] + 0.2, abs=1e-3)


@pytest.mark.skipif(not EXAMPLE.is_dir(), reason="examples/grid_bbaf2n is not there")
def test_bundled_example_aligns(analysis):
    # the example's picture is a copy of the bundled clip, so its analysis is the shared one
    assert (EXAMPLE / "picture.mkv").read_bytes() == grid_clip().read_bytes()
    truth = TimeMap.from_json(json.loads((EXAMPLE / "truth.json").read_text())["time_map"])
    res = align_dub(analysis, EXAMPLE / "dub.wav", AlignConfig(guide="auto"))
    assert np.abs(word_errors(truth, res.timemap)).max() <= TOLERANCE


def test_review_outputs_land_with_the_audio(analysis, dub_path, tmp_path, monkeypatch):
    import av

    monkeypatch.setattr(align_module, "analyze_picture", lambda *a, **k: analysis)
    out, plot, preview = tmp_path / "synced.wav", tmp_path / "sync.png", tmp_path / "review.mov"
    align(grid_clip(), dub_path, out, AlignConfig(guide="auto"), plot=plot, preview=preview, preview_guide=True)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(str(preview)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 2  # the dub, then the production sound
        assert c.streams.audio[0].rate == DUB_SR and c.streams.audio[0].channels == 2

    # a preview that cannot be written leaves none of the four files
    for p in (out, plot, preview):
        p.unlink()

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(align_module, "write_preview", broken)
    with pytest.raises(MediaError, match="nothing was written"):
        align(grid_clip(), dub_path, out, plot=plot, preview=preview, report=tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_review_output_names_are_checked_first(dub_path, tmp_path):
    with pytest.raises(ParameterError, match="must be a .png"):
        align(grid_clip(), dub_path, tmp_path / "o.wav", plot=tmp_path / "p.jpg")
    with pytest.raises(ParameterError):
        align(grid_clip(), dub_path, tmp_path / "o.wav", preview=tmp_path / "p.avi2")
    with pytest.raises(ParameterError, match="same file"):
        align(grid_clip(), dub_path, tmp_path / "o.wav", preview=tmp_path / "o.wav")


def test_picture_audio_out_of_sync_with_its_lips_is_not_a_guide(analysis, dub_path):
    # production sound slipped 0.6 s late against the picture: it would pull the dub 0.6 s off
    slip = int(0.6 * ANALYSIS_SR)
    slipped = dataclasses.replace(analysis, audio=np.concatenate([np.zeros(slip, np.float32), analysis.audio])[
        : len(analysis.audio)])
    res = align_dub(slipped, dub_path, AlignConfig(guide="auto"))
    assert res.guide_weight == 0.0
    slip_warnings = [w for w in res.warnings if "ms late against its lips" in w]
    assert len(slip_warnings) == 1, res.warnings
    measured = int(slip_warnings[0].split("is ")[1].split(" ms")[0])
    assert abs(measured - 600) <= 40  # within one picture frame
    # trusting the lips puts the dub's words where the mouth says them (lips only: within the
    # BT.1359 window), not 0.6 s later
    mids = speech_mids()
    err = res.timemap.to_picture(mids + OFFSET) - mids
    assert np.all((err > -0.045) & (err < 0.125)), err

    forced = align_dub(slipped, dub_path, AlignConfig(guide="always"))
    assert forced.guide_weight > 0 and not any("against its lips" in w for w in forced.warnings)


def test_picture_audio_in_sync_is_kept_as_a_guide(guided):
    assert guided.guide_weight == 1.0
    assert not any("against its lips" in w for w in guided.warnings)


def test_adapt_from_another_shot_of_the_speaker(analysis, dub_path):
    # the line's picture is mute; another take of the same speaker has clean, in-sync sound
    mute = dataclasses.replace(analysis, audio=None)
    base_model = align_module.load_lip_model("shipped")
    before = {k: v.clone() for k, v in base_model.encoder.state_dict().items()}
    res = align_dub(mute, dub_path, AlignConfig(guide="auto", adapt_from=str(grid_clip("bbas3a"))))
    report = res.to_json()["adaptation"]
    assert report["picture"].endswith("bbas3a.mkv") and isinstance(report["kept"], bool)
    assert "adapt" in res.timings
    # a 3 s GRID take holds too little speech to adapt on (tests/test_adapt.py adapts on more):
    # the report and a warning say so, and the line is aligned with the shipped model
    not_adapted = [w for w in res.warnings if "lip model was not adapted" in w]
    assert bool(not_adapted) == (not report["kept"])
    assert report["kept"] or report["reason"] in not_adapted[0]
    # the shipped model itself is never changed
    after = base_model.encoder.state_dict()
    assert all(torch_equal(before[k], after[k]) for k in before)


def test_adapt_from_a_picture_without_sound_is_refused(analysis, dub_path, tmp_path):
    from fractions import Fraction

    from helpers import reencode

    silent = reencode(grid_clip(), tmp_path / "silent.mkv", Fraction(25))  # video only
    with pytest.raises(MediaError, match="no audio track to adapt"):
        align_dub(analysis, dub_path, AlignConfig(adapt_from=str(silent)))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_face_gaps_are_measured_on_the_track_times(analysis, dub_path):
    # a 50 fps picture is tracked at 25 Hz: a gap of 30 tracked frames is 1.2 s, not 0.6 s
    present = analysis.track.present.copy()
    present[10:40] = False
    track = dataclasses.replace(analysis.track, present=present)
    assert align_module._longest_gap_s(track) == pytest.approx(30 / 25)
    res = align_dub(dataclasses.replace(analysis, track=track, fps=50.0), dub_path, AlignConfig(guide="off"))
    assert "no face for 1.2 s in a row" in res.warnings
