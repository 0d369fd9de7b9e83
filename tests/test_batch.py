"""Batch ADR: cue list parsing, planning, ranking, outputs, resume, Ctrl-C; then end to end.

Most tests replace the aligner by a fake with known answers (fast, deterministic); the
end-to-end test at the bottom runs the real pipeline on GRID clips (bundled under
tests/data/grid, else ../shared; skipped when neither is there).
"""

import csv
import json
import os
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import soundfile as sf

from dubalign import align as align_mod
from dubalign import batch
from dubalign.align import AlignConfig, PictureAnalysis
from dubalign.batch import (
    BatchConfig,
    BatchInterrupted,
    load_or_analyze,
    parse_column_map,
    plan_batch,
    read_cue_list,
    run_batch,
    safe_name,
    take_score,
)
from dubalign.bwf import TEMP_MARK, read_bext
from dubalign.errors import AlignmentError, MediaError, ParameterError
from dubalign.lips import LipTrack
from dubalign.timecode import parse_rate
from dubalign.timemap import TimeMap

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TEST_DATA = REPO / "tests" / "data"

FPS25 = parse_rate("25")


def make_picture(path: Path, seconds: float, *, fps: int = 25, timecode: str | None = None) -> Path:
    """A small grey-ramp video (no face) of ``seconds``, optionally with a start timecode."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        if timecode:
            s.metadata["timecode"] = timecode
        for i in range(int(round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i % 256, np.uint8), "rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_cues(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def write_take(path: Path, rng, *, sr: int = 48000, channels: int = 1, subtype: str = "PCM_24",
               seconds: float = 1.0) -> Path:
    sf.write(path, 0.1 * rng.standard_normal((int(sr * seconds), channels)), sr, subtype=subtype)
    return path


# ----------------------------------------------------------------------------- cue list


def test_header_synonyms_and_merged_rows(tmp_path):
    p = write_cues(tmp_path / "c.csv", [
        ["Cue", "Dub", "Video", "Start", "End", "Role", "Dialogue", "Notes"],
        ["12A", "a.wav; sub/b.wav", "reel.mov", "01:00:00:00", "01:00:02:00", "ANNA", "Hi", "x"],
        ["", "", "", "", "", "", "", ""],
        ["12A", "c.wav", "", "", "", "", "", ""],
        ["13", "/abs/d.wav", "", "01:00:03:00", "01:00:04:00", "", "", ""],
    ])
    cl = read_cue_list(p)
    assert dict(cl.columns) == {"cue": "Cue", "take": "Dub", "picture": "Video", "tc_in": "Start",
                                "tc_out": "End", "character": "Role", "line": "Dialogue"}
    a, b = cl.cues
    assert a.cue_id == "12A" and a.row == 2 and a.error is None
    assert a.takes == tuple(str(tmp_path / n) for n in ("a.wav", "sub/b.wav", "c.wav"))
    assert a.picture == str(tmp_path / "reel.mov") and a.character == "ANNA" and a.line == "Hi"
    assert b.row == 5 and b.takes == ("/abs/d.wav",) and b.picture is None


@pytest.mark.parametrize(("delimiter", "suffix"), [("\t", ".tsv"), (";", ".csv"), ("\t", ".txt")])
def test_delimiter_sniffed_from_header(tmp_path, delimiter, suffix):
    # Drop-frame timecode and take lists contain ';': the header decides, not the data rows.
    p = write_cues(tmp_path / f"c{suffix}", [
        ["id", "take", "tc_in", "tc_out"], ["1", "a.wav;b.wav", "00:01:00;02", "00:01:02;00"],
    ], delimiter)
    (cue,) = read_cue_list(p).cues
    assert cue.takes == (str(tmp_path / "a.wav"), str(tmp_path / "b.wav"))
    assert cue.tc_in == "00:01:00;02"


def test_column_map(tmp_path):
    p = write_cues(tmp_path / "c.csv", [["Cue Number", "Audio File", "In"], ["7", "a.wav", "x"]])
    cm = parse_column_map("cue=Cue Number, Audio File=take")
    assert cm == (("cue", "Cue Number"), ("take", "Audio File"))
    (cue,) = read_cue_list(p, column_map=cm).cues
    assert cue.cue_id == "7" and cue.tc_in == "x"
    with pytest.raises(ParameterError, match="no column 'Nope'"):
        read_cue_list(p, column_map=parse_column_map("cue=Nope,take=Audio File"))
    with pytest.raises(ParameterError, match="names no known field"):
        parse_column_map("foo=bar")
    with pytest.raises(ParameterError, match="field=header"):
        parse_column_map("cue")


def test_structural_errors(tmp_path):
    with pytest.raises(ParameterError, match="no 'take' column"):
        read_cue_list(write_cues(tmp_path / "a.csv", [["cue", "picture"], ["1", "p.mov"]]))
    with pytest.raises(ParameterError, match="could all be 'tc_in'"):
        read_cue_list(write_cues(tmp_path / "b.csv", [["cue", "take", "in", "start"]]))
    (tmp_path / "e.csv").write_text("\n\n")
    with pytest.raises(ParameterError, match="empty"):
        read_cue_list(tmp_path / "e.csv")
    with pytest.raises(MediaError, match="not found"):
        read_cue_list(tmp_path / "missing.csv")
    xlsx = tmp_path / "c.xlsx"
    xlsx.write_bytes(b"PK")
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        with pytest.raises(ParameterError, match="openpyxl"):
            read_cue_list(xlsx)


def test_row_problems_mark_the_cue_only(tmp_path):
    p = write_cues(tmp_path / "c.csv", [
        ["cue", "take", "tc_in"],
        ["1", "", "01:00:00:00"],
        ["2", "a.wav", "01:00:00:00"],
        ["2", "b.wav", "01:00:05:00"],
        ["3", "c.wav", ""],
    ])
    one, two, three = read_cue_list(p).cues
    assert "row 2 (cue 1): no take file" in one.error
    assert "row 4 (cue 2): tc_in '01:00:05:00' differs" in two.error
    assert three.error is None


def test_safe_name():
    assert safe_name("12A/b c:d") == "12A_b_c_d"
    assert safe_name("..") == "_"
    assert safe_name("é") == "_"


# ----------------------------------------------------------------------------- planning


@pytest.fixture
def reel(tmp_path) -> Path:
    return make_picture(tmp_path / "reel.mov", 10.0, timecode="01:00:00:00")


def test_plan_regions_handles_and_errors(tmp_path, reel, rng):
    write_take(tmp_path / "a.wav", rng)
    p = write_cues(tmp_path / "c.csv", [
        ["cue", "take", "tc_in", "tc_out"],
        ["1", "a.wav", "01:00:02:00", "01:00:04:12"],  # 2.0 .. 4.48 s into the reel
        ["2", "a.wav;gone.wav", "01:00:00:10", "01:00:09:20"],  # handles clipped at both ends
        ["3", "a.wav", "01:00:0x:00", "01:00:04:00"],  # bad timecode
        ["4", "a.wav", "01:00:05:00", "01:00:04:00"],  # out before in
        ["5", "a.wav", "02:00:00:00", "02:00:01:00"],  # outside the reel
        ["6", "a.wav", "", ""],  # reel without timecode
    ])
    cfg = BatchConfig(cues=p, out_dir=tmp_path / "out", picture=reel, fps=FPS25,
                      template="{cue}-{index}-{take}.wav")
    j1, j2, j3, j4, j5, j6 = plan_batch(read_cue_list(p), cfg)
    assert j1.error is None and (j1.start, j1.end) == pytest.approx((1.0, 5.48))
    assert j1.start_tc == "01:00:01:00" and j1.origin_s == pytest.approx(3601.0)
    assert j1.takes[0].output == str(tmp_path / "out" / "1-1-a.wav")
    assert (j2.start, j2.end) == pytest.approx((0.0, 10.0))
    assert j2.takes[0].error is None
    assert j2.takes[1].error == f"row 3 (cue 2): take file not found: {tmp_path / 'gone.wav'}"
    assert j3.error.startswith("row 4 (cue 3): tc_in: bad timecode '01:00:0x:00'")
    assert "row 5 (cue 4): tc_out 01:00:04:00 is not after" in j4.error
    assert "lies outside the picture" in j5.error and "--reel-start" in j5.error
    assert "needs tc_in and tc_out" in j6.error


def test_plan_needs_fps_for_timecode_and_reel_start_override(tmp_path, reel, rng):
    write_take(tmp_path / "a.wav", rng)
    p = write_cues(tmp_path / "c.csv", [["cue", "take", "tc_in", "tc_out"],
                                        ["1", "a.wav", "00:00:01:00", "00:00:02:00"]])
    (job,) = plan_batch(read_cue_list(p), BatchConfig(cues=p, out_dir=tmp_path, picture=reel))
    assert "--fps" in job.error
    (job,) = plan_batch(read_cue_list(p), BatchConfig(
        cues=p, out_dir=tmp_path / "o", picture=reel, fps=FPS25, reel_start="00:00:00:00"))
    assert job.error is None and job.start == pytest.approx(0.0) and job.origin_s == 0.0
    (job,) = plan_batch(read_cue_list(p), BatchConfig(
        cues=p, out_dir=tmp_path / "o", picture=reel, fps=parse_rate("24"),
        reel_start="00:00:00:00"))
    assert any("25.000 fps" in w for w in job.warnings)


def test_plan_template_errors(tmp_path, reel, rng):
    write_take(tmp_path / "a.wav", rng)
    (tmp_path / "x").mkdir()
    write_take(tmp_path / "x" / "a.wav", rng)
    p = write_cues(tmp_path / "c.csv", [["cue", "take", "tc_in", "tc_out"],
                                        ["1", "a.wav;x/a.wav", "01:00:01:00", "01:00:02:00"]])
    cl = read_cue_list(p)

    def cfg(template):
        return BatchConfig(cues=p, out_dir=tmp_path / "o", picture=reel, fps=FPS25,
                           template=template)

    with pytest.raises(ParameterError, match="add \\{take\\} or \\{index\\}"):
        plan_batch(cl, cfg("{cue}_{take}.wav"))  # two takes named 'a' in one cue
    assert len(plan_batch(cl, cfg("{cue}_{index}.wav"))[0].takes) == 2
    with pytest.raises(ParameterError, match="is not a field"):
        plan_batch(cl, cfg("{scene}.wav"))
    with pytest.raises(ParameterError, match="must end in .wav"):
        plan_batch(cl, cfg("{cue}_{index}.flac"))
    with pytest.raises(ParameterError, match="inside OUTDIR"):
        plan_batch(cl, cfg("../{cue}_{index}.wav"))


# ----------------------------------------------------------------------------- ranking + outputs


def test_take_score_prefers_confidence_then_less_stretch():
    assert take_score(0.8, 1.0) > take_score(0.6, 1.0)
    assert take_score(0.8, 1.0) > take_score(0.8, 1.4)
    assert take_score(0.8, 1.5) == pytest.approx(0.8 - 0.25 * np.log(1.5))


# Known answers for the fake aligner, by take file stem: (confidence, stretch of the map).
FAKE = {"good": (0.9, 1.0), "warped": (0.9, 1.5), "weak": (0.4, 1.0), "boom": None}


def fake_align_dub(pic, dub_path, cfg, hook=None):
    stem = Path(dub_path).stem
    if FAKE[stem] is None:
        raise AlignmentError("no path through the cost matrix")
    conf, stretch = FAKE[stem]
    info = sf.info(dub_path)
    y, sr = sf.read(dub_path, dtype="float32", always_2d=True)
    n_out = int(round(pic.duration * sr))
    audio = np.zeros((n_out, y.shape[1]), np.float32)
    audio[: min(n_out, len(y))] = y[:n_out]
    tm = TimeMap(dub_t=np.array([0.0, 1.0, 2.0]), pic_t=np.array([0.0, stretch, stretch + 1.0]))
    return SimpleNamespace(audio=audio, sr=sr, subtype=info.subtype, timemap=tm,
                           overall_confidence=conf, warnings=[f"fake {stem}"],
                           to_json=lambda: {"overall_confidence": conf})


@pytest.fixture
def fake_aligner(monkeypatch):
    calls = []

    def fake_analysis(job, cfg, cache_dir):
        calls.append((job.picture, job.start, job.end))
        return SimpleNamespace(duration=job.end - job.start)

    monkeypatch.setattr(batch, "load_or_analyze", fake_analysis)
    monkeypatch.setattr(align_mod, "align_dub", fake_align_dub)
    return calls


@pytest.fixture
def reel_run(tmp_path, reel, rng):
    """A reel cue list: a cue with three takes, a bad timecode, a missing take, a failing take."""
    write_take(tmp_path / "good.wav", rng, sr=48000, channels=2, subtype="PCM_24")
    write_take(tmp_path / "warped.wav", rng, sr=44100, channels=1, subtype="PCM_16")
    write_take(tmp_path / "weak.wav", rng, sr=48000, channels=1, subtype="FLOAT")
    write_take(tmp_path / "boom.wav", rng)
    p = write_cues(tmp_path / "cues.csv", [
        ["cue", "take", "tc_in", "tc_out", "character", "line"],
        ["101", "weak.wav;warped.wav", "01:00:02:00", "01:00:04:00", "ANNA", "Where were you?"],
        ["101", "good.wav", "", "", "", ""],
        ["102", "good.wav", "01:00:0x:00", "01:00:06:00", "BEN", "broken"],
        ["103", "missing.wav;weak.wav", "01:00:06:00", "01:00:08:00", "ANNA", "Home."],
        ["104", "boom.wav", "01:00:08:00", "01:00:09:00", "BEN", "Boom."],
    ])
    return BatchConfig(cues=p, out_dir=tmp_path / "out", picture=reel, fps=FPS25)


def read_summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_reel_with_fake_aligner(reel_run, fake_aligner, tmp_path):
    events = []
    result = run_batch(reel_run, hook=lambda stage, v: events.append(stage))
    out = reel_run.out_dir
    assert events == ["plan"] + ["cue"] * 4
    status = {(r["cue"], r["take"]): r["status"] for r in read_summary(out)}
    assert status == {("101", "weak"): "ok", ("101", "warped"): "ok", ("101", "good"): "ok",
                      ("102", "good"): "failed", ("103", "missing"): "failed",
                      ("103", "weak"): "ok", ("104", "boom"): "failed"}
    assert result.counts == {"ok": 4, "failed": 3}
    c101, c102, c103, c104 = result.outcomes
    assert (c101.status, c102.status, c103.status, c104.status) == (
        "ok", "failed", "partial", "failed")
    # Ranking: equal confidence, less stretch wins; low confidence last.
    assert c101.best_take == "good"
    assert [(t.take, t.rank, t.best) for t in c101.takes] == [
        ("weak", 3, False), ("warped", 2, False), ("good", 1, True)]
    assert c101.takes[1].max_stretch == pytest.approx(1.5)
    assert "row 4 (cue 102): tc_in: bad timecode" in c102.error
    assert "take file not found" in c103.takes[0].error and c103.best_take == "weak"
    assert "no path through the cost matrix" in c104.error
    # The picture region was analysed once per cue, not once per take.
    assert len(fake_aligner) == 3
    # Outputs keep each take's rate, channels and bit depth; TimeReference = region start
    # (tc_in 01:00:02:00 minus the 1 s handle) in samples at the file's own rate.
    for take, sr, ch, subtype in [("good", 48000, 2, "PCM_24"), ("warped", 44100, 1, "PCM_16"),
                                  ("weak", 48000, 1, "FLOAT")]:
        path = out / f"101_{take}.wav"
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (sr, ch, subtype)
        assert info.frames == round(4.0 * sr)  # 2 s cue + 2 x 1 s handles
        bext = read_bext(path)
        assert bext.time_reference == 3601 * sr
        assert bext.originator == "dubalign"
        assert bext.description.startswith(f"cue 101 take {take}")
        assert ("[best]" in bext.description) == (take == "good")
    assert read_bext(out / "103_weak.wav").time_reference == 3605 * 48000
    report = json.loads((out / "reports" / "101.json").read_text())
    assert report["best_take"] == "good" and report["cue"]["character"] == "ANNA"
    assert report["alignments"]["good"] == {"overall_confidence": 0.9}
    assert report["region"]["start_tc"] == "01:00:01:00"
    summary = json.loads((out / "summary.json").read_text())
    assert [c["status"] for c in summary["cues"]] == ["ok", "failed", "partial", "failed"]
    assert not list(out.rglob(f"*{TEMP_MARK}*"))


def test_resume_skips_done_cues_only(reel_run, fake_aligner):
    run_batch(reel_run)
    out = reel_run.out_dir
    stamp = (out / "reports" / "101.json").stat().st_mtime_ns
    fake_aligner.clear()
    result = run_batch(BatchConfig(**{**reel_run.__dict__, "resume": True}))
    assert (out / "reports" / "101.json").stat().st_mtime_ns == stamp
    assert [o.status for o in result.outcomes] == ["skipped", "failed", "partial", "failed"]
    assert result.outcomes[0].best_take == "good"
    # Only the cues that were not fully done ran again.
    assert [start for _, start, _ in fake_aligner] == pytest.approx([5.0, 7.0])
    rows = read_summary(out)
    assert {r["status"] for r in rows if r["cue"] == "101"} == {"skipped"}
    assert next(r for r in rows if r["take"] == "good" and r["cue"] == "101")["best"] == "yes"
    # A deleted output makes its cue run again.
    (out / "101_warped.wav").unlink()
    fake_aligner.clear()
    result = run_batch(BatchConfig(**{**reel_run.__dict__, "resume": True}))
    assert result.outcomes[0].status == "ok" and (out / "101_warped.wav").is_file()


def test_ctrl_c_writes_summary_and_leaves_no_temp_files(reel_run, fake_aligner, monkeypatch):
    real_run_cue = batch.run_cue
    calls = []

    def interrupted_run_cue(job, cfg, cache_dir):
        calls.append(job.cue.cue_id)
        if len(calls) == 3:  # cue 103, after the failing 102 (planned) and 101
            (reel_run.out_dir / f".half.wav.x{TEMP_MARK}").write_bytes(b"half")
            raise KeyboardInterrupt
        return real_run_cue(job, cfg, cache_dir)

    monkeypatch.setattr(batch, "run_cue", interrupted_run_cue)
    with pytest.raises(BatchInterrupted) as e:
        run_batch(reel_run)
    result = e.value.result
    assert result.interrupted
    assert [o.status for o in result.outcomes] == ["ok", "failed", "skipped", "skipped"]
    assert "interrupted" in result.outcomes[2].error
    assert json.loads((reel_run.out_dir / "summary.json").read_text())["interrupted"] is True
    assert not list(reel_run.out_dir.rglob(f"*{TEMP_MARK}*"))
    assert not (reel_run.out_dir / "103_weak.wav").exists()


# ----------------------------------------------------------------------------- picture cache


def fake_analysis(start: float, duration: float) -> PictureAnalysis:
    n = 5
    track = LipTrack(times=np.arange(n) / 25, present=np.ones(n, bool),
                     lips=np.zeros((n, 40, 2), np.float32),
                     blendshapes=np.zeros((n, 52), np.float32),
                     crops=np.zeros((n, 4, 8), np.uint8), face=0, n_faces=1, face_x=0.5)
    return PictureAnalysis(path="p", start=start, duration=duration, fps=25.0, width=32,
                           height=32, track=track, audio=None)


def test_picture_cache_reuses_and_invalidates(tmp_path, reel, monkeypatch):
    calls = []

    def analyze(path, cfg, *, start=None, end=None, hook=None):
        calls.append((start, end, cfg.max_shift))
        return fake_analysis(start, end - start)

    monkeypatch.setattr(align_mod, "analyze_picture", analyze)
    job = SimpleNamespace(picture=str(reel), start=1.0, end=3.0)
    cache = tmp_path / "cache"
    a = load_or_analyze(job, AlignConfig(), cache)
    b = load_or_analyze(job, AlignConfig(), cache)
    assert len(calls) == 1 and b.duration == a.duration == 2.0
    load_or_analyze(SimpleNamespace(picture=str(reel), start=1.0, end=4.0), AlignConfig(), cache)
    load_or_analyze(job, AlignConfig(max_shift=1.0), cache)
    assert len(calls) == 3
    os.utime(reel, ns=(0, 0))  # the picture changed on disk
    load_or_analyze(job, AlignConfig(), cache)
    assert len(calls) == 4
    for p in cache.glob("*.npz"):  # a damaged entry is recomputed
        p.write_bytes(b"junk")
    load_or_analyze(job, AlignConfig(), cache)
    assert len(calls) == 5
    assert not list(cache.glob(f"*{TEMP_MARK}*"))


# ----------------------------------------------------------------------------- end to end


def grid_clips(n: int) -> list[Path]:
    bundled = sorted((TEST_DATA / "grid" / "video").glob("*.mkv"))
    if len(bundled) >= n:
        return bundled[:n]
    split = SHARED / "data" / "grid_s1" / "split.tsv"
    if not split.is_file():
        pytest.skip("no GRID clips (tests/data/grid or ../shared)")
    test_ids = [ln.split("\t")[0] for ln in split.read_text().splitlines()[1:]
                if ln.endswith("\ttest")]
    clips = [SHARED / "data" / "grid_s1" / "video" / f"{c}.mkv" for c in test_ids]
    return [c for c in clips if c.is_file()][:n]


def make_take(clip: Path, path: Path, *, shift: float, rate: float, sr: int, channels: int,
              subtype: str) -> None:
    """The clip's own speech, delayed by ``shift`` s and played ``rate`` times slower."""
    from dubalign.media import read_picture_audio

    y = read_picture_audio(clip)  # mono at ANALYSIS_SR
    src_sr = 16000
    n_out = int((len(y) / src_sr * rate + shift) * sr)
    t = np.arange(n_out) / sr
    src_t = (t - shift) / rate
    x = np.interp(src_t, np.arange(len(y)) / src_sr, y, left=0.0, right=0.0)
    sf.write(path, np.repeat(x[:, None], channels, axis=1), sr, subtype=subtype)


