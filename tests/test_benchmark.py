"""The benchmark's scorer and case builder, on bundled GRID clips (tests/data/grid, CC BY 4.0),
synthetic takes, and (marked ``shared``) the CREMA-D takes of ../shared."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

import benchmarks as B
from dubalign.errors import MediaError, ParameterError
from dubalign.media import first_video_time, read_picture_audio
from dubalign.units import seconds_to_samples

REPO = Path(__file__).resolve().parent.parent
GRID = Path(__file__).resolve().parent / "data" / "grid"
WARPED_CLIP = "bbir8p"  # test split: picture of the warped case
REPERF_CLIP = "bbaf2n"  # test split: sentence of the re-performance case
SR = B.PICTURE_AUDIO_SR


@pytest.fixture(scope="module")
def grid() -> B.GridCorpus:
    return B.GridCorpus.open(GRID)


@pytest.fixture(scope="module")
def speech(grid) -> np.ndarray:
    """A real sentence (GRID s1) at SR: the reference speech under the lips."""
    return B.read_scoring_audio(grid.video(WARPED_CLIP), SR)


@pytest.fixture(scope="module")
def cases(grid, tmp_path_factory) -> dict[str, B.Case]:
    out = tmp_path_factory.mktemp("cases")
    built = B.build_cases(
        [grid.video(WARPED_CLIP)],
        out,
        seed=7,
        grid=grid,
        grid_clips=[REPERF_CLIP],
        babble_clips=_babble(grid),
        styles=B.GRID_STYLES,
    )
    return {c.track: c for c in built}


def _babble(grid):
    return [grid.video(c) for c in ("bbwm4n", "bbas3a")]


def _shift(y: np.ndarray, seconds: float) -> np.ndarray:
    """y played ``seconds`` later (positive: audio late), same length."""
    k = int(round(seconds * SR))
    return np.concatenate([np.zeros(k), y[:-k]]) if k > 0 else np.concatenate([y[-k:], np.zeros(-k)])


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_known_answer():
    e = np.array([0.0, 100.0, -50.0, 150.0, np.nan])
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    m = B.Metrics.from_errors(e, w)
    assert m.insync_pct == 40.0  # 0 and +100
    assert m.acceptable_pct == 80.0  # -50 and +150 too
    assert m.tight_pct == 20.0
    assert m.unlocated_pct == 20.0
    assert m.median_abs_ms == 100.0  # |e| sorted 0, 50, 100, 150, inf
    assert m.p95_abs_ms == float("inf")  # the lost moment is the worst
    assert m.speech_s == 5.0


def test_metrics_weights_and_window_edges():
    m = B.Metrics.from_errors(np.array([-45.0, 125.0, 126.0]), np.array([1.0, 1.0, 2.0]))
    assert m.insync_pct == 50.0  # both edges are inside, the heavy third is out


def test_pool_is_speech_weighted():
    a = B.Score(errors_ms=np.array([0.0]), weights=np.array([3.0]))
    b = B.Score(errors_ms=np.array([500.0]), weights=np.array([1.0]))
    assert B.pool([a, b]).insync_pct == 75.0


# --- the warped scorer --------------------------------------------------------------------------


def test_identity_scores_full(speech):
    m = B.score_warped(speech, SR, speech, SR).metrics()
    assert m.insync_pct >= 99.0
    assert m.median_abs_ms <= 2.0
    assert m.speech_s > 1.0


@pytest.mark.parametrize("shift_ms", [80.0, -60.0])
def test_constant_shift_is_measured(speech, shift_ms):
    out = _shift(speech, shift_ms / 1000)
    s = B.score_warped(out, SR, speech, SR)
    found = np.isfinite(s.errors_ms)
    assert found.mean() > 0.95
    assert abs(np.median(s.errors_ms[found]) - shift_ms) <= 5.0
    m = s.metrics()
    # +80 ms late is inside the window, 60 ms early is outside it (audio may lead by 45 ms only)
    assert m.insync_pct == (pytest.approx(100.0, abs=3) if shift_ms > 0 else pytest.approx(0, abs=3))


def test_output_rate_and_channels_do_not_matter(speech):
    import librosa

    out = librosa.resample(_shift(speech, 0.1), orig_sr=SR, target_sr=44100)
    stereo = np.stack([out, out], axis=1)
    s = B.score_warped(stereo, 44100, speech, SR)
    assert abs(np.nanmedian(s.errors_ms) - 100.0) <= 5.0


def test_noise_counts_as_out_of_sync(speech, rng):
    noise = rng.standard_normal(len(speech)).astype(np.float32) * 0.1
    m = B.score_warped(noise, SR, speech, SR).metrics()
    assert m.insync_pct <= 5.0 and m.acceptable_pct <= 10.0
    # chance matches stay possible (a speech onset looks like the edge of the output), but most
    # of the speech is not found at all
    assert m.unlocated_pct >= 60.0


def test_silence_and_far_shift_count_as_out_of_sync(speech):
    assert B.score_warped(np.zeros_like(speech), SR, speech, SR).metrics().unlocated_pct == 100.0
    far = B.score_warped(_shift(speech, 1.3), SR, speech, SR).metrics()
    assert far.insync_pct <= 5.0


# --- case building ------------------------------------------------------------------------------


def test_random_warp_respects_protocol(rng):
    pic_t, dub_t = B.random_warp(6.0, rng=rng)
    rate = np.diff(dub_t) / np.diff(pic_t)
    assert B.WARP_RATE_RANGE[0] - 1e-9 <= rate.min() and rate.max() <= B.WARP_RATE_RANGE[1] + 1e-9
    assert rate.max() - rate.min() > 0.1  # it does vary
    assert B.WARP_OFFSET_S[0] <= dub_t[0] <= B.WARP_OFFSET_S[1]
    assert pic_t[0] == 0.0 and pic_t[-1] >= 6.0


def test_random_warp_is_seeded():
    a = B.random_warp(3.0, rng=np.random.default_rng(3))
    b = B.random_warp(3.0, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a[1], b[1])


def test_read_grid_align():
    words = B.read_grid_align(GRID / "align" / f"{REPERF_CLIP}.align")
    assert [w.text for w in words] == ["bin", "blue", "at", "f", "two", "now"]
    assert words[0].start == pytest.approx(23750 / 25000)


def test_word_map_takes_words_onto_words():
    wd = [B.Word(0.2, 0.4, "a"), B.Word(0.8, 1.0, "b")]
    wp = [B.Word(1.0, 1.3, "a"), B.Word(1.3, 1.5, "b")]
    pic_t, dub_t = B.word_map(wd, wp, 3.0)
    assert np.all(np.diff(pic_t) > 0) and np.all(np.diff(dub_t) > 0)
    truth = B.Truth("reperformance", 3.0, pic_t, dub_t)
    np.testing.assert_allclose(truth.to_picture([0.3, 0.9]), [1.15, 1.4], atol=1e-6)


def test_choose_donors_uses_other_takes(grid, rng):
    donors = B.choose_donors(grid, REPERF_CLIP, rng=rng)
    assert REPERF_CLIP not in donors
    assert len(set(donors)) == len(donors)  # the bundle allows a new take for every word
    for word, donor in zip(grid.words[REPERF_CLIP], donors, strict=True):
        assert word.text in [w.text for w in grid.words[donor]]


def test_warped_case_files(cases, grid):
    case = cases["warped"]
    for cond in B.CONDITIONS:
        assert case.picture(cond).is_file()
    with av.open(str(case.picture("mute"))) as c:
        assert not c.streams.audio
    with av.open(str(case.picture("clean"))) as c, av.open(str(grid.video(WARPED_CLIP))) as src:
        n_out = sum(1 for _ in c.decode(video=0))
        n_src = sum(1 for _ in src.decode(video=0))
    assert n_out == n_src
    info = sf.info(case.dub_path)
    assert info.samplerate == B.DUB_SR and info.subtype == "PCM_24"
    # the clean picture carries the picture's own speech, in sync
    clean = B.read_scoring_audio(case.picture("clean"), SR)
    ref = B.read_scoring_audio(case.ref_path, SR)
    assert B.score_warped(clean, SR, ref, SR).metrics().insync_pct >= 98.0


def test_cases_are_cached_and_deterministic(cases, grid, tmp_path):
    case = cases["warped"]
    kw = dict(seed=7, babble_clips=_babble(grid))
    again = B.build_cases([grid.video(WARPED_CLIP)], case.path.parent.parent, **kw)[0]
    assert again.truth.to_json() == case.truth.to_json()
    fresh = B.build_cases([grid.video(WARPED_CLIP)], tmp_path, **kw)[0]
    assert fresh.truth.to_json() == case.truth.to_json()
    a, _ = sf.read(case.dub_path)
    b, _ = sf.read(fresh.dub_path)
    np.testing.assert_array_equal(a, b)


# --- reference methods through the scorer --------------------------------------------------------


def test_true_warp_scores_near_ceiling(cases):
    case = cases["warped"]
    out = B.run_method("true-warp", case, "mute")
    m = B.score_case(case, out.audio, out.sr).metrics()
    assert m.insync_pct >= 90.0
    assert m.median_abs_ms <= 15.0
    assert B.score_case(case, *_none(case)).metrics().insync_pct < m.insync_pct


def _none(case):
    out = B.run_method("none", case, "clean")
    return out.audio, out.sr


def test_oracle_shift_is_best_constant_shift(cases):
    case = cases["warped"]
    best = B.best_shift(case)
    pic, w = B.speech_times(case)
    lead = case.truth.to_dub(pic) - pic
    assert lead.min() - 0.13 <= best <= lead.max() + 0.05
    scores = [
        B.score_case(case, B.shift_dub(sf.read(case.dub_path)[0], B.DUB_SR, s, 3 * B.DUB_SR), B.DUB_SR)
        .metrics()
        .insync_pct
        for s in (best, best + 0.3)
    ]
    assert scores[0] > scores[1]


def test_reperformance_words_located(cases):
    case = cases["spliced"]
    dub, sr = sf.read(case.dub_path, always_2d=True)
    shift = 0.25
    out = B.shift_dub(dub, sr, shift, seconds_to_samples(case.truth.picture_duration, sr))
    s = B.score_case(case, out, sr)
    expected = np.array(
        [(d.centre - shift - p.centre) * 1000 for d, p in zip(case.truth.words_dub, case.truth.words_pic, strict=True)]
    )
    found = np.isfinite(s.errors_ms)
    near = np.abs(expected) < 900  # within the search, with room for the widened template
    assert found[near].mean() >= 0.8
    np.testing.assert_allclose(s.errors_ms[found & near], expected[found & near], atol=15)


@pytest.mark.parametrize("track", B.GRID_STYLES)
def test_reperformance_true_warp(cases, track):
    case = cases[track]
    out = B.run_method("true-warp", case, "clean")
    assert B.score_case(case, out.audio, out.sr).metrics().insync_pct >= 80.0


def test_fluent_keeps_the_pictures_pauses(cases, grid):
    case = cases["fluent"]
    assert case.name == f"fluent_{REPERF_CLIP}" and case.track == "fluent" and case.kind == "reperformance"
    wd, wp = case.truth.words_dub, case.truth.words_pic
    assert [w.text for w in wd] == [w.text for w in grid.words[REPERF_CLIP]] == [w.text for w in wp]
    lo, hi = B.FLUENT_JITTER_S
    slack = 1e-4  # word times are rounded to 10 us
    for i in range(len(wd) - 1):
        own = wp[i + 1].start - wp[i].end
        new = wd[i + 1].start - wd[i].end
        assert new >= -slack
        # the picture's own pause plus the jitter, or no pause where the jitter would make it negative
        assert max(0.0, own + lo) - slack <= new <= own + hi + slack, (i, own, new)
    # the words themselves come from other takes: their lengths are not the picture's
    assert any(abs((d.end - d.start) - (p.end - p.start)) > 0.01 for d, p in zip(wd, wp, strict=True))
    spliced = cases["spliced"].truth.words_dub
    assert [w.start for w in spliced] != [w.start for w in wd]  # a draw of its own, not the spliced one


def test_tracks_in_truth_and_results(cases):
    old = cases["spliced"].truth.to_json()
    del old["track"]  # a case built before there were three re-performance tracks
    assert B.Truth.from_json(old).track == "spliced"
    assert B.Truth.from_json({**old, "dub_clip": "x.flv"}).track == "natural"  # ../shared/eval's natural pairs
    touching = B.Truth.from_json({**old, "pic_t": [0.0, 1.0, 1.0, 2.0], "dub_t": [0.5, 1.2, 1.2, 2.5]})
    assert touching.pic_t.tolist() == [0.0, 1.0, 2.0] and touching.dub_t.tolist() == [0.5, 1.2, 2.5]
    assert B.Truth("warped", 1.0, np.zeros(2), np.ones(2)).track == "warped"
    with pytest.raises(ParameterError):
        B.Truth("warped", 1.0, np.zeros(2), np.ones(2), track="fluent")
    with pytest.raises(ParameterError):
        B.Truth("reperformance", 1.0, np.zeros(2), np.ones(2), track="mumbled")
    res = B.evaluate([cases["spliced"], cases["fluent"]], methods=["none"], conditions=["clean"])
    assert res.tracks == ("spliced", "fluent")
    assert res.summary("none", "clean", "reperformance") == res.summary("none", "clean", "spliced")
    assert res.summary("none", "clean", "fluent") != res.summary("none", "clean", "spliced")


# --- the natural track ----------------------------------------------------------------------------


def test_read_word_table_and_pairs(tmp_path):
    table = tmp_path / "words.tsv"
    table.write_text(
        "# a comment\nfile\tword\tstart_s\tend_s\n"
        "x_1_ANG_XX.flv\tjacket\t1.0\t1.5\nx_1_ANG_XX.flv\tdon't\t0.2\t0.4\n"
        "x_1_SAD_XX.flv\tdon't\t0.3\t0.5\nx_1_SAD_XX.flv\tjacket\t1.1\t1.6\n"
    )
    words = B.read_word_table(table)
    assert [w.text for w in words["x_1_ANG_XX.flv"]] == ["don't", "jacket"]  # in time order
    assert words["x_1_SAD_XX.flv"][1] == B.Word(1.1, 1.6, "jacket")
    pairs = B.natural_pairs([tmp_path / n for n in ("x_1_SAD_XX.flv", "x_1_ANG_XX.flv", "x_1_ANX_XX.flv")])
    assert [name for *_, name in pairs][:2] == ["natural_ANG_to_ANX", "natural_ANG_to_SAD"]
    assert len(pairs) == 6 and all(a != b for a, b, _ in pairs)
    table.write_text("file\tword\tstart_s\tend_s\nx.flv\tdon't\t0.2\n")
    with pytest.raises(MediaError, match=":2:"):
        B.read_word_table(table)
    with pytest.raises(MediaError):
        B.read_word_table(tmp_path / "none.tsv")


TAKE_SR = 44100  # the synthetic takes carry 16-bit PCM at 44.1 kHz, as FLV allows
TAKE_FPS = 25


def _flv_take(path: Path, speech: np.ndarray, *, video_start: float) -> Path:
    """An FLV take (grey Sorenson H.263 frames, PCM audio from time 0, video from ``video_start``):
    like the CREMA-D files, a codec Matroska refuses and a video that starts after the audio."""
    n_frames = int(len(speech) / TAKE_SR * TAKE_FPS)
    with av.open(str(path), "w", format="flv") as out:
        v = out.add_stream("flv", rate=TAKE_FPS)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=TAKE_SR)
        a.layout = "mono"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), (i * 7) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(round((video_start + i / TAKE_FPS) * 1000)), Fraction(1, 1000)
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)
        pcm = (np.clip(speech, -1, 1) * 32767).astype(np.int16)
        for k in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, k : k + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = TAKE_SR, k, Fraction(1, TAKE_SR)
            for packet in a.encode(frame):
                out.mux(packet)
        for packet in a.encode(None):
            out.mux(packet)
    return path


def test_natural_truth_on_the_pictures_timeline(grid, tmp_path):
    """Two takes of one line (the same GRID sentence, said 0.25 s later in the second), each with
    its video starting 0.28 s after its audio: the picture's words, its clean audio and ref.wav all
    sit 0.28 s earlier on the picture's timeline than on the file's audio timeline."""
    import librosa

    y = librosa.resample(B.read_scoring_audio(grid.video(REPERF_CLIP), 16000), orig_sr=16000, target_sr=TAKE_SR)
    late = 0.25
    video_start = 0.28  # a whole number of frames: the FLV encoder counts time in frames
    a = _flv_take(tmp_path / "take_a.flv", y, video_start=video_start)
    b = _flv_take(tmp_path / "take_b.flv", np.concatenate([np.zeros(int(late * TAKE_SR)), y]), video_start=video_start)
    words = grid.words[REPERF_CLIP]
    table = {
        a.name: tuple(words),
        b.name: tuple(B.Word(w.start + late, w.end + late, w.text) for w in words),
    }
    assert B.stream_starts(b) == pytest.approx((0.0, video_start))
    case = B.build_natural_case(
        a, b, table, tmp_path / "cases", name="natural_a_to_b", seed=7, babble_sources=[y[::-1].copy()]
    )
    assert case.track == "natural" and B.load_case(case.path).track == "natural"
    shift = late - video_start  # file audio time -> picture time of take b
    for got, w in zip(case.truth.words_pic, words, strict=True):
        assert (got.start, got.end) == pytest.approx((w.start + shift, w.end + shift), abs=1e-6)
    lead = case.truth.words_dub[0].start - words[0].start
    assert B.NATURAL_LEAD_S[0] - 1e-4 <= lead <= B.NATURAL_LEAD_S[1] + 1e-4
    for got, w in zip(case.truth.words_dub, words, strict=True):
        assert (got.start, got.end) == pytest.approx((w.start + lead, w.end + lead), abs=1e-4)
    # the pictures keep the takes' frames at their times (re-encoded: Matroska takes no FLV video)
    with av.open(str(case.picture("mute"))) as c:
        assert not c.streams.audio
        assert first_video_time(c) == pytest.approx(video_start)
    with av.open(str(case.picture("clean"))) as c, av.open(str(b)) as src:
        assert c.streams.video[0].codec_context.name == "h264"
        got = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
        want = [f.to_ndarray(format="gray") for f in src.decode(video=0)]
        assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    # the picture's clean audio, as dubalign reads it, is ref.wav; and both put each word where the
    # truth says it is under the lips (so scoring it as an output finds every word in sync)
    ref, ref_sr = sf.read(case.ref_path, dtype="float32")
    clean = read_picture_audio(case.picture("clean"), sr=ref_sr)
    n = min(len(clean), len(ref))
    assert np.max(np.abs(clean[:n] - ref[:n])) < 1e-3
    m = B.score_case(case, clean, ref_sr).metrics()
    assert m.insync_pct == 100.0 and m.median_abs_ms <= 15.0
    out = B.run_method("true-warp", case, "mute")
    assert B.score_case(case, out.audio, out.sr).metrics().insync_pct >= 90.0


@pytest.mark.shared
def test_natural_crema_pair(shared_dir, tmp_path):
    dev = shared_dir / "data" / "dev"
    words = B.read_word_table(dev / "crema_dfa_words.tsv")
    pairs = B.natural_pairs([dev / name for name in words])
    assert len(pairs) == 30
    dub, pic, name = pairs[0]
    assert name == "natural_ANG_to_DIS"
    grid = B.GridCorpus.open(GRID)
    babble = [B.read_scoring_audio(grid.video(c), B.PICTURE_AUDIO_SR) for c in ("bbwm4n", "bbas3a")]
    case = B.build_natural_case(dub, pic, words, tmp_path, name=name, seed=7, babble_sources=babble)
    audio0, video0 = B.stream_starts(pic)
    assert video0 - audio0 == pytest.approx(0.027)  # as the word table says
    want = [(w.start - 0.027, w.end - 0.027) for w in words[pic.name]]
    assert [(w.start, w.end) for w in case.truth.words_pic] == pytest.approx(want, abs=1e-6)
    ref, ref_sr = sf.read(case.ref_path, dtype="float32")
    clean = read_picture_audio(case.picture("clean"), sr=ref_sr)
    n = min(len(clean), len(ref))
    assert np.max(np.abs(clean[:n] - ref[:n])) < 1e-3
    for method, floor in (("true-warp", 85.0), ("oracle-shift", 50.0)):
        out = B.run_method(method, case, "clean")
        assert B.score_case(case, out.audio, out.sr).metrics().insync_pct >= floor, method


def test_guide_dtw_clean_warped(cases):
    case = cases["warped"]
    out = B.run_method("guide-dtw", case, "clean")
    assert B.score_case(case, out.audio, out.sr).metrics().insync_pct >= 80.0


# --- errors and the whole run -------------------------------------------------------------------


def test_documented_errors(cases, tmp_path):
    with pytest.raises(MediaError):
        B.load_case(tmp_path)
    with pytest.raises(ParameterError):
        B.run_method("syncnet", cases["warped"], "clean")
    with pytest.raises(ParameterError):
        B.run_method("guide-dtw", cases["warped"], "mute")
    with pytest.raises(ParameterError):
        B.evaluate([cases["warped"]], conditions=["loud"])
    with pytest.raises(ParameterError):
        B.babble(100, SR, [], rng=np.random.default_rng(0))
    with pytest.raises(MediaError):
        B.GridCorpus.open(tmp_path)


def test_evaluate_and_reports(cases):
    res = B.evaluate(list(cases.values()), methods=["none", "true-warp"], conditions=["clean", "mute"])
    md = res.to_markdown()
    assert "| true-warp |" in md and "spliced mute" in md and "fluent clean" in md
    doc = json.loads(json.dumps(res.to_json()))
    assert doc["summary"]["true-warp|mute|warped"]["insync_pct"] >= 90.0
    # picture-independent methods count the same under every condition
    assert res.summary("none", "clean", "warped") == res.summary("none", "mute", "warped")


def test_script_scores_existing_outputs(cases, tmp_path):
    case = cases["warped"]
    out = B.run_method("true-warp", case, "clean")
    sf.write(case.path / "out_probe.wav", out.audio, out.sr)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "benchmark.py"),
                "--cases",
                str(case.path.parent),
                "--score-existing",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        (case.path / "out_probe.wav").unlink()
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| probe | warped"))
    assert float(row.split("|")[3]) >= 90.0


@pytest.mark.parametrize(("option", "bad"), [("--methods", "none,syncnet"), ("--conditions", "loud")])
def test_script_refuses_unknown_method_or_condition(tmp_path, option, bad):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--cases", str(tmp_path), option, bad],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert proc.stderr.startswith("error: unknown") and bad.split(",")[-1] in proc.stderr


def _script():
    """scripts/benchmark.py as a module, to call its main() in this process (a subprocess costs
    seconds of imports per call)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "args",
    [
        ["--cases", "{tmp}/missing"],
        ["{tmp}/missing"],
        ["--grid", "{tmp}/missing"],
        ["--natural-words", "{tmp}/missing.tsv"],
        ["{tmp}", "--tracks", "fluent"],
        ["--cases", "{tmp}", "--tracks", "spliced,missing"],
    ],
)
def test_script_bad_inputs_are_one_line(tmp_path, capsys, args):
    args = [a.format(tmp=tmp_path) for a in args]
    assert _script().main([*args, "--out", str(tmp_path / "out")]) == 1  # no exception escapes
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("error: ")
    assert "missing" in err or "needs --grid" in err
    assert not (tmp_path / "out").exists()
