"""Speed: how fast a whole ``dubalign align`` runs against the decode-only floor (issue 15).

The speed picture is made from the bundled GRID clips (``tests/data/grid/video``, 360x288 25 fps):
concatenated, scaled to 720 px high, centred on a 1280x720 black frame and re-timed to 30 fps
(each output frame shows the source frame on screen at that moment), with the clips' own audio
(AAC 48 kHz). The dub is that audio, 0.3 s late, as 48 kHz/24-bit WAV. Any other clips (e.g.
``../shared/data/dev``) can be given instead.

Every ``align`` runs in a fresh process (``python -m dubalign.cli``) and is measured from outside:
wall time, CPU time of the process and all its children (``RUSAGE_CHILDREN``), and peak memory
two ways: the largest single process (``ru_maxrss``) and the whole process tree's resident memory
summed, sampled from /proc every SAMPLE_S. The per-stage table comes from the ``--report``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from dubalign.files import atomic_output, write_text
from dubalign.media import write_audio

SPEED_SIZE = (1280, 720)  # px of the speed picture
SPEED_FPS = 30  # frames per second of the speed picture
SPEED_MIN_S = 20.0  # s: the speed picture is at least this long
DUB_DELAY_S = 0.3  # s: the dub starts this much later than the picture's own speech
DUB_SR = 48000  # Hz of the speed dub
PICTURE_AUDIO_SR = 48000  # Hz of the speed picture's AAC track
SAMPLE_S = 0.05  # s between samples of the process tree's memory
EXAMPLE = Path("examples/grid_bbaf2n")  # the bundled example, relative to the repository root
GRID_VIDEO = Path("tests/data/grid/video")  # bundled clips the speed picture is made from


@dataclass(frozen=True)
class Run:
    """One measured command."""

    wall_s: float
    cpu_s: float  # user + system of the process and every child it waited for
    max_rss_mb: float  # the largest single process
    tree_rss_mb: float  # the whole process tree's resident memory, summed, at its peak
    timings: dict = field(default_factory=dict)  # the report's timings_s
    stderr: str = ""


def make_speed_picture(
    folder: Path, clips: list[Path], *, seconds: float = SPEED_MIN_S, size: tuple[int, int] = SPEED_SIZE,
    fps: int = SPEED_FPS,
) -> tuple[Path, Path]:
    """Concatenate ``clips`` (repeating them if needed) into a picture of at least ``seconds`` s
    at ``size`` and ``fps`` with their audio, and a dub of that audio; cached in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    picture, dub = folder / f"speed_{size[1]}p{fps}.mp4", folder / f"speed_{size[1]}p{fps}_dub.wav"
    if picture.is_file() and dub.is_file():
        return picture, dub
    frames, audio, total = [], [], 0.0
    k = 0
    while total < seconds:
        clip = clips[k % len(clips)]
        k += 1
        times, imgs, y = _read_clip(clip)
        dur = times[-1] + float(np.median(np.diff(times)))
        frames.append((total, times, imgs))
        audio.append(y[: int(round(dur * PICTURE_AUDIO_SR))])
        total += dur
    y = np.concatenate(audio)
    with atomic_output(picture) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.options = {"crf": "20", "preset": "fast"}
        aus = out.add_stream("aac", rate=PICTURE_AUDIO_SR)
        aus.layout = "mono"
        n_out = int(np.floor(total * fps))
        for i in range(n_out):
            t = i / fps
            offset, times, imgs = next(f for f in reversed(frames) if f[0] <= t + 1e-9)
            j = int(np.clip(np.searchsorted(times, t - offset + 1e-6, side="right") - 1, 0, len(imgs) - 1))
            frame = av.VideoFrame.from_ndarray(_letterbox(imgs[j], size), format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        step = 1024
        for s in range(0, len(y), step):
            chunk = y[s:s + step].reshape(1, -1).astype(np.float32)
            af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            af.sample_rate, af.pts = PICTURE_AUDIO_SR, s
            for packet in aus.encode(af):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)
    lead = np.zeros(int(DUB_DELAY_S * DUB_SR), np.float32)
    write_audio(dub, np.concatenate([lead, y])[:, None], DUB_SR, subtype="PCM_24")
    return picture, dub


