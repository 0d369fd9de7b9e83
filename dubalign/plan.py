"""Planning a reel: each :class:`~dubalign.cuelist.Cue` becomes a :class:`CueJob`.

A job knows its picture region (timecode in/out plus handles, clipped to the picture, in seconds
from the picture's first frame), where the region sits on the day's clock (for the Broadcast
WAV ``TimeReference``), the output files of each take (the WAV, and the sync plot and preview
when asked for), each take's controls with their sync points in region seconds, and any problem
found so far. A problem of
one cue (bad timecode, missing file) is stored in its job and fails that cue alone; a problem of
the whole run (a bad ``--template``, two takes given the same output) raises.
"""

from __future__ import annotations

import dataclasses
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

from .cuelist import Controls, Cue, CueList
from .errors import DubalignError, MediaError, ParameterError
from .media import PictureInfo, probe_picture
from .pipeline import AlignConfig
from .timecode import FrameRate, Timecode, parse_rate, parse_timecode, seconds_to_timecode, timecode_to_seconds

DEFAULT_TEMPLATE = "{cue}_{take}.wav"
TEMPLATE_FIELDS = ("cue", "take", "index", "character", "row")  # index, row: integers (e.g. {index:02d})
DEFAULT_HANDLES = 1.0  # seconds of picture kept either side of the cue's timecode range
REPORT_DIR = "reports"  # under OUTDIR: one JSON per cue
REVIEW_DIR = "review"  # under OUTDIR: sync plots and previews, {cue}_{take}.png / .mp4
PLOT_SUFFIX = ".png"
PREVIEW_SUFFIX = ".mp4"  # H.264 + AAC: plays in every browser, so in the review page
FPS_MISMATCH = 0.01  # frames/s: a picture whose stored rate differs more from --fps is flagged
_FILE_RATES = ("23.976", "24", "25", "29.97ndf", "30")  # rates a picture's own timecode may run at

_SAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BatchConfig:
    """Everything a batch run needs; the CLI builds it from its options."""

    cues: Path  # the cue list (CSV, TSV, XLSX)
    out_dir: Path  # outputs, reports, summary, .cache
    align: AlignConfig = AlignConfig()  # the aligner's settings
    picture: Path | None = None  # the reel picture, for cues without their own picture
    fps: FrameRate | None = None  # timecode rate; required whenever a cue uses timecode
    column_map: tuple[tuple[str, str], ...] = ()  # (field, header) pairs overriding detection
    template: str = DEFAULT_TEMPLATE  # output file name, relative to out_dir
    handles: float = DEFAULT_HANDLES  # seconds of picture kept either side of tc_in/tc_out
    jobs: int = 1  # worker processes; 1 runs in this process
    resume: bool = False  # skip cues whose report and outputs already exist
    reel_start: str | None = None  # timecode of the reel's first frame; None: from the file, else 0
    plots: bool = False  # a sync plot per take (a cue list's plot column overrides it per take)
    previews: bool = False  # a preview movie per take: the cue's picture region with the aligned take

    def check(self) -> None:
        """Refuse settings no cue could run with, before anything is read or written."""
        if self.jobs < 1:
            raise ParameterError(f"--jobs must be >= 1, got {self.jobs}")
        if not self.handles >= 0:
            raise ParameterError(f"--handles must be >= 0 seconds, got {self.handles}")
        if self.reel_start is not None:
            parse_timecode(self.reel_start)
        check_template(self.template)
        self.align.check()
        if self.align.adapt_from is not None and not probe_picture(self.align.adapt_from).has_audio:
            raise MediaError(f"--adapt-from: {self.align.adapt_from} has no audio track to adapt the lip model on")


@dataclass(frozen=True)
class TakeJob:
    take: str  # the take's name in outputs: the file stem, made safe
    dub: str  # the take file
    output: str  # the Broadcast WAV to write
    row: int  # the cue list row the take was listed on
    error: str | None = None  # e.g. the file is missing: this take fails alone
    plot: str | None = None  # the sync plot to write (PNG); None: not asked for
    preview: str | None = None  # the preview to write (.mp4); None: not asked for
    controls: Controls = Controls()  # from its row; sync points in seconds from the region start


