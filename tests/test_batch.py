"""Batch ADR: cue list, planning, ranking, outputs, resume, Ctrl-C, the CLI.

Reading and planning run on small generated files. Everything downstream runs the real aligner:
one module-scoped reel (the bundled 3 s clip examples/grid_bbaf2n as the reel picture, two real
takes, a take too long to align, a missing take, a bad timecode; plots asked for one cue, a
preview and tightness 0 for another) is aligned once and the tests read its outputs and review
page, or copy its OUTDIR to resume or interrupt it.
"""

import csv
import dataclasses
import html
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import av
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dubalign.batch import (
    BatchConfig,
    BatchInterrupted,
    load_or_analyze,
    max_stretch,
    parse_column_map,
    plan_batch,
    previous_outcome,
    rank_takes,
    read_cue_list,
    run_batch,
    safe_name,
    take_score,
)
from dubalign.bwf import read_bext
from dubalign.cli_batch import batch as batch_command
from dubalign.cuelist import SYNONYMS, Controls, parse_controls, parse_protect, parse_sync_points
from dubalign.errors import DubalignError, MediaError, ParameterError
from dubalign.files import TEMP_MARK
from dubalign.pipeline import AlignConfig, AlignmentResult, PictureAnalysis, align_dub
from dubalign.plan import TakeJob
from dubalign.takes import analysis_key, take_config
from dubalign.timecode import Timecode, parse_rate
from dubalign.timemap import TimeMap

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "examples" / "grid_bbaf2n"
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


def write_take(path: Path, rng, *, sr: int = 48000, seconds: float = 1.0) -> Path:
    sf.write(path, 0.1 * rng.standard_normal(int(sr * seconds)), sr, subtype="PCM_24")
    return path


def read_summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def temp_files(folder: Path) -> list[Path]:
    return list(folder.rglob(f"*{TEMP_MARK}*"))


# ----------------------------------------------------------------------------- cue list


def test_header_synonyms_and_merged_rows(tmp_path):
    p = write_cues(tmp_path / "c.csv", [
        ["Cue", "Dub", "Video", "Start", "End", "Role", "Dialogue", "Notes"],
        ["12A", "a.wav| sub/b.wav", "reel.mov", "01:00:00:00", "01:00:02:00", "ANNA", "Hi", "x"],
        ["", "", "", "", "", "", "", ""],
        ["12A", "c.wav;d.wav", "", "", "", "", "", ""],
        ["13", "/abs/d.wav", "", "01:00:03:00", "01:00:04:00", "", "", ""],
    ])
    cl = read_cue_list(p)
    assert dict(cl.columns) == {"cue": "Cue", "take": "Dub", "picture": "Video", "tc_in": "Start",
                                "tc_out": "End", "character": "Role", "line": "Dialogue"}
    assert cl.delimiter == "," and cl.warnings == ()
    a, b = cl.cues
    assert a.cue_id == "12A" and a.row == 2 and a.error is None
    assert a.takes == tuple(str(tmp_path / n) for n in ("a.wav", "sub/b.wav", "c.wav", "d.wav"))
    assert a.take_rows == (2, 2, 4, 4)
    assert a.picture == str(tmp_path / "reel.mov") and a.character == "ANNA" and a.line == "Hi"
    assert b.row == 5 and b.takes == ("/abs/d.wav",) and b.picture is None


@pytest.mark.parametrize(("delimiter", "suffix", "takes"), [
    ("\t", ".tsv", "a.wav;b.wav"), ("\t", ".txt", "a.wav|b.wav"),
    (";", ".csv", "a.wav|b.wav"),  # the documented separator when ';' is the delimiter
    (";", ".csv", "a.wav;b.wav"),  # a quoted cell, as a spreadsheet saves it
    ("|", ".csv", "a.wav;b.wav"), (",", ".csv", "a.wav;b.wav"),
])
def test_delimiter_from_header_and_take_separators(tmp_path, delimiter, suffix, takes):
    # Drop-frame timecode and take lists contain ';': the header decides, not the data rows.
    p = write_cues(tmp_path / f"c{suffix}", [
        ["id", "take", "tc_in", "tc_out"], ["1", takes, "00:01:00;02", "00:01:02;00"],
    ], delimiter)
    cl = read_cue_list(p)
    (cue,) = cl.cues
    assert cl.delimiter == delimiter
    assert cue.error is None and cue.takes == (str(tmp_path / "a.wav"), str(tmp_path / "b.wav"))
    assert cue.tc_in == "00:01:00;02"


