#!/usr/bin/env python3
"""Does run-time adaptation of the lip model (dubalign.adapt) pay? Lips-only and fused in-sync %.

    python /work/shared/eval/make_cases.py /work/shared/data/dev /work/bench/eval_warped \\
        --babble /work/shared/data/lrc_ar
    python scripts/adapt_eval.py --cases /work/bench/eval_warped --scorer /work/shared/eval \\
        --work /work/bench/adapt --conditions reel,own,noisy,mute --adapt layers=temporal,steps=50

Cases are the independent scorer's warped cases (eval/README.md); outputs are scored by its
``score.py`` (imported from --scorer, not copied). Conditions, each without and with adaptation:

- ``reel``: the picture is cut in two at its middle frame. The model adapts on the clean sound of
  the first half (production sound of the same speaker and shot elsewhere in the reel); the dub
  of the second half (the case's dub and reference restricted to it through the case's true map)
  is aligned to the mute second half.
- ``own``: adapts on the line's own clean picture sound, then aligns lips only (an upper bound:
  the adaptation audio is the very line).
- ``noisy``: adapts on the line's own picture sound under babble at -5 dB SNR, then aligns fused
  (the noisy sound as guide) and lips only.
- ``mute``: self-training: a first lips-only alignment; the dub, carried onto the picture through
  its map where confident, adapts the model; then a second alignment.

``--offsets`` adds offset accuracy (scripts/eval_offsets.py's protocol) of the reel condition on
the second halves, with their own clean sound and with the dub carried through the true map.
Picture analyses are cached under WORK/analyses (landmark tracking is the slow part). Torch runs on
one thread (the machine is shared). Adaptation is seeded; one seed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_offsets import CONTEXTS, clip_windows, offset_distances  # noqa: E402

import dubalign.pipeline as align_mod  # noqa: E402
from dubalign import media  # noqa: E402
from dubalign.adapt import AdaptationReport, adapt_from_alignment, adapt_model  # noqa: E402
from dubalign.audio import log_mel, to_analysis  # noqa: E402
from dubalign.lips import LipTrack  # noqa: E402
from dubalign.pipeline import AlignConfig, PictureAnalysis, align_dub, analyze_picture  # noqa: E402
from dubalign.units import ANALYSIS_SR, FEATURE_RATE  # noqa: E402

CONDITIONS = ("reel", "own", "noisy", "mute")


def load_scorer(folder: Path):
    spec = importlib.util.spec_from_file_location("eval_score", folder / "score.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # score.py imports its sibling common.py
    spec.loader.exec_module(mod)
    return mod.score


def parse_adapt(text: str) -> dict:
    """'layers=temporal,steps=30,lr=1e-4' -> keyword arguments of adapt_model."""
    out = {}
    for item in filter(None, text.split(",")):
        k, v = item.split("=")
        if k == "layers":
            out[k] = v
        elif k in ("guard", "augment", "speech_only"):
            out[k] = v.lower() in ("1", "true", "yes")
        else:
            out[k] = int(v) if k in ("steps", "segments", "seed") else float(v)
    return out


def analysis(case: Path, cache: Path) -> tuple[PictureAnalysis, np.ndarray, np.ndarray]:
    """(mute picture analysis, clean picture audio, noisy picture audio), cached."""
    f = cache / f"{case.name}.mute.npz"
    if not f.exists():
        analyze_picture(case / "pic_mute.mkv", AlignConfig(workers=1)).save(f)
        for kind in ("clean", "noisy"):
            np.save(cache / f"{case.name}.{kind}_audio.npy", media.read_picture_audio(case / f"pic_{kind}.mkv"))
    return (PictureAnalysis.load(f), np.load(cache / f"{case.name}.clean_audio.npy"),
            np.load(cache / f"{case.name}.noisy_audio.npy"))


def slice_track(track: LipTrack, t0: float, t1: float) -> LipTrack:
    """The frames in [t0, t1) s, on a clock starting at t0."""
    keep = (track.times >= t0 - 1e-6) & (track.times < t1 - 1e-6)
    return replace(track, times=track.times[keep] - t0, present=track.present[keep], lips=track.lips[keep],
                   blendshapes=track.blendshapes[keep], crops=track.crops[keep])


def truth_map(case: Path) -> tuple[np.ndarray, np.ndarray]:
    t = json.loads((case / "truth.json").read_text())
    return np.asarray(t["pic_t"], float), np.asarray(t["dub_t"], float)


def dub_mel_on_picture(dub_y16: np.ndarray, pic_t: np.ndarray, dub_t: np.ndarray, t0: float, n: int) -> np.ndarray:
    """The dub's log-mel carried onto picture frames t0 + k / FEATURE_RATE through the true map."""
    mel = log_mel(dub_y16)
    d = np.interp(t0 + np.arange(n) / FEATURE_RATE, pic_t, dub_t)
    return mel[np.clip(np.round(d * FEATURE_RATE).astype(int), 0, len(mel) - 1)]


