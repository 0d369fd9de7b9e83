"""Make the bundled demo: a GRID clip and a dub of its own speech, re-timed by a known warp.

The dub is the clip's own audio played through a smooth random non-linear warp (local rate
0.8 to 1.25, changing every 0.3 to 0.8 s, smoothed over 80 ms) and started ``--offset`` seconds late,
at 48 kHz / 24-bit like a real ADR take. The true map from dub time to picture time is written
beside it, so that ``dubalign align``'s result can be checked against it.

    python scripts/make_example.py tests/data/grid/video/bbaf2n.mkv examples/grid_bbaf2n --seed 0
    dubalign align examples/grid_bbaf2n/picture.mkv examples/grid_bbaf2n/dub.wav -o /tmp/synced.wav

Writes OUT_DIR/picture.mkv (a copy of the clip), OUT_DIR/dub.wav and OUT_DIR/truth.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from dubalign.media import probe_picture, read_picture_audio, write_audio
from dubalign.render import render
from dubalign.timemap import TimeMap
from dubalign.units import ANALYSIS_SR, PATH_RATE

DUB_SR = 48000  # Hz: the dub is delivered like a real ADR take
DUB_SUBTYPE = "PCM_24"
RATE_RANGE = (0.8, 1.25)  # local rate of the dub's performance against the picture (dub s per picture s)
SEGMENT_S = (0.3, 0.8)  # the rate changes every this many seconds
SMOOTH_S = 0.08  # rate changes are smoothed over this long
TAIL_S = 0.2  # silence kept after the warped speech


def random_warp(duration: float, *, offset: float, rng: np.random.Generator) -> TimeMap:
    """A smooth monotone map dub time -> picture time covering picture times [0, duration].

    Picture time 0 plays at dub time ``offset``; between knots (every 1 / PATH_RATE s of picture time)
    the dub runs at a piecewise-constant random rate in RATE_RANGE, smoothed over SMOOTH_S.
    """
    n = int(np.ceil(duration * PATH_RATE)) + 1
    rate = np.empty(n)
    i = 0
    while i < n:
        seg = int(rng.uniform(*SEGMENT_S) * PATH_RATE)
        # uniform in log rate: as many slow-downs as speed-ups
        rate[i : i + seg] = np.exp(rng.uniform(*np.log(RATE_RANGE)))
        i += seg
    k = max(1, int(SMOOTH_S * PATH_RATE))
    padded = np.concatenate([np.full(k, rate[0]), rate, np.full(k, rate[-1])])
    rate = np.convolve(padded, np.ones(k) / k, mode="same")[k:-k]
    pic_t = np.arange(n) / PATH_RATE
    dub_t = offset + np.concatenate([[0.0], np.cumsum(rate[:-1]) / PATH_RATE])
    return TimeMap(dub_t=dub_t, pic_t=pic_t)


def make_example(clip: Path, out_dir: Path, *, seed: int, offset: float) -> dict:
    info = probe_picture(clip)
    speech = read_picture_audio(clip)
    if speech is None:
        raise SystemExit(f"{clip} has no audio track to make a dub from")
    truth = random_warp(info.duration, offset=offset, rng=np.random.default_rng(seed))

    # render() plays its input through a map whose "dub" side is the input: here the input is the
    # picture's own audio and the output is the dub, so it gets the inverse map (picture <- dub).
    source = resample_poly(speech, DUB_SR // np.gcd(DUB_SR, ANALYSIS_SR), ANALYSIS_SR // np.gcd(DUB_SR, ANALYSIS_SR))
    inverse = TimeMap(dub_t=truth.pic_t, pic_t=truth.dub_t)
    n_out = int(round((truth.dub_t[-1] + TAIL_S) * DUB_SR))
    dub = render(source[:, None].astype(np.float32), DUB_SR, inverse, n_out=n_out, method="vocoder")

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, out_dir / "picture.mkv")
    write_audio(out_dir / "dub.wav", dub.audio, DUB_SR, subtype=DUB_SUBTYPE)
    stretch = truth.stretch()
    meta = {
        "source": clip.name,
        "seed": seed,
        "offset_s": offset,
        "rate_range": list(RATE_RANGE),
        "note": "time_map maps dub time (s) to picture time (s); stretch = d(picture)/d(dub)",
        "stretch_range": [round(float(stretch.min()), 4), round(float(stretch.max()), 4)],
        "time_map": truth.to_json(),
    }
    (out_dir / "truth.json").write_text(json.dumps(meta))
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path, help="a GRID clip (picture + its own audio)")
    parser.add_argument("out_dir", type=Path, help="where to write picture.mkv, dub.wav, truth.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random warp")
    parser.add_argument("--offset", type=float, default=0.3, help="s the dub starts late against the picture")
    args = parser.parse_args()
    meta = make_example(args.clip, args.out_dir, seed=args.seed, offset=args.offset)
    print(f"wrote {args.out_dir}: offset {meta['offset_s']} s, stretch {meta['stretch_range']}")


if __name__ == "__main__":
    main()