def test_unquoted_take_list_that_clashes_with_the_delimiter_is_reported(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id;take;tc_in;tc_out\n1;a.wav;c.wav;01:00:00:00;01:00:01:00\n2;b.wav;01:00:00:00;01:00:01:00\n")
    one, two = read_cue_list(p).cues
    assert one.error == ("row 2 (cue 1): 1 more cell(s) than the header has columns: quote a cell that holds "
                         "';', and separate takes with '|'")
    assert two.error is None


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
    else:
        with pytest.raises(MediaError, match="cannot read the cue list"):
            read_cue_list(xlsx)


def test_header_only_list_warns(tmp_path):
    p = write_cues(tmp_path / "c.csv", [["cue", "take"], ["", ""]])
    cl = read_cue_list(p)
    assert cl.cues == ()
    assert cl.warnings == (f"the cue list {p} has a header but no cues: nothing to do",)
    seen = []
    result = run_batch(BatchConfig(cues=p, out_dir=tmp_path / "out"), hook=lambda stage, v: seen.append((stage, v)))
    assert seen == [("warning", cl.warnings[0]), ("plan", ())]
    assert result.outcomes == () and result.warnings == cl.warnings
    assert read_summary(tmp_path / "out") == []


def test_row_problems_name_the_row_to_fix(tmp_path):
    p = write_cues(tmp_path / "c.csv", [
        ["cue", "take", "tc_in"],
        ["1", "", "01:00:00:00"],  # row 2
        ["2", "a.wav", ""],  # row 3: cue 2 starts without a timecode ...
        ["2", "b.wav", "01:00:05:00"],  # row 4: ... which comes here
        ["2", "c.wav", "01:00:06:00"],  # row 5: contradicts row 4, not row 3
        ["3", "c.wav|d.wav", ""],  # row 6
        ["3", "d.wav", ""],  # row 7: the same take again
        ["4", "e.wav", ""],
    ])
    one, two, three, four = read_cue_list(p).cues
    assert one.error == "row 2 (cue 1): no take file given"
    assert two.error == ("row 5 (cue 2): tc_in '01:00:06:00' differs from '01:00:05:00' given for the same cue "
                         "on row 4")
    assert three.error == "row 7 (cue 3): take d.wav is listed again (first on row 6): remove one"
    assert three.takes == (str(tmp_path / "c.wav"), str(tmp_path / "d.wav"))
    assert four.error is None


def test_control_columns_apply_to_the_takes_on_their_row(tmp_path):
    p = write_cues(tmp_path / "c.csv", [
        ["cue", "take", "Sync Points", "protect", "tight", "min_stretch", "max_stretch", "plot", "preview"],
        ["1", "a.wav|b.wav", "1.2=01:00:03:10, 0.5=1.25", "0.2-0.6 1.0-1.3", "0.5", "", "1.2", "yes", ""],
        ["1", "c.wav", "", "", "0", "0.8", "", "no", "Y"],
        ["2", "d.wav", "", "", "", "", "", "", ""],
    ])
    cl = read_cue_list(p)
    assert dict(cl.columns)["sync_points"] == "Sync Points" and dict(cl.columns)["tightness"] == "tight"
    one, two = cl.cues
    assert one.error is None and len(one.take_controls) == 3
    ab = Controls(sync_points=((0.5, 1.25), (1.2, Timecode(1, 0, 3, 10, False))), protect=((0.2, 0.6), (1.0, 1.3)),
                  tightness=0.5, max_stretch=1.2, plot=True)
    assert one.controls(0) == one.controls(1) == ab
    assert one.controls(2) == Controls(tightness=0.0, min_stretch=0.8, plot=False, preview=True)
    assert two.controls(0) == Controls() and Controls().align_changes() == {}
    # what reaches the aligner once planning has put the sync points in region seconds
    planned = dataclasses.replace(ab, sync_points=((0.5, 1.25), (1.2, 2.4)))
    assert planned.align_changes() == {"sync_points": ((0.5, 1.25), (1.2, 2.4)), "protect": ((0.2, 0.6), (1.0, 1.3)),
                                       "tightness": 0.5, "max_stretch": 1.2}
    assert parse_sync_points("") == () and parse_protect(" ") == ()
    assert parse_controls({"tightness": "1", "plot": "  "}) == Controls(tightness=1.0)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("sync_points", "0.5", "sync point '0.5' needs the form DUB_S=PICTURE_S or DUB_S=HH:MM:SS:FF"),
    ("sync_points", "0.5=soon", "sync point '0.5=soon': 'soon' is neither seconds nor a timecode HH:MM:SS:FF"),
    ("sync_points", "0.5=01:00:61:00", "sync point '0.5=01:00:61:00': '01:00:61:00' is neither seconds nor a "
                                       "timecode HH:MM:SS:FF"),
    ("protect", "0.6-0.2", "protect span '0.6-0.2' ends before it starts"),
    ("protect", "0.2-0.6 0.5-0.9", "protect span '0.5-0.9' overlaps or precedes the span before it"),
    ("protect", "0.2", "protect span '0.2' needs the form START-END in dub seconds, e.g. 0.2-0.6"),
    ("tightness", "1.5", "tightness '1.5' must lie between 0 (one shift) and 1 (free warp)"),
    ("tightness", "-0.1", "tightness '-0.1' must be a number >= 0"),
    ("max_stretch", "fast", "max_stretch 'fast' is not a number"),
    ("plot", "maybe", "plot 'maybe' must be yes or no"),
])
def test_bad_control_values_fail_their_cue_naming_the_row(tmp_path, column, value, message):
    p = write_cues(tmp_path / "c.csv", [["cue", "take", column], ["1", "a.wav", ""], ["2", "b.wav", value]])
    one, two = read_cue_list(p).cues
    assert one.error is None
    assert two.error == f"row 3 (cue 2): {message}"


def test_controls_without_a_take_are_refused(tmp_path):
    p = write_cues(tmp_path / "c.csv", [["cue", "take", "tightness"], ["1", "a.wav", ""], ["1", "", "0.5"]])
    (cue,) = read_cue_list(p).cues
    assert cue.error == "row 3 (cue 1): tightness given without a take: controls apply to the takes on their row"


def test_take_config_applies_the_rows_controls():
    base = AlignConfig(max_shift=0.8)
    take = TakeJob(take="a", dub="a.wav", output="a_out.wav", row=2)
    assert take_config(base, take) is base
    controls = Controls(sync_points=((0.5, 1.2),), protect=((0.1, 0.3),), tightness=0.0, max_stretch=1.2)
    cfg = take_config(base, dataclasses.replace(take, controls=controls))
    assert (cfg.sync_points, cfg.protect, cfg.tightness, cfg.max_stretch) == (((0.5, 1.2),), ((0.1, 0.3),), 0.0, 1.2)
    assert cfg.max_shift == 0.8 and cfg.min_stretch == base.min_stretch
    # a value the cue list accepts but the aligner does not (with the batch's other settings) is refused
    with pytest.raises(ParameterError, match="--min-stretch"):
        take_config(base, dataclasses.replace(take, controls=Controls(min_stretch=1.2)))


