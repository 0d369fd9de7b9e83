"""Measure how exactly each renderer follows a time map, with click trains.

A train of short clicks (2 ms Hann-windowed 3 kHz bursts, one every 0.25 s) at 48 kHz is rendered
through several maps: identity, a constant shift, and smooth random warps like the benchmark's
(local rate 0.72 to 1.38 changing every 0.25 to 0.9 s, smoothed over 80 ms, plus an offset).
Each click is located in the output by the energy centroid of its envelope within +-30 ms of
where the map says it should be (``timemap.to_picture(click_time)``), and the error is reported in
ms, with the wall time per second of audio. Prints a markdown table.

    PYTHONPATH=. python scripts/renderer_timing.py --seconds 20 --warps 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import dubalign.render as render_module
from dubalign.render import render, rubberband_available
from dubalign.timemap import TimeMap

SR = 48000  # Hz: the dub's rate in the benchmark
CLICK_PERIOD_S = 0.25  # one click every quarter second
CLICK_LEN_S = 0.002  # 2 ms bursts
CLICK_FREQ_HZ = 3000.0
SEARCH_S = 0.030  # look for each click within +-30 ms of its expected time
SMOOTH_S = 0.080  # warp smoothing, as in the benchmark
RATE_RANGE = (0.72, 1.38)
SEGMENT_RANGE_S = (0.25, 0.9)
MAP_STEP_S = 0.010  # knot spacing of the generated maps



def click_train(seconds: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Clicks [shape=(n, 1)] float32 and each click's energy centroid (s)."""
    n = int(seconds * sr)
    n_click = int(CLICK_LEN_S * sr)
    t = np.arange(n_click) / sr
    click = np.hanning(n_click) * np.sin(2 * np.pi * CLICK_FREQ_HZ * t) * 0.5
    centroid = np.sum(np.arange(n_click) * click**2) / np.sum(click**2) / sr
    starts = np.arange(CLICK_PERIOD_S / 2, seconds - CLICK_PERIOD_S / 2, CLICK_PERIOD_S)
    y = np.zeros(n)
    for s in starts:
        i = int(round(s * sr))
        y[i : i + n_click] += click
    return y[:, None].astype(np.float32), np.round(starts * sr) / sr + centroid


def random_warp(seconds: float, rng: np.random.Generator, offset: float) -> TimeMap:
    """A smooth monotone map: piecewise-constant local rates, smoothed, integrated, shifted."""
    dub_t = np.arange(0, seconds + MAP_STEP_S, MAP_STEP_S)
    rate = np.empty_like(dub_t)
    i = 0
    while i < len(dub_t):
        n = int(rng.uniform(*SEGMENT_RANGE_S) / MAP_STEP_S)
        rate[i : i + n] = rng.uniform(*RATE_RANGE)
        i += n
    k = int(SMOOTH_S / MAP_STEP_S)
    rate = np.convolve(np.pad(rate, k, mode="edge"), np.ones(k) / k, mode="same")[k:-k]
    pic_t = np.concatenate([[0.0], np.cumsum(rate[:-1] * MAP_STEP_S)]) + offset
    return TimeMap(dub_t=dub_t, pic_t=pic_t)


def locate_onsets(y: np.ndarray, expected: np.ndarray, sr: int) -> np.ndarray:
    """First time (s) the 1 ms envelope near each expected onset reaches a fifth of its peak.

    Catches pre-echo (energy smeared ahead of the click) that the centroid averages away.
    """
    n_smooth = int(0.001 * sr)
    env = np.convolve(y[:, 0].astype(float) ** 2, np.ones(n_smooth) / n_smooth, mode="same")
    half = int(SEARCH_S * sr)
    found = np.full(len(expected), np.nan)
    for j, t in enumerate(expected):
        c = int(round(t * sr))
        lo, hi = max(0, c - half), min(len(env), c + half)
        w = env[lo:hi]
        if hi > lo and w.max() > 1e-8:
            # the smoothing centres the envelope: its rise starts half a window early
            found[j] = (lo + np.argmax(w >= 0.2 * w.max()) + n_smooth / 2) / sr
    return found


