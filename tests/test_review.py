"""The review page: every cue a row, text escaped, links relative, sorted by its script in a real browser."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dubalign.batch import CueOutcome, TakeOutcome
from dubalign.cuelist import Cue
from dubalign.files import atomic_outputs
from dubalign.preview import write_preview
from dubalign.review import ReviewRow, ReviewTake, review_html, review_rows, write_review_page

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "grid_bbaf2n" / "picture.mkv"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
WINDOW = (1280, 1400)  # px: a laptop's width, tall enough for the three rows below
BORDER = np.array([0xD8, 0xD8, 0xD8])  # the rule under the header and under every row (CSS --line)


def three_cues() -> list[ReviewRow]:
    """A cue with a low-confidence best take and a failed one, a failed cue, a good cue with a preview."""
    return [
        ReviewRow("101", "partial", (
            ReviewTake("t1", "ok", rank=1, confidence=0.29, max_stretch=1.5, plot="plots/101 t1.png",
                       warnings=("low confidence (0.29): check the sync by eye",)),
            ReviewTake("t2", "failed", error="dub not found: t2.wav"),
        ), character="ANNA", line="<script>alert(1)</script> & more", start_tc="01:00:20:00"),
        ReviewRow("102", "failed", (ReviewTake("t1", "failed", error="no face in the picture"),),
                  character="BOB", line="Nothing here.", start_tc="01:00:30:00", error="no face in the picture"),
        ReviewRow("103", "ok", (
            ReviewTake("take 1", "ok", rank=2, confidence=0.71, max_stretch=1.08, output="103_take 1.wav"),
            ReviewTake("take 2", "ok", rank=1, confidence=0.86, max_stretch=1.17, output="103_take 2.wav",
                       plot="plots/103 #2.png", preview="previews/103 take 2.mp4"),
        ), character="JOHN", line="Bin blue at F two now.", start_tc="01:00:10:00", report="103.json"),
    ]


class Rows(HTMLParser):
    """The cue ids of the table's body rows, in page order, and every link target."""

    def __init__(self):
        super().__init__()
        self.cues: list[str] = []
        self.links: list[str] = []
        self.videos = 0
        self._in_row = self._want_cue = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "cue-row" in (a.get("class") or ""):
            self._in_row, self._want_cue = True, False
        if tag == "td" and self._in_row and a.get("class") == "cue":
            self._want_cue = True
        self.links += [a[k] for k in ("href", "src") if k in a and tag != "script"]
        self.videos += tag == "video"

    def handle_data(self, data):
        if self._want_cue:
            self.cues.append(data)
            self._want_cue = self._in_row = False


def parse(page: str) -> Rows:
    p = Rows()
    p.feed(page)
    return p


def test_page_has_a_row_per_cue_with_text_escaped():
    page = review_html(three_cues(), title="Reel 1 <b>")
    rows = parse(page)
    assert rows.cues == ["101", "102", "103"]
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "<title>Reel 1 &lt;b&gt;</title>" in page
    # links are relative, URL-quoted (a '#' in a file name is not a fragment)
    assert "plots/103%20%232.png" in rows.links and "previews/103%20take%202.mp4" in rows.links
    assert all(not link.startswith(("/", "http")) for link in rows.links)
    assert rows.videos == 1  # a player where a preview exists, none elsewhere
    # takes best first: take 2 (rank 1) before take 1 (rank 2)
    assert page.index('class="take">take 2') < page.index('class="take">take 1')
    assert "<script src" not in page and "<link" not in page  # self-contained


def test_rows_from_batch_outcomes(tmp_path):
    cue = Cue(cue_id="7", row=2, takes=("a.wav", "b.wav"), take_rows=(2, 2), picture=None, tc_in="01:00:00:00",
              tc_out="01:00:03:00", character="ANNA", line="Hello.")
    takes = (
        TakeOutcome(take="a", dub="a.wav", output=str(tmp_path / "out" / "7_a.wav"), status="ok", rank=2,
                    confidence=0.6, max_stretch=1.1, warnings=("w",)),
        TakeOutcome(take="b", dub="b.wav", output=str(tmp_path / "out" / "7_b.wav"), status="ok", best=True,
                    rank=1, confidence=0.8, max_stretch=1.05),
    )
    outcome = CueOutcome(cue=cue, status="ok", takes=takes, best_take="b", report=str(tmp_path / "out" / "7.json"),
                         start_tc="00:59:58:00")
    [row] = review_rows([outcome], tmp_path / "out", plots={("7", "b"): tmp_path / "out" / "plots" / "7_b.png"},
                        previews={("7", "b"): tmp_path / "out" / "7_b.mov"})
    assert (row.cue_id, row.status, row.character, row.line, row.start_tc) == ("7", "ok", "ANNA", "Hello.",
                                                                              "00:59:58:00")
    assert row.report == "7.json"
    assert [t.take for t in row.ranked] == ["b", "a"] and row.best.take == "b"
    assert (row.best.output, row.best.plot, row.best.preview) == ("7_b.wav", "plots/7_b.png", "7_b.mov")
    assert row.takes[0].plot is None and row.takes[0].warnings == ("w",)


def test_page_written_through_atomic_outputs(tmp_path):
    out = tmp_path / "index.html"
    with atomic_outputs(out) as (tmp,):
        write_review_page(tmp, three_cues())
    assert parse(out.read_text(encoding="utf-8")).cues == ["101", "102", "103"]
    write_review_page(out, [])
    assert "No cues." in out.read_text(encoding="utf-8")


def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium to render the page with (apt-get install chromium)")


def run_browser(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--no-first-run", "--mute-audio", f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture
def page(tmp_path) -> Path:
    """The three cues' page with its thumbnails and preview beside it."""
    site = tmp_path / "site"
    (site / "plots").mkdir(parents=True)
    (site / "previews").mkdir()
    gradient = np.linspace(0, 255, 300 * 225 * 3).reshape(225, 300, 3).astype(np.uint8)
    for name in ("101 t1.png", "103 #2.png"):
        Image.fromarray(gradient).save(site / "plots" / name)
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(3 * 48000) / 48000).astype(np.float32)
    write_preview(EXAMPLE, tone[:, None], 48000, site / "previews" / "103 take 2.mp4")
    write_review_page(site / "index.html", three_cues())
    return site / "index.html"


def test_page_sorts_in_a_browser(page, tmp_path):
    """The script ran (the page marks itself ready) and '#sort=-confidence' ordered the rows:
    best confidence first, the cue without one last."""
    exe = browser()
    dom = run_browser(exe, tmp_path / "profile", "--dump-dom", page.as_uri() + "#sort=-confidence").stdout
    assert 'data-ready="yes"' in dom
    assert parse(dom).cues == ["103", "101", "102"]
    assert 'aria-sort="descending"' in dom


def test_page_renders_its_rows_in_a_browser(page, tmp_path):
    """A screenshot shows the table: the rule under the header and one under each of the three rows."""
    exe = browser()
    shot = tmp_path / "shot.png"
    run_browser(exe, tmp_path / "profile", f"--screenshot={shot}", page.as_uri())
    with Image.open(shot) as im:
        assert im.size == WINDOW
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert rgb.std() > 10  # not a blank page
    rule = (np.abs(rgb - BORDER).sum(axis=2) < 6).mean(axis=1) > 0.8  # a grey line across the page
    lines = np.flatnonzero(rule)
    assert len(lines[np.diff(np.r_[-10, lines]) > 1]) == 4
    dark = (rgb.sum(axis=2) < 300).any(axis=1)  # text
    assert dark[lines[0]:lines[-1]].mean() > 0.2  # the rows hold text, not just rules