def test_control_the_aligner_refuses_fails_the_take_in_one_line(tmp_path, reel, rng):
    write_take(tmp_path / "a.wav", rng)
    write_take(tmp_path / "b.wav", rng)
    cues = write_cues(tmp_path / "c.csv", [["cue", "take", "tc_in", "tc_out", "min_stretch", "protect"],
                                           ["1", "a.wav", "01:00:01:00", "01:00:02:00", "1.2", ""],
                                           ["2", "b.wav", "01:00:01:00", "01:00:02:00", "", "0.5-0.2"]])
    r = CliRunner().invoke(batch_command, [str(cues), "--picture", str(reel), "--fps", "25",
                                           "-o", str(tmp_path / "o")])
    assert r.exit_code == 1
    failed = [line for line in r.output.splitlines() if line.startswith("failed: ")]
    assert failed[0].startswith("failed: row 2 (cue 1) take a: --min-stretch (the fastest the dub may play")
    assert failed[1] == "failed: row 3 (cue 2): protect span '0.5-0.2' ends before it starts"
    assert not list((tmp_path / "o" / ".cache").glob("*.npz"))  # refused before any picture analysis


def test_safe_name():
    assert safe_name("12A/b c:d") == "12A_b_c_d"
    assert safe_name("..") == "_"
    assert safe_name("../../etc/passwd") == "etc_passwd"
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
                      template="{cue}-{index:02d}-{take}.wav")
    j1, j2, j3, j4, j5, j6 = plan_batch(read_cue_list(p), cfg)
    assert j1.error is None and (j1.start, j1.end) == pytest.approx((1.0, 5.48))
    assert j1.start_tc == "01:00:01:00" and j1.origin_s == pytest.approx(3601.0)
    assert j1.takes[0].output == str(tmp_path / "out" / "1-01-a.wav")
    assert (j2.start, j2.end) == pytest.approx((0.0, 10.0))
    assert j2.takes[0].error is None
    assert j2.takes[1].error == f"row 3 (cue 2) take gone: take file not found: {tmp_path / 'gone.wav'}"
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
        cues=p, out_dir=tmp_path / "o", picture=reel, fps=parse_rate("24"), reel_start="00:00:00:00"))
    assert job.warnings == ("the picture reel.mov runs at 25.000 fps but --fps is 24: timecodes will land on the "
                            "wrong frames",)


def test_plan_sync_points_in_region_seconds_and_review_files(tmp_path, reel, rng):
    write_take(tmp_path / "a.wav", rng)
    write_take(tmp_path / "b.wav", rng)
    own = make_picture(tmp_path / "own.mov", 2.0)
    p = write_cues(tmp_path / "c.csv", [
        ["cue", "take", "picture", "tc_in", "tc_out", "sync_points", "plot", "preview"],
        # region 01:00:01:00 (tc_in less 1 s of handles) .. 5.48 s: 01:00:02:05 is 1.2 s into it
        ["1", "a.wav", "", "01:00:02:00", "01:00:04:12", "0.5=01:00:02:05 1.0=2.5", "", "yes"],
        ["1", "b.wav", "", "", "", "", "no", ""],
        ["2", "a.wav", "", "01:00:02:00", "01:00:04:12", "0.5=01:00:09:00", "", ""],
        ["3", "a.wav", "", "01:00:02:00", "01:00:04:12", "0.5=4.6", "", ""],
        ["4", "a.wav", str(own), "", "", "0.5=1.5", "", ""],  # the whole 2 s picture
    ])
    cl = read_cue_list(p)
    out = tmp_path / "out"
    j1, j2, j3, j4 = plan_batch(cl, BatchConfig(cues=p, out_dir=out, picture=reel, fps=FPS25, plots=True))
    assert j1.error is None and j1.fps == FPS25
    a, b = j1.takes
    assert a.controls.sync_points == ((0.5, 1.2), (1.0, 2.5))  # to the microsecond, as regions are
    assert (a.plot, a.preview) == (str(out / "review" / "1_a.png"), str(out / "review" / "1_a.mp4"))
    assert (b.plot, b.preview) == (None, None)  # its row says no plot; --previews is off
    assert j2.error == ("row 4 (cue 2): sync point 0.5=01:00:09:00 lies outside the cue's picture region (0 to "
                        "4.48 s from its start, 01:00:01:00)")
    assert j3.error.startswith("row 5 (cue 3): sync point 0.5=4.6 lies outside")
    assert j4.error is None and j4.takes[0].controls.sync_points == ((0.5, 1.5),)
    # without --fps a timecode cannot become region seconds
    p2 = write_cues(tmp_path / "c2.csv", [["cue", "take", "picture", "sync_points"],
                                          ["5", "a.wav", str(own), "0.5=00:00:01:00"]])
    (j5,) = plan_batch(read_cue_list(p2), BatchConfig(cues=p2, out_dir=out))
    assert j5.error == "row 2 (cue 5): sync point 0.5=00:00:01:00: a timecode needs the frame rate: give --fps"
    # cue 'x_y' take 'z' and cue 'x' take 'y_z' would share review/x_y_z.png (outputs in folders do not)
    write_take(tmp_path / "y_z.wav", rng)
    write_take(tmp_path / "z.wav", rng)
    p3 = write_cues(tmp_path / "c3.csv", [["cue", "take", "picture"], ["x_y", "z.wav", str(own)],
                                          ["x", "y_z.wav", str(own)]])
    k1, k2 = plan_batch(read_cue_list(p3), BatchConfig(cues=p3, out_dir=out, plots=True, template="{cue}/{take}.wav"))
    assert (Path(k1.takes[0].plot).name, Path(k2.takes[0].plot).name) == ("x_y_z.png", "x_y_z_2.png")