def _read_clip(path: Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Frame times (s from the first frame), rgb frames and mono audio at PICTURE_AUDIO_SR."""
    times, imgs = [], []
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            times.append(frame.time)
            imgs.append(frame.to_ndarray(format="rgb24"))
    with av.open(str(path)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=PICTURE_AUDIO_SR)
        chunks = [o.to_ndarray().reshape(-1) for f in c.decode(c.streams.audio[0]) for o in rs.resample(f)]
        chunks += [o.to_ndarray().reshape(-1) for o in rs.resample(None)]
    t = np.asarray(times, float)
    return t - t[0], imgs, np.concatenate(chunks)


def _letterbox(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` scaled to fit ``size`` (w, h), centred on black."""
    w, h = size
    scale = min(w / rgb.shape[1], h / rgb.shape[0])
    sw, sh = int(round(rgb.shape[1] * scale)), int(round(rgb.shape[0] * scale))
    canvas = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - sw) // 2, (h - sh) // 2
    canvas[y0:y0 + sh, x0:x0 + sw] = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_LINEAR)
    return canvas


def picture_info(path: Path) -> tuple[float, int, int, float]:
    """(duration s, width, height, fps) of a picture."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return float(c.duration / av.time_base), v.codec_context.width, v.codec_context.height, float(v.average_rate)


def decode_floor(path: Path) -> Run:
    """Decode every video frame (threaded, no conversion): the floor under any analysis."""
    code = (
        "import av, sys\n"
        "with av.open(sys.argv[1]) as c:\n"
        "    s = c.streams.video[0]; s.thread_type = 'AUTO'\n"
        "    n = sum(1 for _ in c.decode(s))\n"
    )
    return measure([sys.executable, "-c", code, str(path)])


def measure(cmd: list[str], *, env: dict | None = None, report: Path | None = None) -> Run:
    """Run ``cmd`` in a fresh process and measure it (see the module docstring)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # from a folder of its own: the current folder would come first on sys.path (before PYTHONPATH)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tempfile.gettempdir())
    peak = [0]
    sampler = threading.Thread(target=_sample_tree, args=(proc, peak), daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {err.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    timings = json.loads(report.read_text())["timings_s"] if report is not None else {}
    # ru_maxrss is the largest of all children waited for so far (KiB on Linux): exact only while
    # every measured process is at least as large as the ones before it, so also sampled directly
    return Run(wall, cpu, after.ru_maxrss / 1024, peak[0] / 2**20, timings, err)


def _sample_tree(proc: subprocess.Popen, peak: list[int]) -> None:
    while proc.poll() is None:
        peak[0] = max(peak[0], _tree_rss(proc.pid))
        time.sleep(SAMPLE_S)


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (Linux /proc; 0 elsewhere)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(d))
            rss[int(d)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def align_cmd(picture: Path, dub: Path, out: Path, report: Path) -> list[str]:
    return [sys.executable, "-m", "dubalign.cli", "align", str(picture), str(dub), "-o", str(out),
            "--report", str(report), "--overwrite"]


def run_speed(
    out: Path, *, clips: list[Path] | None = None, seconds: float = SPEED_MIN_S, repeats: int = 2,
    first_run: bool = True, baseline: Path | None = None, progress=print,
) -> str:
    """Measure everything issue 15 asks for; return the markdown and write it to OUT/speed.md.

    baseline : another copy of the ``dubalign`` package's parent folder (e.g. an export of an older
        commit) whose whole ``align`` is measured in the same run, interleaved with this one's
    """
    root = Path(__file__).resolve().parent.parent
    clips = clips or sorted((root / GRID_VIDEO).glob("*.mkv"))
    source = "bundled GRID clips" if clips[0].parent == root / GRID_VIDEO else f"clips from {clips[0].parent}"
    progress(f"speed: making the {SPEED_SIZE[1]}p{SPEED_FPS} picture from {len(clips)} {source}")
    picture, dub = make_speed_picture(out / "speed", clips, seconds=seconds)
    duration, w, h, fps = picture_info(picture)
    work = Path(tempfile.mkdtemp(prefix="dubalign_speed_"))
    try:
        floor = min((decode_floor(picture) for _ in range(repeats)), key=lambda r: r.wall_s)
        progress(f"speed: decode floor {floor.wall_s:.2f} s")
        runs, before = [], []
        env_before = {**os.environ, "PYTHONPATH": str(baseline)} if baseline is not None else None
        for k in range(repeats):
            if env_before is not None:
                rep = work / f"before{k}.json"
                before.append(measure(align_cmd(picture, dub, work / f"before{k}.wav", rep), env=env_before,
                                      report=rep))
                progress(f"speed: baseline {k + 1}/{repeats}: {before[-1].wall_s:.2f} s wall, "
                         f"{before[-1].cpu_s:.2f} s CPU")
            rep = work / f"long{k}.json"
            runs.append(measure(align_cmd(picture, dub, work / f"long{k}.wav", rep), report=rep))
            progress(f"speed: align {k + 1}/{repeats}: {runs[-1].wall_s:.2f} s wall, {runs[-1].cpu_s:.2f} s CPU")
        ex_pic, ex_dub = root / EXAMPLE / "picture.mkv", root / EXAMPLE / "dub.wav"
        first = None
        if first_run:  # no compiled bytecode of any module: more than a new installation pays
            env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
            rep = work / "first.json"
            first = measure(align_cmd(ex_pic, ex_dub, work / "first.wav", rep), env=env, report=rep)
            progress(f"speed: example, no bytecode cache: {first.wall_s:.2f} s")
        warm = []
        for k in range(repeats + 1):
            rep = work / f"ex{k}.json"
            warm.append(measure(align_cmd(ex_pic, ex_dub, work / f"ex{k}.wav", rep), report=rep))
        warm = warm[1:]  # the first only warms the caches
        progress(f"speed: example warm {min(r.wall_s for r in warm):.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    md = speed_markdown(picture, source, duration, (w, h), fps, floor, runs, first, warm, before)
    write_text(out / "speed.md", md)
    return md


def speed_markdown(
    picture: Path, source: str, duration: float, size: tuple[int, int], fps: float, floor: Run,
    runs: list[Run], first: Run | None, warm: list[Run], before: list[Run] = (),
) -> str:
    best = min(runs, key=lambda r: r.wall_s)
    lines = [
        f"# Speed: {picture.name}, {duration:.1f} s, {size[0]}x{size[1]} {fps:g} fps (from {source})",
        "",
        f"{os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.1f}. Best of {len(runs)} "
        "runs by wall time; CPU = user + system of all processes.",
        "",
        "| what | wall s | real time | CPU s | peak memory (largest process / whole tree) |",
        "|---|---|---|---|---|",
        f"| whole `dubalign align` (fresh process, model load included) | {best.wall_s:.2f} | "
        f"**{duration / best.wall_s:.1f}x** | {best.cpu_s:.2f} | {best.max_rss_mb / 1024:.2f} / "
        f"{best.tree_rss_mb / 1024:.2f} GB |",
        f"| decode only (PyAV, threaded, every frame): the floor | {floor.wall_s:.2f} | "
        f"{duration / floor.wall_s:.1f}x | {floor.cpu_s:.2f} | |",
    ]
    for r in before:
        lines.append(f"| baseline whole `align` (same run) | {r.wall_s:.2f} | {duration / r.wall_s:.1f}x | "
                     f"{r.cpu_s:.2f} | {r.max_rss_mb / 1024:.2f} / {r.tree_rss_mb / 1024:.2f} GB |")
    for r in runs:
        lines.append(f"| (each run) | {r.wall_s:.2f} | {duration / r.wall_s:.1f}x | {r.cpu_s:.2f} | "
                     f"{r.max_rss_mb / 1024:.2f} / {r.tree_rss_mb / 1024:.2f} GB |")
    ex = min(warm, key=lambda r: r.wall_s)
    lines.append(f"| bundled example (3 s), warm | {ex.wall_s:.2f} | {3.0 / ex.wall_s:.1f}x | {ex.cpu_s:.2f} | "
                 f"{ex.max_rss_mb / 1024:.2f} / {ex.tree_rss_mb / 1024:.2f} GB |")
    if first is not None:
        lines.append(f"| bundled example, first run (no bytecode cache) | {first.wall_s:.2f} | | {first.cpu_s:.2f} | |")
    lines += ["", "Stages of the best run (s, from the report; landmarks and decode summed over the lip workers):",
              "", "| stage | s |", "|---|---|"]
    if before:
        base = min(before, key=lambda r: r.wall_s).timings
        lines[-2:] = ["| stage | s | baseline s |", "|---|---|---|"]
        lines += [f"| {k} | {best.timings.get(k, float('nan')):.2f} | {base.get(k, float('nan')):.2f} |"
                  for k in dict.fromkeys([*best.timings, *base])]
    else:
        lines += [f"| {k} | {v:.2f} |" for k, v in best.timings.items()]
    lines += ["", "Stages of the warm example:", "", "| stage | s |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in ex.timings.items()]
    if first is not None and first.stderr.strip():
        lines += ["", "First run's stderr:", "", "```", first.stderr.strip()[-1500:], "```"]
    return "\n".join(lines) + "\n"