def offset_acc(model, track: LipTrack, mel: np.ndarray) -> dict[int, np.ndarray]:
    """Per-window correctness at each context (eval_offsets.py's protocol)."""
    v = model.embed_video(track)
    a = model.embed_audio(mel)
    fps = 1.0 / float(np.median(np.diff(track.times)))
    dist, ok = offset_distances(v, a, track.times, fps)
    return {c: np.abs(clip_windows(dist, ok, track.present, c)) <= 1 for c in CONTEXTS}


class Runner:
    """Aligns with a given model injected in place of dubalign.pipeline.load_lip_model, and scores."""

    def __init__(self, score, out_dir: Path):
        self.score, self.out_dir = score, out_dir
        self.original = align_mod.load_lip_model

    def run(self, model, picture: PictureAnalysis, dub: media.DubAudio, ref: Path, name: str,
            guide: str = "off"):
        align_mod.load_lip_model = lambda *_a, **_k: model
        try:
            result = align_dub(picture, dub, AlignConfig(guide=guide))
        finally:
            align_mod.load_lip_model = self.original
        out = self.out_dir / f"{name}.wav"
        sf.write(out, result.audio, result.sr, subtype="PCM_24")
        return result, self.score(str(out), str(ref))


def half_case(case: Path, picture: PictureAnalysis, dub: media.DubAudio, work: Path):
    """The reel condition's second half: (picture B, dub B, reference B path, cut time s)."""
    times = picture.track.times
    cut = float(times[np.argmin(np.abs(times - picture.duration / 2))])
    pic_t, dub_t = truth_map(case)
    d0 = float(np.interp(cut, pic_t, dub_t))
    samples = dub.samples[int(round(d0 * dub.sr)):]
    dub_b = replace(dub, samples=samples, path=f"{dub.path}[{d0:.3f}:]")
    ref_y, ref_sr = sf.read(case / "ref.wav", dtype="float32")
    ref_b = work / "refs" / f"{case.name}.B.wav"
    sf.write(ref_b, ref_y[int(round(cut * ref_sr)):], ref_sr, subtype="PCM_24")
    pic_b = replace(picture, start=cut, duration=picture.duration - cut,
                    track=slice_track(picture.track, cut, picture.duration + 1.0), audio=None)
    return pic_b, dub_b, ref_b, cut, d0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=Path, required=True, help="warped cases from eval/make_cases.py")
    ap.add_argument("--scorer", type=Path, required=True, help="the eval/ folder holding score.py")
    ap.add_argument("--work", type=Path, required=True, help="cache, outputs and results go here")
    ap.add_argument("--conditions", default="reel,noisy,mute")
    ap.add_argument("--adapt", action="append", default=None,
                    help="adapt_model keywords, e.g. layers=temporal,steps=30,lr=1e-4 (repeatable)")
    ap.add_argument("--offsets", action="store_true", help="offset accuracy of the reel condition")
    ap.add_argument("--no-align", action="store_true", help="skip alignments (offsets only)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--tag", default="run", help="name of the results file")
    args = ap.parse_args()
    conditions = [c for c in args.conditions.split(",") if c]
    if any(c not in CONDITIONS for c in conditions):
        ap.error(f"conditions are among {CONDITIONS}")
    settings = [parse_adapt(a) for a in (args.adapt or ["layers=temporal"])]

    import torch

    torch.set_num_threads(1)
    for d in ("analyses", "out", "refs"):
        (args.work / d).mkdir(parents=True, exist_ok=True)
    score = load_scorer(args.scorer)
    runner = Runner(score, args.work / "out")
    base = align_mod.load_lip_model()
    cases = sorted(p for p in args.cases.iterdir() if (p / "truth.json").exists())[: args.limit or None]
    rows = []
    for case in cases:
        picture, clean, noisy = analysis(case, args.work / "analyses")
        dub = media.read_dub(case / "dub.wav")
        dub_y16 = to_analysis(dub.samples, dub.sr)
        row = {"case": case.name}
        mute = replace(picture, audio=None)
        if "reel" in conditions:
            pic_b, dub_b, ref_b, cut, d0 = half_case(case, picture, dub, args.work)
            half_a = slice_track(picture.track, 0.0, cut)
            audio_a = clean[: int(round(cut * ANALYSIS_SR))]
            if args.offsets:
                own_b = log_mel(clean[int(round(cut * ANALYSIS_SR)):])
                pic_t, dub_t = truth_map(case)
                dubmel_b = dub_mel_on_picture(dub_y16, pic_t, dub_t, cut, len(own_b))
                row["offsets_base"] = {"own": offset_acc(base, pic_b.track, own_b),
                                       "dub": offset_acc(base, pic_b.track, dubmel_b)}
            if not args.no_align:
                row["reel_base"] = runner.run(base, pic_b, dub_b, ref_b, f"{case.name}.reel.base")[1]
            for i, s in enumerate(settings):
                m, rep = adapt_model(base, half_a, audio_a, **s)
                row[f"reel_adapt{i}_report"] = rep.to_json()
                if args.offsets:
                    row[f"offsets_adapt{i}"] = {"own": offset_acc(m, pic_b.track, own_b),
                                                "dub": offset_acc(m, pic_b.track, dubmel_b)}
                if not args.no_align:
                    row[f"reel_adapt{i}"] = (row["reel_base"] if m is base else
                                             runner.run(m, pic_b, dub_b, ref_b, f"{case.name}.reel.a{i}")[1])
        need_mute_base = any(c in conditions for c in ("own", "noisy", "mute")) and not args.no_align
        if need_mute_base:
            first, row["mute_base"] = runner.run(base, mute, dub, case / "ref.wav", f"{case.name}.mute.base")
        if "noisy" in conditions and not args.no_align:
            pic_noisy = replace(picture, audio=noisy)
            row["noisy_fused_base"] = runner.run(base, pic_noisy, dub, case / "ref.wav",
                                                 f"{case.name}.noisy.base", guide="auto")[1]
        for i, s in enumerate(settings):
            if args.no_align:
                break
            if "own" in conditions:
                m, rep = adapt_model(base, picture.track, clean, **s)
                row[f"own_adapt{i}_report"] = rep.to_json()
                row[f"own_adapt{i}"] = row["mute_base"] if m is base else runner.run(
                    m, mute, dub, case / "ref.wav", f"{case.name}.own.a{i}")[1]
            if "noisy" in conditions:
                m, rep = adapt_model(base, picture.track, noisy, **s)
                row[f"noisy_adapt{i}_report"] = rep.to_json()
                if m is base:
                    row[f"noisy_fused_adapt{i}"] = row["noisy_fused_base"]
                    row[f"noisy_lips_adapt{i}"] = row["mute_base"]
                else:
                    row[f"noisy_fused_adapt{i}"] = runner.run(m, replace(picture, audio=noisy), dub, case / "ref.wav",
                                                              f"{case.name}.noisy.a{i}", guide="auto")[1]
                    row[f"noisy_lips_adapt{i}"] = runner.run(m, mute, dub, case / "ref.wav",
                                                             f"{case.name}.noisylips.a{i}")[1]
            if "mute" in conditions:
                m, rep = adapt_from_alignment(base, picture.track, dub_y16, first.timemap, first.confidence,
                                              duration=picture.duration, aim_s=align_mod.LIPS_ONLY_AIM_S, **s)
                row[f"mute_adapt{i}_report"] = rep.to_json()
                row[f"mute_adapt{i}"] = row["mute_base"] if m is base else runner.run(
                    m, mute, dub, case / "ref.wav", f"{case.name}.mute.a{i}")[1]
        rows.append(row)
        print(case.name[:40], json.dumps({k: (v.get("insync_pct") if isinstance(v, dict) and "n" in v else None)
                                          for k, v in row.items() if isinstance(v, dict) and "n" in v}), flush=True)
    summary = summarise(rows, settings)
    out = args.work / f"results_{args.tag}.json"
    out.write_text(json.dumps({"settings": settings, "summary": summary, "cases": rows}, indent=1,
                              default=_json_default))
    print(json.dumps(summary, indent=1))


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.astype(int).tolist()
    if isinstance(o, AdaptationReport):
        return o.to_json()
    raise TypeError(type(o))