def test_plan_template_errors(tmp_path, reel, rng):
    write_take(tmp_path / "a.wav", rng)
    (tmp_path / "x").mkdir()
    write_take(tmp_path / "x" / "a.wav", rng)
    p = write_cues(tmp_path / "c.csv", [["cue", "take", "tc_in", "tc_out"],
                                        ["1", "a.wav;x/a.wav", "01:00:01:00", "01:00:02:00"],
                                        ["2", "a.wav", "01:00:03:00", "01:00:04:00"]])
    cl = read_cue_list(p)

    def cfg(template):
        return BatchConfig(cues=p, out_dir=tmp_path / "o", picture=reel, fps=FPS25, template=template)

    # Two takes named 'a' in one cue get distinct names, so the default template still works.
    (j1, j2) = plan_batch(cl, cfg("{cue}_{take}.wav"))
    assert [t.take for t in j1.takes] == ["a", "a_2"]
    with pytest.raises(ParameterError, match=r"names row 2 \(cue 1\) take a and row 3 \(cue 2\) take a both a.wav"):
        plan_batch(cl, cfg("{take}.wav"))
    with pytest.raises(ParameterError, match=r"row 2 \(cue 1\) take a: the output .* would overwrite a take of the"):
        # cue 1's first take, a.wav, would land on its second, x/a.wav
        plan_batch(cl, BatchConfig(cues=p, out_dir=tmp_path / "x", picture=reel, fps=FPS25, template="{take}.wav"))
    with pytest.raises(ParameterError, match="is not a field"):
        plan_batch(cl, cfg("{scene}.wav"))
    with pytest.raises(ParameterError, match=r"\{cue.__class__\} is not a field"):
        plan_batch(cl, cfg("{cue.__class__}.wav"))
    with pytest.raises(ParameterError, match="must end in .wav"):
        plan_batch(cl, cfg("{cue}_{index}.flac"))


@pytest.mark.parametrize("template", ["../{cue}_{take}.wav", "/tmp/{cue}.wav", "a/../../{cue}.wav"])
def test_template_out_of_outdir_is_refused(tmp_path, reel, rng, template):
    write_take(tmp_path / "a.wav", rng)
    p = write_cues(tmp_path / "c.csv", [["cue", "take", "tc_in", "tc_out"],
                                        ["1", "a.wav", "01:00:01:00", "01:00:02:00"]])
    with pytest.raises(ParameterError, match="must give a relative path inside OUTDIR"):
        plan_batch(read_cue_list(p), BatchConfig(cues=p, out_dir=tmp_path / "o", picture=reel, fps=FPS25,
                                                 template=template))
    r = CliRunner().invoke(batch_command, [str(p), "--picture", str(reel), "--fps", "25", "-o", str(tmp_path / "o"),
                                           "--template", template])
    assert r.exit_code == 2
    assert r.output == f"dubalign: error: --template {template!r} must give a relative path inside OUTDIR\n"
    assert not (tmp_path / "o").exists()


def test_cue_names_cannot_leave_outdir(tmp_path, reel, rng):
    write_take(tmp_path / "a.wav", rng)
    p = write_cues(tmp_path / "c.csv", [
        ["cue", "take", "tc_in", "tc_out", "character"],
        ["../../evil", "a.wav", "01:00:01:00", "01:00:02:00", ""],
        ["/tmp/evil", "a.wav", "01:00:01:00", "01:00:02:00", ""],
        ["7", "a.wav", "01:00:01:00", "01:00:02:00", "../../BOB"],
    ])
    out = tmp_path / "deep" / "out"
    cfg = BatchConfig(cues=p, out_dir=out, picture=reel, fps=FPS25, template="{character}/{cue}_{take}.wav")
    up, absolute, bob = plan_batch(read_cue_list(p), cfg)
    assert up.error == "row 2 (cue ../../evil): the cue id '../../evil' reads as a path out of OUTDIR: rename the cue"
    assert absolute.error.startswith("row 3 (cue /tmp/evil): the cue id '/tmp/evil' reads as a path")
    assert bob.error is None and bob.takes[0].output == str(out / "BOB" / "7_a.wav")
    for job in (up, absolute, bob):
        assert Path(job.report).parent == out / "reports"
        assert all(Path(t.output).is_relative_to(out) for t in job.takes)


# ----------------------------------------------------------------------------- one real reel


REEL_ROWS = [
    ["cue", "take", "tc_in", "tc_out", "character", "line", "plot", "preview", "tightness"],
    ["101", "t1.wav|t2.wav", "01:00:00:15", "01:00:02:20", "ANNA", "Bin blue at F two now", "yes", "", ""],
    ["102", "t1.wav", "01:00:0x:00", "01:00:02:00", "BEN", "broken timecode", "", "", ""],
    ["103", "missing.wav;t1.wav", "01:00:00:15", "01:00:02:20", "ANNA", "the same region", "", "yes", "0"],
    ["104", "long.wav", "01:00:00:15", "01:00:02:20", "BEN", "a take far longer than the picture", "", "", ""],
]
# 101's region: tc_in 0.6 s - 0.4 s handle = 0.2 s .. tc_out 2.8 s + 0.4 s, clipped to the clip's 3.0 s
REGION = (0.2, 3.0)


def reel_config(folder: Path, out_dir: Path, **kw) -> BatchConfig:
    return BatchConfig(cues=folder / "cues.csv", out_dir=out_dir, picture=CLIP / "picture.mkv", fps=FPS25,
                       reel_start="01:00:00:00", handles=0.4, **kw)


@pytest.fixture(scope="module")
def reel_run(tmp_path_factory):
    """The reel above, aligned once: (config, result, events)."""
    folder = tmp_path_factory.mktemp("reel")
    y, sr = sf.read(CLIP / "dub.wav", dtype="float32")
    shutil.copy(CLIP / "dub.wav", folder / "t1.wav")  # 48 kHz mono 24-bit
    t = np.arange(int(len(y) / sr * 44100)) / 44100
    stereo = np.interp(t, np.arange(len(y)) / sr, y)
    sf.write(folder / "t2.wav", np.stack([stereo, -0.5 * stereo], axis=1), 44100, subtype="PCM_16")
    sf.write(folder / "long.wav", np.tile(y, 4), sr, subtype="FLOAT")  # 14.7 s for a 2.8 s region
    write_cues(folder / "cues.csv", REEL_ROWS)
    config = reel_config(folder, folder / "out")
    events = []
    result = run_batch(config, hook=lambda stage, value: events.append((stage, value)))
    return config, result, events