@pytest.mark.slow
@pytest.mark.shared
def test_end_to_end_on_grid_clips(tmp_path):
    clip_a, clip_b = grid_clips(2)
    make_take(clip_a, tmp_path / "a_t1.wav", shift=0.25, rate=1.08, sr=48000, channels=2,
              subtype="PCM_24")
    make_take(clip_a, tmp_path / "a_t2.wav", shift=-0.15, rate=0.95, sr=44100, channels=1,
              subtype="PCM_16")
    make_take(clip_b, tmp_path / "b_t1.wav", shift=0.2, rate=1.0, sr=48000, channels=1,
              subtype="FLOAT")
    cues = write_cues(tmp_path / "cues.csv", [
        ["cue", "take", "picture", "tc_in", "tc_out", "character", "line"],
        # The clip as a cue picture, cut by timecode (file starts at 00:00:00:00 here).
        ["A1", "a_t1.wav;a_t2.wav", str(clip_a), "00:00:00:05", "00:00:02:10", "S1", "bin blue"],
        ["B1", "b_t1.wav", str(clip_b), "", "", "S1", "whole clip"],
        ["C1", "b_t1.wav", str(clip_b), "00:00:01:00", "00:00:0:10", "S1", "bad timecode"],
        ["D1", "nothere.wav", str(clip_b), "", "", "S1", "missing"],
    ])
    out = tmp_path / "out"
    cfg = BatchConfig(cues=cues, out_dir=out, fps=FPS25, handles=0.5, jobs=2,
                      align=AlignConfig(max_shift=0.6))
    result = run_batch(cfg)
    status = {(o.cue.cue_id, t.take): t.status for o in result.outcomes for t in o.takes}
    assert status == {("A1", "a_t1"): "ok", ("A1", "a_t2"): "ok", ("B1", "b_t1"): "ok",
                      ("C1", "b_t1"): "failed", ("D1", "nothere"): "failed"}, [
        t.error for o in result.outcomes for t in o.takes]
    a1 = result.outcomes[0]
    assert sum(t.best for t in a1.takes) == 1
    best = next(t for t in a1.takes if t.best)
    assert best.rank == 1 and best.score == max(t.score for t in a1.takes)
    for name, sr, ch, subtype in [("A1_a_t1", 48000, 2, "PCM_24"), ("A1_a_t2", 44100, 1, "PCM_16"),
                                  ("B1_b_t1", 48000, 1, "FLOAT")]:
        info = sf.info(out / f"{name}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (sr, ch, subtype)
    # A1's region starts 0.5 s before 00:00:00:05 (0.2 s), clipped at the clip's start.
    assert read_bext(out / "A1_a_t1.wav").time_reference == 0
    a2 = sf.info(out / "A1_a_t2.wav")
    assert a2.frames == pytest.approx((2.4 + 0.5) * 44100, abs=2)  # 0 .. 2.4 + 0.5 s handle
    assert "row 4 (cue C1)" in result.outcomes[2].error
    assert "take file not found" in result.outcomes[3].error
    report = json.loads((out / "reports" / "A1.json").read_text())
    assert report["alignments"]["a_t1"]["sample_rate"] == 48000
    assert len(list((out / ".cache").glob("*.npz"))) == 2
    # Resume: the done cues are skipped, the failed ones tried again (and fail again).
    again = run_batch(BatchConfig(**{**cfg.__dict__, "resume": True, "jobs": 1}))
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "failed", "failed"]


