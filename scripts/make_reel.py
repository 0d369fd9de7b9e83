"""Build a reel-sized batch run for ``dubalign batch`` from real talking clips.

The reel picture is GRID s1 ``test`` clips laid end to end (25 fps, with their own audio, start
timecode 01:00:00:00); each clip is one cue, cut from the reel by timecode. A few ``dev`` clips
join as cues with a picture of their own (whole file, no timecode). Each cue gets 2 or 3 takes
made from the clip's own speech: a constant offset and a smooth random warp of its timing, at
48 kHz/24-bit. Nothing here goes into the repository (dev clips are evaluation only).

    python scripts/make_reel.py --data ../shared/data --out /work/bench/reel --cues 44
    dubalign batch /work/bench/reel/cues.csv --picture /work/bench/reel/reel.mov --fps 25 \\
        -o /work/bench/reel/out --jobs 2
"""

from __future__ import annotations

import argparse
import csv
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from dubalign.media import read_picture_audio
from dubalign.timecode import frames_to_timecode, parse_rate, timecode_to_frames
from dubalign.units import ANALYSIS_SR

REEL_FPS = 25  # GRID clips are 25 fps
REEL_START = "01:00:00:00"  # the usual first-frame timecode of a reel
TAKE_SR = 48000  # takes are recorded at 48 kHz / 24-bit like real ADR
GAP_S = 0.4  # black + silence between clips on the reel
WARP_SEGMENT_S = (0.3, 0.9)  # a take's local rate changes every this many seconds
WARP_RATE = (0.85, 1.2)  # local rate range of a take against the picture
SHIFT_S = (-0.4, 0.5)  # constant offset range of a take


def grid_test_clips(data: Path) -> list[Path]:
    rows = (data / "grid_s1" / "split.tsv").read_text().splitlines()[1:]
    ids = [r.split("\t")[0] for r in rows if r.endswith("\ttest")]
    return [p for p in (data / "grid_s1" / "video" / f"{i}.mkv" for i in ids) if p.is_file()]


def write_reel(clips: list[Path], out: Path) -> list[tuple[float, float]]:
    """Concatenate ``clips`` (same size, 25 fps) into ``out``; returns each clip's span (s)."""
    spans = []
    with av.open(str(clips[0])) as c:
        v = c.streams.video[0]
        width, height = v.codec_context.width, v.codec_context.height
    with av.open(str(out), "w") as reel:
        vs = reel.add_stream("libx264", rate=REEL_FPS, options={"preset": "veryfast", "crf": "20"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.metadata["timecode"] = REEL_START
        aus = reel.add_stream("pcm_s16le", rate=ANALYSIS_SR, layout="mono")
        n_video, n_audio = 0, 0
        black = np.zeros((height, width, 3), np.uint8)
        for clip in clips:
            start = n_video / REEL_FPS
            with av.open(str(clip)) as c:
                frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            audio = read_picture_audio(clip)
            n_gap = int(round(GAP_S * REEL_FPS))
            pictures = frames + [black] * n_gap
            # Keep picture and sound locked: pad or trim the sound to the clip's frames.
            n_samples = len(pictures) * ANALYSIS_SR // REEL_FPS
            sound = np.zeros(n_samples, np.float32)
            k = min(len(audio), len(frames) * ANALYSIS_SR // REEL_FPS)
            sound[:k] = audio[:k]
            for img in pictures:
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts, f.time_base = n_video, Fraction(1, REEL_FPS)
                for p in vs.encode(f):
                    reel.mux(p)
                n_video += 1
            pcm = (np.clip(sound, -1, 1) * 32767).astype(np.int16)[None, :]
            af = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = ANALYSIS_SR, n_audio, Fraction(1, ANALYSIS_SR)
            for p in aus.encode(af):
                reel.mux(p)
            n_audio += n_samples
            spans.append((start, start + len(frames) / REEL_FPS))
        for s in (vs, aus):
            for p in s.encode():
                reel.mux(p)
    return spans


def warp_take(y: np.ndarray, sr_in: int, rng: np.random.Generator) -> np.ndarray:
    """The speech ``y`` re-timed by a smooth random warp and a constant offset, at TAKE_SR."""
    dur = len(y) / sr_in
    knots_t, t = [0.0], 0.0
    while t < dur:
        t += rng.uniform(*WARP_SEGMENT_S)
        knots_t.append(min(t, dur))
    rates = rng.uniform(*WARP_RATE, size=len(knots_t) - 1)
    out_t = np.concatenate([[0.0], np.cumsum(np.diff(knots_t) * rates)])  # take time of knots
    shift = rng.uniform(*SHIFT_S)
    n_out = int((out_t[-1] + max(shift, 0.0)) * TAKE_SR)
    take_t = np.arange(n_out) / TAKE_SR - max(shift, 0.0)
    src_t = np.interp(take_t, out_t, knots_t, left=-1.0, right=dur + 1.0)
    if shift < 0:  # the take starts early: drop its first |shift| seconds of speech
        src_t = src_t[int(-shift * TAKE_SR):]
    return np.interp(src_t, np.arange(len(y)) / sr_in, y, left=0.0, right=0.0).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared"
                    / "data", help="the shared data folder (grid_s1/, dev/)")
    ap.add_argument("--out", type=Path, default=Path("/work/bench/reel"))
    ap.add_argument("--cues", type=int, default=44, help="GRID cues on the reel")
    ap.add_argument("--dev-cues", type=int, default=4, help="dev clips as cues with own picture")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "takes").mkdir(exist_ok=True)
    clips = grid_test_clips(args.data)[: args.cues]
    spans = write_reel(clips, args.out / "reel.mov")
    rate = parse_rate("25")
    origin = timecode_to_frames(REEL_START, rate)

    rows = [["cue", "take", "picture", "tc_in", "tc_out", "character", "line"]]
    for n, (clip, (t0, t1)) in enumerate(zip(clips, spans, strict=True), start=1):
        y = read_picture_audio(clip)
        takes = []
        for k in range(2 + (n % 3 == 0)):
            path = args.out / "takes" / f"{n:03d}_{clip.stem}_t{k + 1}.wav"
            sf.write(path, warp_take(y, ANALYSIS_SR, rng), TAKE_SR, subtype="PCM_24")
            takes.append(f"takes/{path.name}")
        tc_in = frames_to_timecode(origin + int(round(t0 * REEL_FPS)), rate)
        tc_out = frames_to_timecode(origin + int(round(t1 * REEL_FPS)), rate)
        rows.append([f"{n:03d}", ";".join(takes), "", str(tc_in), str(tc_out), "S1", clip.stem])

    dev = sorted(p for p in (args.data / "dev").iterdir() if p.suffix in (".mp4", ".mpg"))
    for n, clip in enumerate(dev[: args.dev_cues], start=len(clips) + 1):
        y = read_picture_audio(clip)
        path = args.out / "takes" / f"{n:03d}_dev_t1.wav"
        sf.write(path, warp_take(y, ANALYSIS_SR, rng), TAKE_SR, subtype="PCM_24")
        rows.append([f"{n:03d}", f"takes/{path.name}", str(clip), "", "", "dev", clip.stem[:40]])

    with open(args.out / "cues.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    n_takes = sum(len(r[1].split(";")) for r in rows[1:])
    print(f"{len(rows) - 1} cues, {n_takes} takes, reel {spans[-1][1]:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
