"""The benchmark's results: one record per run, the pooled tables, results.md and results.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dubalign.files import atomic_outputs, write_json_to

from .cases import TRACK_ALIASES, TRACKS
from .scoring import ACCEPTABLE_MS, INSYNC_MS, TIGHT_MS, Metrics, pool

TRACK_NOTES = {  # one line per track for the tables (BENCHMARK.md has the protocol)
    "warped": "the clip's own speech re-timed",
    "spliced": "GRID words from other takes, new pauses",
    "fluent": "GRID words from other takes, the picture's own pauses",
    "natural": "another take of the same CREMA-D line",
}


@dataclass(frozen=True)
class RunRecord:
    """One (case, method, condition) result."""

    case: str
    kind: str  # how it is scored: warped or reperformance
    track: str  # one of TRACKS
    method: str
    condition: str
    metrics: Metrics | None
    picture_s: float
    wall_s: float
    decode_s: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class BenchmarkResults:
    """Everything a run measured, plus the pooled tables."""

    records: tuple[RunRecord, ...]
    scores: dict  # (method, condition, track) -> list[Score]
    seed: int
    methods: tuple[str, ...]
    conditions: tuple[str, ...]

    @property
    def tracks(self) -> tuple[str, ...]:
        """The tracks with results, in TRACKS order."""
        return tuple(t for t in TRACKS if any(key[2] == t for key in self.scores))

    def summary(self, method: str, condition: str, track: str) -> Metrics | None:
        """Pooled metrics of one method, condition and track (``reperformance``: the spliced one)."""
        s = self.scores.get((method, condition, TRACK_ALIASES.get(track, track)))
        return pool(s) if s else None

    def speed(self) -> dict[str, dict[str, float]]:
        """Per method: picture seconds, wall seconds, real-time factor, decode-only figures, and
        wall seconds per stage, over every aligned picture."""
        out = {}
        for m in self.methods:
            recs = [r for r in self.records if r.method == m and r.error is None and r.timings]
            if not recs:
                continue
            pic = sum(r.picture_s for r in recs)
            wall = sum(r.wall_s for r in recs)
            dec = sum(r.decode_s or 0.0 for r in recs)
            stages: dict[str, float] = {}
            for r in recs:
                for k, v in r.timings.items():
                    stages[k] = stages.get(k, 0.0) + v
            out[m] = {
                "pictures": len(recs),
                "picture_s": round(pic, 2),
                "wall_s": round(wall, 2),
                "rtf": round(pic / wall, 2) if wall > 0 else float("inf"),
                "first_wall_s": round(recs[0].wall_s, 2),
                "decode_s": round(dec, 3),
                "decode_rtf": round(pic / dec, 1) if dec > 0 else float("inf"),
                "stages_s": {k: round(v, 3) for k, v in stages.items()},
            }
        return out

    def to_json(self) -> dict:
        table = {}
        for m in self.methods:
            for c in self.conditions:
                for t in self.tracks:
                    s = self.summary(m, c, t)
                    if s is not None:
                        table[f"{m}|{c}|{t}"] = asdict(s)
        return _finite(
            {
                "seed": self.seed,
                "tracks": list(self.tracks),
                "protocol": {
                    "insync_ms": INSYNC_MS,
                    "acceptable_ms": ACCEPTABLE_MS,
                    "tight_ms": TIGHT_MS,
                },
                "summary": table,
                "speed": self.speed(),
                "runs": [
                    {
                        **{k: v for k, v in asdict(r).items() if k != "metrics"},
                        "metrics": asdict(r.metrics) if r.metrics else None,
                    }
                    for r in self.records
                ],
            }
        )

    def to_markdown(self) -> str:
        tracks = self.tracks
        cols = [(t, c) for t in tracks for c in self.conditions]
        lines = [
            "# dubalign benchmark",
            "",
            f"seed {self.seed}; in-sync % ({INSYNC_MS[0]:+.0f}..{INSYNC_MS[1]:+.0f} ms, share of speech time)",
            "",
        ]
        n_cases = {t: len({r.case for r in self.records if r.track == t}) for t in tracks}
        lines.append("cases: " + ", ".join(f"{n_cases[t]} {t} ({TRACK_NOTES[t]})" for t in tracks))
        lines += [
            "",
            "| method | " + " | ".join(f"{t} {c}" for t, c in cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for m in self.methods:
            cells = []
            for k, c in cols:
                s = self.summary(m, c, k)
                cells.append("n/a" if s is None else f"{s.insync_pct:.1f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "## All metrics",
            "",
            "| method | track | condition | in-sync % | acceptable % | tight % | "
            "median \\|e\\| ms | p95 \\|e\\| ms | not found % | speech s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in self.methods:
            for k, c in cols:
                s = self.summary(m, c, k)
                if s is not None:
                    lines.append(
                        f"| {m} | {k} | {c} | {s.insync_pct:.1f} | {s.acceptable_pct:.1f} | "
                        f"{s.tight_pct:.1f} | {s.median_abs_ms:.1f} | {s.p95_abs_ms:.1f} | "
                        f"{s.unlocated_pct:.1f} | {s.speech_s:.1f} |"
                    )
        speed = self.speed()
        if speed:
            lines += [
                "",
                "## Speed",
                "",
                "Real-time factor = picture duration / wall time of the whole align (model "
                "loading included, in the first run); decode = PyAV decode of every frame.",
                "",
                "| method | pictures | picture s | align wall s | RTF | first run s | "
                "decode s | decode RTF | stages (s) |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for m, sp in speed.items():
                stages = ", ".join(f"{k} {v:.2f}" for k, v in sp["stages_s"].items())
                lines.append(
                    f"| {m} | {sp['pictures']} | {sp['picture_s']:.1f} | {sp['wall_s']:.1f} | "
                    f"{sp['rtf']:.2f} | {sp['first_wall_s']:.1f} | {sp['decode_s']:.2f} | "
                    f"{sp['decode_rtf']:.0f} | {stages} |"
                )
        failed = [r for r in self.records if r.error]
        if failed:
            lines += ["", "## Failures", ""] + [f"- {r.method} {r.condition} {r.case}: {r.error}" for r in failed]
        return "\n".join(lines) + "\n"


def _finite(obj):
    """JSON has no infinity: |e| percentiles over mostly-lost speech become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_results(results: BenchmarkResults, out_dir: str | Path) -> str:
    """Write ``out_dir``/results.json and results.md (together or not at all); returns the markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = results.to_markdown()
    with atomic_outputs(out_dir / "results.json", out_dir / "results.md") as (tmp_json, tmp_md):
        write_json_to(tmp_json, results.to_json(), indent=1)
        tmp_md.write_text(md, encoding="utf-8")
    return md