# ----------------------------------------------------------------------------- CLI


def test_cli(reel_run, fake_aligner):
    from click.testing import CliRunner

    from dubalign.cli_batch import batch as batch_command

    args = [str(reel_run.cues), "--picture", str(reel_run.picture), "-o", str(reel_run.out_dir),
            "--fps", "25"]
    runner = CliRunner()
    r = runner.invoke(batch_command, args)
    assert r.exit_code == 1, r.output  # the reel ran; some takes failed
    assert "4 cues: 4 takes ok, 3 failed, 0 skipped" in r.output
    assert "failed: row 4 (cue 102): tc_in: bad timecode" in r.output
    r = runner.invoke(batch_command, args)
    assert r.exit_code == 2 and "holds an earlier run" in r.output
    r = runner.invoke(batch_command, [*args, "--resume", "-q"])
    assert r.exit_code == 1 and r.output == ""
    assert read_summary(reel_run.out_dir)[0]["status"] == "skipped"
    r = runner.invoke(batch_command, [*args, "--overwrite", "--map", "cue=Nope"])
    assert r.exit_code == 2
    assert r.output.startswith("dubalign: error: --map cue=Nope: no column 'Nope'")
    r = runner.invoke(batch_command, [*args, "--overwrite", "--fps", "59.94"])
    assert r.exit_code == 2 and "Invalid value for '--fps'" in r.output