@dataclass(frozen=True)
class CueJob:
    """A cue ready to run: its picture region, takes and where everything goes."""

    cue: Cue
    picture: str | None
    start: float | None  # picture region, seconds from the picture's first frame (handles in)
    end: float | None
    origin_s: float  # seconds since midnight of the region start (for the BWF TimeReference)
    start_tc: str  # the region start as timecode ("" when no frame rate is known)
    takes: tuple[TakeJob, ...]
    report: str
    warnings: tuple[str, ...] = ()
    error: str | None = None
    fps: FrameRate | None = None  # the timecode rate (--fps), for the plots' timecode axis


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``: ASCII letters, digits, ``._-``; never empty, never
    a path (no separators, no leading dot)."""
    return _SAFE_RE.sub("_", str(text)).strip("._") or "_"


def check_template(template: str) -> None:
    """Refuse an output template that names unknown fields or could leave OUTDIR."""
    fields = "; use " + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ParameterError(f"--template {template!r}: {e}{fields}") from None
    for _, name, _, _ in parsed:
        # only plain fields: '{cue.attr}' or '{cue[0]}' would reach into Python objects
        if name is not None and name not in TEMPLATE_FIELDS:
            raise ParameterError(f"--template {template!r}: {{{name}}} is not a field{fields}")
    if Path(template).is_absolute() or ".." in Path(template).parts:
        raise ParameterError(f"--template {template!r} must give a relative path inside OUTDIR")
    if not template.lower().endswith(".wav"):
        raise ParameterError(f"--template {template!r} must end in .wav (outputs are Broadcast WAV)")


def output_name(template: str, values: dict[str, object]) -> str:
    """The template filled in; a checked relative path inside OUTDIR."""
    try:
        name = template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise ParameterError(f"--template {template!r}: {e}") from None
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts or Path(name).suffix.lower() != ".wav":
        raise ParameterError(f"--template {template!r} gives {name!r}: not a .wav file inside OUTDIR")
    return name


def _path_like(cue_id: str) -> bool:
    """A cue id that reads as a path out of OUTDIR ('../x', '/x'): refused rather than renamed."""
    p = Path(cue_id.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts


def plan_batch(cue_list: CueList, config: BatchConfig) -> tuple[CueJob, ...]:
    """Check every cue against the files and the frame rate; return one job per cue.

    Raises :class:`ParameterError` only for problems of the whole run (template, output name
    clashes); a problem of one cue is stored in its job and fails that cue alone.
    """
    config.check()
    out_dir = Path(config.out_dir)
    pictures: dict[str, PictureInfo] = {}
    origins: dict[str, float] = {}
    outputs: dict[str, str] = {}  # output path -> which take it belongs to
    reports: set[str] = set()
    review_names: set[str] = set()
    take_files = {Path(t).resolve() for cue in cue_list.cues for t in cue.takes}
    jobs = []
    for cue in cue_list.cues:
        report = safe_name(cue.cue_id)
        if report in reports:
            report = f"{report}_row{cue.row}"
        reports.add(report)
        report_path = str(out_dir / REPORT_DIR / f"{report}.json")

        takes = []
        for index, (dub, row) in enumerate(zip(cue.takes, cue.take_rows, strict=True), start=1):
            take = safe_name(Path(dub).stem)
            used = {t.take for t in takes}
            n = index
            while take in used:  # a/take1.wav and b/take1.wav: names within a cue must differ
                take, n = f"{safe_name(Path(dub).stem)}_{n}", n + 1
            name = output_name(config.template, {
                "cue": safe_name(cue.cue_id), "take": take, "index": index,
                "character": safe_name(cue.character), "row": row,
            })
            output = os.path.normpath(out_dir / name)
            here = f"row {row} (cue {cue.cue_id}) take {take}"
            if output in outputs:
                raise ParameterError(
                    f"--template {config.template!r} names {outputs[output]} and {here} both {name}: "
                    "give each take its own name with {cue} and {take} (or {index})"
                )
            outputs[output] = here
            if Path(output).resolve() in take_files:
                raise ParameterError(
                    f"{here}: the output {output} would overwrite a take of the cue list: "
                    "choose another -o folder or --template"
                )
            error = None if Path(dub).is_file() else f"{here}: take file not found: {dub}"
            controls = cue.controls(index - 1)
            review = _review_name(f"{report}_{take}", review_names)
            plot = config.plots if controls.plot is None else controls.plot
            preview = config.previews if controls.preview is None else controls.preview
            takes.append(TakeJob(
                take=take, dub=dub, output=output, row=row, error=error, controls=controls,
                plot=str(out_dir / REVIEW_DIR / f"{review}{PLOT_SUFFIX}") if plot else None,
                preview=str(out_dir / REVIEW_DIR / f"{review}{PREVIEW_SUFFIX}") if preview else None,
            ))

        picture = cue.picture or (str(config.picture) if config.picture else None)
        base = dict(cue=cue, picture=picture, start=None, end=None, origin_s=0.0, start_tc="",
                    takes=tuple(takes), report=report_path, fps=config.fps)
        warnings: list[str] = []  # kept when the cue fails too: a wrong --fps explains a bad region
        try:
            if cue.error:
                raise ParameterError(cue.error)
            if _path_like(cue.cue_id):
                raise ParameterError(f"the cue id {cue.cue_id!r} reads as a path out of OUTDIR: rename the cue")
            start, end, origin, start_tc = _plan_region(cue, picture, config, pictures, origins, warnings)
            length = (end if end is not None else pictures[picture].duration) - (start or 0.0)
            planned = tuple(_plan_sync_points(t, cue, config.fps, origin, length) for t in takes)
        except DubalignError as e:
            jobs.append(CueJob(**base, warnings=tuple(warnings), error=_with_label(str(e), cue)))
            continue
        jobs.append(CueJob(**{**base, "start": start, "end": end, "origin_s": origin, "start_tc": start_tc,
                              "takes": planned}, warnings=tuple(warnings)))
    return tuple(jobs)


def _review_name(name: str, used: set[str]) -> str:
    """``name`` for a take's plot and preview, made unique in the review folder (cue 'a_b' take
    'c' and cue 'a' take 'b_c' would otherwise share a file)."""
    unique, n = name, 2
    while unique in used:
        unique, n = f"{name}_{n}", n + 1
    used.add(unique)
    return unique


def _plan_sync_points(take: TakeJob, cue: Cue, rate: FrameRate | None, origin_s: float, length: float) -> TakeJob:
    """The take with its sync points in seconds from the region start (timecodes converted),
    each checked to lie inside the region."""
    points = []
    for dub_s, at in take.controls.sync_points:
        where = f"row {take.row} (cue {cue.cue_id}): sync point {dub_s:g}={at}"
        if isinstance(at, Timecode):
            if rate is None:
                raise ParameterError(f"{where}: a timecode needs the frame rate: give --fps")
            pic_s = round(timecode_to_seconds(at, rate) - origin_s, 6)
        else:
            pic_s = float(at)
        if not 0.0 <= pic_s <= length:
            raise ParameterError(f"{where} lies outside the cue's picture region (0 to {length:.2f} s from "
                                 f"its start{', ' + str(seconds_to_timecode(origin_s, rate)) if rate else ''})")
        points.append((dub_s, pic_s))
    controls = dataclasses.replace(take.controls, sync_points=tuple(points))
    return dataclasses.replace(take, controls=controls)


def _with_label(message: str, cue: Cue) -> str:
    return message if message.startswith("row ") else f"{cue.label}: {message}"


def _picture_start_label(path: str) -> str | None:
    """The start timecode stored in a picture file (QuickTime tmcd / MXF), if any."""
    import av  # only needed to read a picture's own timecode

    try:
        with av.open(path) as c:
            for meta in [c.metadata] + [s.metadata for s in c.streams]:
                if meta.get("timecode"):
                    return str(meta["timecode"])
    except (av.FFmpegError, OSError, ValueError):
        return None
    return None


def _rate_from_file(fps: float) -> FrameRate | None:
    for name in _FILE_RATES:
        r = parse_rate(name)
        if abs(float(r.exact) - fps) < FPS_MISMATCH:
            return r
    return None


def _picture_origin(path: str, rate: FrameRate | None, override: str | None, fps: float) -> float:
    """Seconds since midnight of the picture's first frame: --reel-start, else the file's own
    timecode, else 0."""
    label = override or _picture_start_label(path)
    if not label:
        return 0.0
    tc = parse_timecode(label)
    if rate is None:
        rate = _rate_from_file(fps)
        if rate is None:
            return 0.0
        if tc.drop_frame:
            rate = parse_rate("29.97df")
    return timecode_to_seconds(tc, rate)


def _plan_region(
    cue: Cue, picture: str | None, config: BatchConfig, pictures: dict[str, PictureInfo], origins: dict[str, float],
    warnings: list[str],
) -> tuple[float | None, float | None, float, str]:
    """(start, end, origin_s, start_tc) of the cue's picture region (None, None: the whole
    picture); warnings are appended to ``warnings``. ``pictures`` and ``origins`` cache what each
    picture file was found to be."""
    if picture is None:
        raise ParameterError("no picture: give a picture column or --picture REEL")
    uses_tc = bool(cue.tc_in or cue.tc_out)
    if not cue.picture and not uses_tc:
        raise ParameterError("a reel picture needs tc_in and tc_out for each cue")
    if uses_tc and not (cue.tc_in and cue.tc_out):
        raise ParameterError("give both tc_in and tc_out (or neither)")
    if uses_tc and config.fps is None:
        raise ParameterError("the cue list uses timecode: give the frame rate with --fps")
    if picture not in pictures:
        pictures[picture] = probe_picture(picture)  # MediaError when missing or unreadable
    info = pictures[picture]
    rate = config.fps
    if rate is not None and info.fps and abs(info.fps - float(rate.exact)) > FPS_MISMATCH:
        warnings.append(f"the picture {Path(picture).name} runs at {info.fps:.3f} fps but --fps is {rate}: "
                        "timecodes will land on the wrong frames")
    if picture not in origins:
        origins[picture] = _picture_origin(picture, rate, config.reel_start, info.fps)
    origin = origins[picture]
    if not uses_tc:
        start_tc = str(seconds_to_timecode(origin, rate)) if rate else ""
        return None, None, origin, start_tc
    try:
        t_in = timecode_to_seconds(cue.tc_in, rate) - origin
    except ParameterError as e:
        raise ParameterError(f"tc_in: {e}") from None
    try:
        t_out = timecode_to_seconds(cue.tc_out, rate) - origin
    except ParameterError as e:
        raise ParameterError(f"tc_out: {e}") from None
    if t_out <= t_in:
        raise ParameterError(f"tc_out {cue.tc_out} is not after tc_in {cue.tc_in}")
    if t_in >= info.duration or t_out <= 0:
        raise ParameterError(
            f"{cue.tc_in}-{cue.tc_out} lies outside the picture {Path(picture).name} "
            f"(starts {seconds_to_timecode(origin, rate)}, lasts {info.duration:.2f} s); check --reel-start and --fps"
        )
    # to the microsecond: seconds since midnight minus seconds since midnight leaves float dust
    # (0.19999999999990905 for 0.2) that would show in reports and cache keys
    start = round(max(0.0, t_in - config.handles), 6)
    end = round(min(info.duration, t_out + config.handles), 6)
    return start, end, round(origin + start, 6), str(seconds_to_timecode(origin + start, rate))