def locate(y: np.ndarray, expected: np.ndarray, sr: int) -> np.ndarray:
    """Energy centroid (s) of the output near each expected click time."""
    energy = y[:, 0].astype(float) ** 2
    half = int(SEARCH_S * sr)
    found = np.full(len(expected), np.nan)
    for j, t in enumerate(expected):
        c = int(round(t * sr))
        lo, hi = max(0, c - half), min(len(energy), c + half)
        w = energy[lo:hi]
        if hi > lo and w.sum() > 1e-8:
            found[j] = (lo + np.sum(np.arange(hi - lo) * w) / w.sum()) / sr
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="click train length")
    parser.add_argument("--warps", type=int, default=3, help="number of random warps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    y, clicks = click_train(args.seconds, SR)
    # measure the input with the same locators, so their own bias cancels
    centroid_in = locate(y, clicks, SR)
    onset_in = locate_onsets(y, clicks - CLICK_LEN_S / 2, SR)
    maps = {
        "identity": TimeMap(dub_t=np.array([0.0, 1.0]), pic_t=np.array([0.0, 1.0])),
        "shift +0.37 s": TimeMap(dub_t=np.array([0.0, 1.0]), pic_t=np.array([0.37, 1.37])),
    }
    for w in range(args.warps):
        maps[f"warp {w + 1}"] = random_warp(args.seconds, rng, rng.uniform(-0.5, 0.8))
    # (label, method, rubberband engine flag)
    variants = [("vocoder", "vocoder", None)]
    if rubberband_available():
        variants += [
            ("rubberband R2", "rubberband", "--fast"),
            ("rubberband R3", "rubberband", "--fine"),
        ]

    print(
        "| method | map | clicks found | centroid mean \\|e\\| ms | centroid max \\|e\\| ms "
        "| onset mean \\|e\\| ms | onset max \\|e\\| ms | wall s / audio s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    engine_default = render_module.RUBBERBAND_ENGINE
    for label, method, engine in variants:
        render_module.RUBBERBAND_ENGINE = engine or engine_default
        all_c, all_o, walls = [], [], []
        for name, tm in maps.items():
            exp_c, exp_o = tm.to_picture(centroid_in), tm.to_picture(onset_in)
            n_out = int(np.ceil((tm.to_picture(args.seconds) + 0.5) * SR))
            t0 = time.perf_counter()
            result = render(y, SR, tm, n_out=n_out, method=method)
            out = result.audio
            walls.append((time.perf_counter() - t0) / args.seconds)
            keep = (exp_c > SEARCH_S) & (exp_c < n_out / SR - SEARCH_S)
            # a click not found within +-30 ms counts as a 30 ms error (a floor, not its true error)
            err_c = np.abs(locate(out, exp_c[keep], SR) - exp_c[keep]) * 1000
            err_o = np.abs(locate_onsets(out, exp_o[keep], SR) - exp_o[keep]) * 1000
            found = int(np.sum(np.isfinite(err_c)))
            err_c = np.nan_to_num(err_c, nan=SEARCH_S * 1000)
            err_o = np.nan_to_num(err_o, nan=SEARCH_S * 1000)
            if result.method != "copy":  # the summary is about the stretcher itself
                all_c.append(err_c)
                all_o.append(err_o)
            print(
                f"| {label} ({result.method}) | {name} | {found}/{keep.sum()} | {err_c.mean():.2f}"
                f" | {err_c.max():.2f} | {err_o.mean():.2f} | {err_o.max():.2f} | {walls[-1]:.3f} |"
            )
        c, o = np.concatenate(all_c), np.concatenate(all_o)
        print(
            f"| **{label}** | **all warps** | {c.size} | **{c.mean():.2f}** | **{c.max():.2f}** "
            f"| **{o.mean():.2f}** | **{o.max():.2f}** | **{np.mean(walls):.3f}** |"
        )
    render_module.RUBBERBAND_ENGINE = engine_default


if __name__ == "__main__":
    main()