def test_reel_outcomes_and_ranking(reel_run):
    config, result, events = reel_run
    assert [stage for stage, _ in events] == ["plan"] + ["cue"] * 4
    assert [v.cue.cue_id for stage, v in events if stage == "cue"] == ["102", "101", "103", "104"]
    status = {(o.cue.cue_id, t.take): t.status for o in result.outcomes for t in o.takes}
    assert status == {("101", "t1"): "ok", ("101", "t2"): "ok", ("102", "t1"): "failed",
                      ("103", "missing"): "failed", ("103", "t1"): "ok", ("104", "long"): "failed"}, [
        t.error for o in result.outcomes for t in o.takes]
    assert result.counts == {"ok": 3, "failed": 3}
    c101, c102, c103, c104 = result.outcomes
    assert (c101.status, c102.status, c103.status, c104.status) == ("ok", "failed", "partial", "failed")
    assert c102.error.startswith("row 3 (cue 102): tc_in: bad timecode")
    assert c103.takes[0].error.startswith("row 4 (cue 103) take missing: take file not found")
    assert c104.error.startswith("row 5 (cue 104) take long: the dub (14.7 s) is much longer than the picture")
    # The best take is the one with the highest score, and the ranks follow the scores.
    assert c101.best_take in ("t1", "t2") and sum(t.best for t in c101.takes) == 1
    by_rank = sorted(c101.takes, key=lambda t: t.rank)
    assert by_rank[0].best and by_rank[0].take == c101.best_take
    assert by_rank[0].score >= by_rank[1].score
    # max_stretch is the speech stretch of the alignment in the report, not the whole map's.
    report = json.loads(Path(c101.report).read_text())
    for t in c101.takes:
        lo, hi = report["alignments"][t.take]["stretch_range"]
        assert t.max_stretch == pytest.approx(max(hi, 1 / lo), abs=2e-3) and t.max_stretch < 1.5
        assert t.confidence == pytest.approx(report["alignments"][t.take]["overall_confidence"], abs=1e-3)
        assert t.score == pytest.approx(take_score(t.confidence, t.max_stretch))