def pooled(scores: list[dict]) -> float:
    rows = [s for s in scores if s.get("n")]
    w = np.array([s["n"] for s in rows], float)
    return round(float(np.average([s["insync_pct"] for s in rows], weights=w)), 1) if rows else float("nan")


def summarise(rows: list[dict], settings: list[dict]) -> dict:
    """Pooled in-sync % per condition and setting, clips better / worse, adaptation CPU seconds."""
    pairs = {"reel": ("reel_base", "reel_adapt{}", "reel_adapt{}_report"),
             "own": ("mute_base", "own_adapt{}", "own_adapt{}_report"),
             "noisy fused": ("noisy_fused_base", "noisy_fused_adapt{}", "noisy_adapt{}_report"),
             "noisy lips": ("mute_base", "noisy_lips_adapt{}", "noisy_adapt{}_report"),
             "mute self-training": ("mute_base", "mute_adapt{}", "mute_adapt{}_report")}
    out = {}
    for cond, (b, a, r) in pairs.items():
        for i in range(len(settings)):
            have = [x for x in rows if b in x and a.format(i) in x]
            if not have:
                continue
            base = [x[b] for x in have]
            adapted = [x[a.format(i)] for x in have]
            delta = np.array([y.get("insync_pct", 0) - x.get("insync_pct", 0)
                              for x, y in zip(base, adapted, strict=True)])
            reps = [x[r.format(i)] for x in have]
            out[f"{cond} / setting {i}"] = {
                "cases": len(have), "base": pooled(base), "adapted": pooled(adapted),
                "better": int((delta > 0.5).sum()), "worse": int((delta < -0.5).sum()),
                "kept": int(sum(x["kept"] for x in reps)), "ran": int(sum(x["ran"] for x in reps)),
                "adapt_cpu_s_mean": round(float(np.mean([x["cpu_seconds"] for x in reps])), 2),
                "adapt_cpu_s_max": round(float(np.max([x["cpu_seconds"] for x in reps])), 2),
            }
    for key in ("offsets_base", *(f"offsets_adapt{i}" for i in range(len(settings)))):
        have = [x[key] for x in rows if key in x]
        if have:
            out[key] = {f"{audio} ctx{c}": round(100 * float(np.mean(np.concatenate([h[audio][c] for h in have]))), 1)
                        for audio in ("own", "dub") for c in CONTEXTS}
    return out


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"{time.time() - t0:.0f} s", file=sys.stderr)