def test_reel_outputs_are_stamped_broadcast_wavs(reel_run):
    config, result, _ = reel_run
    out = config.out_dir
    start, end = REGION
    for name, sr, ch, subtype in [("101_t1", 48000, 1, "PCM_24"), ("101_t2", 44100, 2, "PCM_16"),
                                  ("103_t1", 48000, 1, "PCM_24")]:
        info = sf.info(out / f"{name}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (sr, ch, subtype)
        assert info.frames == round((end - start) * sr)
        bext = read_bext(out / f"{name}.wav")
        assert bext.time_reference == round((3600 + start) * sr)  # 01:00:00:05 in samples since midnight
        assert bext.originator == "dubalign"
        cue, take = name.split("_")
        best = next(o for o in result.outcomes if o.cue.cue_id == cue).best_take == take
        assert bext.description == f"cue {cue} take {take}{' [best]' if best else ''} - ANNA: " + (
            "Bin blue at F two now" if cue == "101" else "the same region")
    assert not (out / "102_t1.wav").exists() and not (out / "104_long.wav").exists()
    report = json.loads((out / "reports" / "101.json").read_text())
    assert report["region"] == {"start": start, "end": end, "start_tc": "01:00:00:05", "origin_s": 3600 + start}
    assert report["cue"]["character"] == "ANNA" and report["status"] == "ok"
    assert report["alignments"]["t2"]["sample_rate"] == 44100
    assert json.loads((out / "reports" / "102.json").read_text())["status"] == "failed"
    # 101, 103 and 104 share the region: the picture was analysed once.
    assert len(list((out / ".cache").glob("*.npz"))) == 1
    assert not temp_files(out)


def test_reel_summary(reel_run):
    config, result, _ = reel_run
    rows = read_summary(config.out_dir)
    assert [(r["cue"], r["take"], r["status"]) for r in rows] == [
        ("101", "t1", "ok"), ("101", "t2", "ok"), ("102", "t1", "failed"), ("103", "missing", "failed"),
        ("103", "t1", "ok"), ("104", "long", "failed")]
    for r, t in zip(rows, [t for o in result.outcomes for t in o.takes], strict=True):
        assert r["max_stretch"] == ("" if t.max_stretch is None else f"{t.max_stretch:.3f}")
        assert r["best"] == ("yes" if t.best else "")
    assert all(r["row"] == "2" and r["start_tc"] == "01:00:00:05" for r in rows[:2])
    summary = json.loads((config.out_dir / "summary.json").read_text())
    assert [c["status"] for c in summary["cues"]] == ["ok", "failed", "partial", "failed"]
    assert summary["interrupted"] is False and summary["counts"] == {"ok": 3, "failed": 3}


def test_reel_review_page_lists_every_cue_and_links_its_files(reel_run):
    config, result, _ = reel_run
    out = config.out_dir
    assert result.review_page == str(out / "index.html")
    page = (out / "index.html").read_text(encoding="utf-8")
    cues = [html.unescape(c) for c in re.findall(r'<td class="cue" data-sort="([^"]*)"', page)]
    assert cues == ["101", "102", "103", "104"]
    assert "dubalign review: cues.csv" in page
    links = {unquote(html.unescape(a)) for a in re.findall(r'(?:href|src)="([^"]+)"', page)}
    for link in links:
        assert (out / link).is_file(), link
    # the plots asked for (cue 101's takes) and the preview (cue 103's aligned take), no others
    review = {"review/101_t1.png", "review/101_t2.png", "review/103_t1.mp4"}
    assert {p.relative_to(out).as_posix() for p in (out / "review").iterdir()} == review
    assert review <= links
    plots = {(o.cue.cue_id, t.take): (t.plot, t.preview) for o in result.outcomes for t in o.takes}
    assert plots[("101", "t1")] == (str(out / "review" / "101_t1.png"), None)
    assert plots[("103", "t1")] == (None, str(out / "review" / "103_t1.mp4"))
    assert plots[("102", "t1")] == plots[("104", "long")] == (None, None)
    from PIL import Image

    with Image.open(out / "review" / "101_t1.png") as im:
        assert im.format == "PNG" and im.size == (1000, 750)
    with av.open(str(out / "review" / "103_t1.mp4")) as c:  # the region, re-encoded, with the aligned take
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
        assert float(c.duration / av.time_base) == pytest.approx(REGION[1] - REGION[0], abs=0.1)
    rows = {(r["cue"], r["take"]): r for r in read_summary(out)}
    assert rows[("101", "t2")]["plot"] == str(out / "review" / "101_t2.png")
    assert rows[("103", "t1")]["preview"] == str(out / "review" / "103_t1.mp4")


def test_tightness_from_the_cue_list_reaches_the_aligner(reel_run):
    config, _, _ = reel_run
    # cue 103 aligns the same take on the same region as cue 101, with tightness 0 from its row
    report = json.loads((config.out_dir / "reports" / "103.json").read_text())
    assert report["requests"][1]["controls"]["tightness"] == 0.0
    shifted = report["alignments"]["t1"]["time_map"]
    offset = np.subtract(shifted["pic_t"], shifted["dub_t"])
    assert np.ptp(offset) < 3e-4  # one shift: picture time = dub time + a constant
    assert report["alignments"]["t1"]["stretch_range"] == [1.0, 1.0]
    # the dub is warped against the picture (0.8x .. 1.25x), so without the control the map is not one shift
    free = json.loads((config.out_dir / "reports" / "101.json").read_text())["alignments"]["t1"]["time_map"]
    assert np.ptp(np.subtract(free["pic_t"], free["dub_t"])) > 0.05


# ----------------------------------------------------------------------------- ranking (real results)


@pytest.fixture(scope="module")
def real_result(reel_run) -> AlignmentResult:
    """Take t1 of cue 101 aligned again, on the reel's cached picture analysis."""
    config, _, _ = reel_run
    job = plan_batch(read_cue_list(config.cues), config)[0]
    return align_dub(load_or_analyze(job, config.align, config.out_dir / ".cache"), job.takes[0].dub)


def test_max_stretch_reads_the_speech_not_the_pauses(real_result, reel_run):
    lo, hi = real_result.stretch_range
    assert max_stretch(real_result) == pytest.approx(max(hi, 1 / lo))
    assert reel_run[1].outcomes[0].takes[0].max_stretch == pytest.approx(max_stretch(real_result))  # the summary's
    assert 1.0 <= max_stretch(real_result) < 1.5  # the aligner's default limits, speech only
    # A pause stretched 20x (as between the lines of a reel cue) must not count: the summary
    # showed 20.000 for every take when it read the whole map.
    tm = real_result.timemap
    paused = TimeMap(np.r_[tm.dub_t, tm.dub_t[-1] + 0.05], np.r_[tm.pic_t, tm.pic_t[-1] + 1.0])
    assert paused.stretch().max() == pytest.approx(20.0)
    assert max_stretch(dataclasses.replace(real_result, timemap=paused)) == max_stretch(real_result)


def test_take_score_prefers_confidence_then_less_stretch():
    assert take_score(0.8, 1.0) > take_score(0.6, 1.0)
    assert take_score(0.8, 1.0) > take_score(0.8, 1.4)
    assert take_score(0.8, 1.5) == pytest.approx(0.8 - 0.25 * np.log(1.5))


def test_rank_takes(real_result):
    def take(conf, stretch_range):
        return dataclasses.replace(real_result, overall_confidence=conf, stretch_range=stretch_range)

    ranked = rank_takes({"warped": take(0.9, (0.95, 1.5)), "weak": take(0.4, (1.0, 1.0)),
                         "good": take(0.9, (0.95, 1.05)), "squeezed": take(0.9, (0.6, 1.0)),
                         "twin": take(0.9, (0.95, 1.05))})
    # equal confidence: less stretch (either way) wins, ties keep the list's order; low confidence last
    assert ranked == ["good", "twin", "warped", "squeezed", "weak"]
    assert rank_takes({}) == []


@pytest.fixture
def reel_again(reel_run, tmp_path):
    """The reel's config, for a test that runs it again; its cue list and OUTDIR are put back
    afterwards. (A copy elsewhere would not do: reports name their files by absolute path.)"""
    config, _, _ = reel_run
    saved = tmp_path / "saved"
    shutil.copytree(config.out_dir, saved)
    cues = config.cues.read_bytes()
    yield config
    shutil.rmtree(config.out_dir)
    shutil.copytree(saved, config.out_dir)
    config.cues.write_bytes(cues)


def test_resume_skips_done_cues_only(reel_again):
    out = reel_again.out_dir
    stamp = (out / "reports" / "101.json").stat().st_mtime_ns
    ran = []
    result = run_batch(dataclasses.replace(reel_again, resume=True),
                       hook=lambda stage, v: ran.append((v.cue.cue_id, v.status)) if stage == "cue" else None)
    assert ran == [("101", "skipped"), ("102", "failed"), ("103", "partial"), ("104", "failed")]
    assert (out / "reports" / "101.json").stat().st_mtime_ns == stamp
    c101 = result.outcomes[0]
    assert c101.best_take in ("t1", "t2") and all(t.max_stretch is not None for t in c101.takes)
    rows = read_summary(out)
    assert {r["status"] for r in rows if r["cue"] == "101"} == {"skipped"}
    assert next(r for r in rows if r["cue"] == "101" and r["take"] == c101.best_take)["best"] == "yes"
    assert {t.plot for t in c101.takes} == {str(out / "review" / "101_t1.png"), str(out / "review" / "101_t2.png")}
    assert "review/101_t1.png" in (out / "index.html").read_text(encoding="utf-8")  # the page still links them
    # A deleted output makes its cue due again; another region, other controls or a plot asked for now too.
    job = plan_batch(read_cue_list(reel_again.cues), reel_again)[0]
    assert previous_outcome(job) is not None
    assert previous_outcome(dataclasses.replace(job, end=2.9)) is None
    looser = dataclasses.replace(job.takes[0], controls=Controls(tightness=0.5))
    assert previous_outcome(dataclasses.replace(job, takes=(looser, job.takes[1]))) is None
    previewed = plan_batch(read_cue_list(reel_again.cues), dataclasses.replace(reel_again, previews=True))[0]
    assert previewed.takes[0].preview is not None and previous_outcome(previewed) is None
    (out / "review" / "101_t2.png").unlink()
    assert previous_outcome(job) is None
    no_plots = plan_batch(read_cue_list(reel_again.cues), reel_again)[0]
    unplotted = tuple(dataclasses.replace(t, plot=None) for t in no_plots.takes)
    resumed = previous_outcome(dataclasses.replace(no_plots, takes=unplotted))  # not asked for now: no matter
    assert resumed is not None and [t.plot for t in resumed.takes] == [str(out / "review" / "101_t1.png"), None]
    (out / "101_t2.wav").unlink()
    assert previous_outcome(dataclasses.replace(no_plots, takes=unplotted)) is None


def test_ctrl_c_writes_summary_and_leaves_no_temp_files(reel_run, tmp_path):
    out = tmp_path / "out"

    def interrupt(stage, value):
        if stage == "cue":  # the first cue to end is 102 (failed while planning)
            (out / f".101_t1.wav.x{TEMP_MARK}").write_bytes(b"half")  # as a killed write leaves it
            raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as e:
        run_batch(dataclasses.replace(reel_run[0], out_dir=out), hook=interrupt)
    result = e.value.result
    assert result.interrupted
    assert [o.status for o in result.outcomes] == ["skipped", "failed", "skipped", "skipped"]
    assert "interrupted" in result.outcomes[0].error
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True
    assert "interrupted: the cues marked skipped did not run" in (out / "index.html").read_text(encoding="utf-8")
    assert not temp_files(out)
    assert not list(out.glob("*.wav"))


# ----------------------------------------------------------------------------- picture cache


def test_analysis_key_follows_what_the_analysis_reads(tmp_path):
    pic = tmp_path / "p.mkv"
    shutil.copy(CLIP / "picture.mkv", pic)
    key = analysis_key(str(pic), 0.2, 3.0, AlignConfig())
    # settings that act after the analysis do not invalidate it
    assert analysis_key(str(pic), 0.2, 3.0, AlignConfig(max_shift=0.5, renderer="vocoder", guide="off",
                                                        min_stretch=0.8, max_stretch=1.2)) == key
    assert analysis_key(str(pic), 0.2, 2.9, AlignConfig()) != key
    assert analysis_key(str(pic), None, None, AlignConfig()) != key
    assert analysis_key(str(pic), 0.2, 3.0, AlignConfig(workers=2)) != key
    os.utime(pic, ns=(0, 0))  # the picture changed on disk
    assert analysis_key(str(pic), 0.2, 3.0, AlignConfig()) != key


def test_load_or_analyze_reuses_and_repairs(reel_run, tmp_path):
    config, result, _ = reel_run
    job = plan_batch(read_cue_list(config.cues), config)[0]
    cache = config.out_dir / ".cache"
    (entry,) = cache.glob("*.npz")
    stamp = entry.stat().st_mtime_ns
    pic = load_or_analyze(job, AlignConfig(max_shift=0.5, renderer="vocoder"), cache)
    assert isinstance(pic, PictureAnalysis) and (pic.start, pic.duration) == pytest.approx((0.2, 2.8))
    assert list(cache.glob("*.npz")) == [entry] and entry.stat().st_mtime_ns == stamp
    # A small new region is analysed and stored; a damaged entry is analysed again.
    small = dataclasses.replace(job, start=1.0, end=1.2)
    fresh = tmp_path / "cache"
    a = load_or_analyze(small, AlignConfig(), fresh)
    (stored,) = fresh.glob("*.npz")
    b = load_or_analyze(small, AlignConfig(), fresh)
    np.testing.assert_array_equal(a.track.lips, b.track.lips)
    stored.write_bytes(b"junk")
    c = load_or_analyze(small, AlignConfig(), fresh)
    np.testing.assert_array_equal(a.track.lips, c.track.lips)
    assert PictureAnalysis.load(stored).duration == pytest.approx(0.2)
    assert not temp_files(fresh)


# ----------------------------------------------------------------------------- CLI


def test_cli_help_lists_columns_and_an_example():
    r = CliRunner().invoke(batch_command, ["--help"])
    assert r.exit_code == 0
    for field in ("cue", "take", "picture", "tc_in", "tc_out", "character", "line"):
        assert f"\n    {field} " in r.output
    assert "101,101_t1.wav|101_t2.wav,01:00:02:00,01:00:04:12,ANNA,Where were you?" in r.output
    for synonym in ("id", "dub", "file", "video", "start", "end", "role", "dialogue"):
        assert synonym in sum(SYNONYMS.values(), ()) and synonym in r.output


def test_cli_help_lists_the_controls_with_an_example():
    r = CliRunner().invoke(batch_command, ["--help"])
    for field in ("sync_points", "protect", "tightness", "min_stretch", "max_stretch", "plot", "preview"):
        assert f"\n    {field} " in r.output
    assert "101,101_t2.wav,01:00:02:00,01:00:04:12,0.35=01:00:02:05 1.9=2.9,0.8-1.1,,yes" in r.output
    assert "--plots" in r.output and "--previews" in r.output and "index.html" in r.output


def test_cli_plots_and_previews_reach_the_config(tmp_path, monkeypatch):
    import dubalign.cli_batch as cli_batch

    seen = []

    def fake_run(config, hook=None):
        seen.append(config)
        raise DubalignError("stop here")

    monkeypatch.setattr(cli_batch, "run_batch", fake_run)
    cues = write_cues(tmp_path / "c.csv", [["cue", "take"], ["1", "a.wav"]])
    runner = CliRunner()
    r = runner.invoke(batch_command, [str(cues), "-o", str(tmp_path / "o"), "--plots", "--previews"])
    assert r.exit_code == 2 and r.output == "dubalign: error: stop here\n"
    r = runner.invoke(batch_command, [str(cues), "-o", str(tmp_path / "o")])
    assert [(c.plots, c.previews) for c in seen] == [(True, True), (False, False)]


def test_cli_on_the_reel(reel_again):
    # 101 is done, 102 and 104 fail without aligning anything: a resume that costs nothing
    write_cues(reel_again.cues, [REEL_ROWS[i] for i in (0, 1, 2, 4)])
    args = [str(reel_again.cues), "--picture", str(reel_again.picture), "-o", str(reel_again.out_dir), "--fps", "25",
            "--reel-start", "01:00:00:00", "--handles", "0.4"]
    runner = CliRunner()
    r = runner.invoke(batch_command, args)
    assert r.exit_code == 2 and "holds an earlier run" in r.output
    r = runner.invoke(batch_command, [*args, "--resume"])
    assert r.exit_code == 1, r.output  # the reel ran; some takes failed
    assert "3 cues: 0 takes ok, 2 failed, 2 skipped" in r.output
    assert "failed: row 3 (cue 102): tc_in: bad timecode" in r.output
    assert "failed: row 4 (cue 104) take long: the dub (14.7 s) is much longer" in r.output
    r = runner.invoke(batch_command, [*args, "--resume", "-q"])
    assert r.exit_code == 1 and r.output == ""
    r = runner.invoke(batch_command, [*args, "--overwrite", "--map", "cue=Nope"])
    assert r.exit_code == 2
    assert r.output.startswith("dubalign: error: --map cue=Nope: no column 'Nope'")
    r = runner.invoke(batch_command, [*args, "--overwrite", "--fps", "59.94"])
    assert r.exit_code == 2 and "Invalid value for '--fps'" in r.output


def test_cli_warnings_reach_the_console(tmp_path):
    runner = CliRunner()
    empty = write_cues(tmp_path / "empty.csv", [["cue", "take"]])
    r = runner.invoke(batch_command, [str(empty), "-o", str(tmp_path / "o1")])
    assert r.exit_code == 0
    assert r.output.startswith(f"warning: the cue list {empty} has a header but no cues: nothing to do\n")
    # A cue at 24 fps on a 25 fps picture: the mismatch is said on the console, once per picture.
    shutil.copy(CLIP / "dub.wav", tmp_path / "t.wav")
    cues = write_cues(tmp_path / "c.csv", [["cue", "take", "tc_in", "tc_out"],
                                           ["1", "t.wav", "00:00:05:00", "00:00:06:00"],
                                           ["2", "t.wav", "00:00:07:00", "00:00:08:00"]])
    r = runner.invoke(batch_command, [str(cues), "--picture", str(CLIP / "picture.mkv"), "--fps", "24",
                                      "-o", str(tmp_path / "o2")])
    assert r.exit_code == 1  # both cues lie outside the 3 s picture
    assert r.output.count("warning: the picture picture.mkv runs at 25.000 fps but --fps is 24") == 1
    assert "runs at 25.000 fps" in read_summary(tmp_path / "o2")[0]["warnings"]  # and in the summary
    r = runner.invoke(batch_command, [str(cues), "--picture", str(CLIP / "picture.mkv"), "--fps", "24",
                                      "-o", str(tmp_path / "o3"), "-q"])
    assert r.exit_code == 1 and r.output == ""


# ----------------------------------------------------------------------------- worker pool


@pytest.mark.slow
def test_pool_runs_cues_in_workers(tmp_path):
    """jobs=2: cues on their own pictures (the clip, whole and cut by timecode) in spawned workers."""
    shutil.copy(CLIP / "dub.wav", tmp_path / "a.wav")
    cues = write_cues(tmp_path / "cues.csv", [
        ["cue", "take", "picture", "tc_in", "tc_out"],
        ["A1", "a.wav", str(CLIP / "picture.mkv"), "00:00:01:00", "00:00:02:00"],
        ["B1", "a.wav", str(CLIP / "picture.mkv"), "", ""],
        ["C1", "nothere.wav", str(CLIP / "picture.mkv"), "", ""],
    ])
    out = tmp_path / "out"
    result = run_batch(BatchConfig(cues=cues, out_dir=out, fps=FPS25, handles=0.5, jobs=2,
                                   align=AlignConfig(workers=1)))
    assert [o.status for o in result.outcomes] == ["ok", "ok", "failed"], [o.error for o in result.outcomes]
    assert "take file not found" in result.outcomes[2].error
    # A1: 1.0 .. 2.0 s plus 0.5 s handles; B1: the whole 3 s clip, which starts at 00:00:00:00
    assert (sf.info(out / "A1_a.wav").frames, read_bext(out / "A1_a.wav").time_reference) == (96000, 24000)
    assert (sf.info(out / "B1_a.wav").frames, read_bext(out / "B1_a.wav").time_reference) == (144000, 0)
    assert len(list((out / ".cache").glob("*.npz"))) == 2
    assert not temp_files(out)


def test_cli_adapts_the_lip_model_for_the_whole_reel(tmp_path):
    from fractions import Fraction

    from helpers import grid_clip, reencode

    shutil.copy(CLIP / "dub.wav", tmp_path / "t.wav")
    cues = write_cues(tmp_path / "c.csv", [["cue", "take", "picture"], ["1", "t.wav", str(CLIP / "picture.mkv")]])
    runner = CliRunner()
    r = runner.invoke(batch_command, [str(cues), "-o", str(tmp_path / "out"), "-q",
                                      "--adapt-from", str(grid_clip("bbas3a"))])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "reports" / "1.json").read_text())
    adaptation = report["alignments"]["t"]["adaptation"]
    assert adaptation["picture"].endswith("bbas3a.mkv") and isinstance(adaptation["kept"], bool)
    # a picture without sound is refused before any cue runs
    silent = reencode(grid_clip(), tmp_path / "silent.mkv", Fraction(25))
    r = runner.invoke(batch_command, [str(cues), "-o", str(tmp_path / "out2"), "--adapt-from", str(silent)])
    assert r.exit_code != 0 and r.output.count("\n") == 1
    assert r.output.startswith("dubalign: error: --adapt-from:") and "no audio track" in r.output
    assert not (tmp_path / "out2" / "reports").exists()
