"""Decoding and writing media: the picture (PyAV), the dub (soundfile), atomic output.

Picture time 0 is the presentation time of the picture's first video frame; every other time in
dubalign (picture audio, the time map, the output) is measured from it.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from .audio import inverted_channel_pairs
from .errors import MediaError
from .files import atomic_output, current_umask  # noqa: F401  (current_umask: kept importable here)
from .units import ANALYSIS_SR

# soundfile subtypes we write back unchanged; anything else is written as 24-bit PCM.
KEEPABLE_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8")
DUB_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF")  # soundfile major formats accepted
SILENCE_PEAK = 1e-4  # a dub whose peak stays below this (-80 dBFS) holds no usable speech
# s: shorter dubs are refused. The shortest word with its lip movement lasts about 0.2 s, the lip
# model looks 0.7 s around each frame, and below 32 ms (MEL_NFFT) there is not even one FFT window.
MIN_DUB_S = 0.25
SNIFF_BYTES = 64  # bytes read from a file's start to name its format in an error message
SEEK_MIN_S = 5.0  # s: regions starting later than this are reached by seeking, not decoding
SEEK_MARGIN_S = 1.0  # s: seek this far before a region start, in case the seek lands late
MAX_ANALYSIS_DIM = 640  # px: pictures are scaled down to this longer side for face tracking


@dataclass(frozen=True)
class DubAudio:
    """The dub as read from disk, with what is needed to write it back the same way.

    samples : np.ndarray [shape=(n_samples, n_channels)] float32 in [-1, 1]
    """

    samples: np.ndarray
    sr: int
    subtype: str
    path: str
    warnings: tuple[str, ...] = ()  # what an editor should know about the file (e.g. inverted channels)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sr

    @property
    def n_channels(self) -> int:
        return self.samples.shape[1]


@dataclass(frozen=True)
class PictureInfo:
    """What the picture file says about itself."""

    path: str
    duration: float  # seconds, first frame to the end of the last frame
    fps: float  # average frame rate as stored (may be non-integer or variable)
    n_frames: int  # 0 when the container does not say
    width: int
    height: int
    has_audio: bool


def check_readable(path: str | os.PathLike, what: str) -> Path:
    """Raise MediaError unless ``path`` is an existing, readable, non-empty file."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{what} not found: {p}")
    if not p.is_file():
        raise MediaError(f"{what} is not a file: {p}")
    if not os.access(p, os.R_OK):
        raise MediaError(f"{what} is not readable (check permissions): {p}")
    if p.stat().st_size == 0:
        raise MediaError(f"{what} is an empty file (0 bytes): {p}")
    return p


def read_dub(path: str | os.PathLike) -> DubAudio:
    """Read a dub (WAV/BWF/FLAC/AIFF, any rate, any channel count, 16/24/32-bit or float).

    Refuses files that hold nothing to align (empty, shorter than MIN_DUB_S, silent, NaN). What an
    editor should know about a usable file (phase-inverted channels, a cut-short copy) comes back
    in ``warnings``.
    """
    p = check_readable(path, "dub")
    try:
        info = sf.info(str(p))
    except Exception as e:  # soundfile raises several types for foreign formats
        raise MediaError(f"cannot read the dub {p.name}: {_not_a_dub(p, e)}") from None
    if info.format not in DUB_FORMATS:
        raise MediaError(f"unsupported dub format {info.format} in {p.name}: use WAV, BWF, FLAC or AIFF")
    try:
        samples, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except MemoryError:
        size = info.frames * info.channels * 4 / 2**30
        raise MediaError(
            f"the dub {p.name} is too large to read: {info.duration / 60:.0f} min x {info.channels} channels "
            f"need {size:.1f} GB of memory; split it into takes"
        ) from None
    except Exception as e:
        raise MediaError(f"cannot decode the dub {p.name}: {_sf_reason(e)} (truncated or corrupt?)") from None
    if samples.size == 0:
        raise MediaError(f"the dub {p.name} holds no audio samples")
    if len(samples) < MIN_DUB_S * sr:
        raise MediaError(
            f"the dub {p.name} is too short to align: {_samples(len(samples))} ({len(samples) / sr:.3f} s); "
            f"a dub needs at least {MIN_DUB_S:g} s"
        )
    if not np.isfinite(samples).all():
        raise MediaError(f"the dub {p.name} holds invalid samples (NaN or infinity): export it again")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise MediaError(f"the dub {p.name} is silent (peak below -80 dBFS): nothing to align")
    subtype = info.subtype if info.subtype in KEEPABLE_SUBTYPES else "PCM_24"
    return DubAudio(samples=samples, sr=int(sr), subtype=subtype, path=str(p),
                    warnings=_dub_warnings(samples, sr, info.extra_info or ""))


def _dub_warnings(samples: np.ndarray, sr: int, log: str) -> tuple[str, ...]:
    """What an editor should know about a dub that can be aligned (log: libsndfile's header log)."""
    warnings = []
    for i, j, corr in inverted_channel_pairs(samples):
        warnings.append(
            f"dub channels {i + 1} and {j + 1} are phase-inverted (correlation {corr:.2f}): they cancel in a "
            "mono fold-down; analysed with their polarity matched, written as recorded"
        )
    # libsndfile logs a data chunk longer than the file as "data : 528117 (should be 264037)"
    if re.search(r"^\s*(data|SSND)\s*:\s*\d+\s*\(should be \d+\)", log, re.MULTILINE):
        warnings.append(
            f"the dub file ends before its header says it does (a copy cut short, or a recording never "
            f"closed?): aligned the {len(samples) / sr:.2f} s it holds"
        )
    return tuple(warnings)


# leading bytes of formats a dub may arrive in by mistake, to name them in an error message
_MAGIC = [
    (8, b"WAVE", "WAV"), (8, b"AIFF", "AIFF"), (8, b"AIFC", "AIFF"), (8, b"AVI ", "an AVI video"),
    (0, b"RF64", "WAV"), (0, b"BW64", "WAV"), (0, b"fLaC", "FLAC"),
    (0, b"OggS", "Ogg audio"), (0, b"ID3", "MP3 audio"), (0, b"\xff\xfb", "MP3 audio"), (0, b"\xff\xf3", "MP3 audio"),
    (0, b"\xff\xf2", "MP3 audio"), (0, b"\xff\xf1", "AAC audio"), (0, b"\xff\xf9", "AAC audio"),
    (4, b"ftyp", "an MP4/MOV/M4A file"), (0, b"\x1aE\xdf\xa3", "a Matroska/WebM file"), (0, b"caff", "a CAF file"),
    (0, b"#!AMR", "AMR audio"), (0, b"MThd", "a MIDI file"),
]


def _samples(n: int) -> str:
    return "1 sample" if n == 1 else f"{n} samples"


def _sniff(p: Path) -> str | None:
    """What the first bytes of ``p`` say it is ("WAV", "MP3 audio", "text"...), or None."""
    try:
        with open(p, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return None
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    for cut in range(4):  # the last character may be cut short by SNIFF_BYTES
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return "text" if text and all(c.isprintable() or c in "\t\r\n" for c in text) else None
    return None


def _not_a_dub(p: Path, e: BaseException) -> str:
    """Why libsndfile refused ``p``, in words."""
    kind = _sniff(p)
    if kind in ("WAV", "AIFF", "FLAC"):
        return f"a damaged {kind} file ({_sf_reason(e)}): is it truncated or corrupt?"
    if kind == "text":
        return "it holds text, not a WAV/BWF/FLAC/AIFF file"
    if kind is not None:
        return f"it is {kind}, not a WAV/BWF/FLAC/AIFF file; convert it to WAV first"
    return "not a WAV/BWF/FLAC/AIFF file (the format is unknown); convert it to WAV first"


def _sf_reason(e: BaseException) -> str:
    """libsndfile's reason without the "Error opening 'path': " prefix."""
    text = _short(e)
    text = re.sub(r"^Error opening .*?: ", "", text)
    return text.rstrip(".") or type(e).__name__


def write_audio(path: str | os.PathLike, samples: np.ndarray, sr: int, *, subtype: str) -> None:
    """Write ``samples`` [shape=(n, n_channels)] as WAV atomically: nothing is left at ``path``
    if writing fails half way, and a failure is one-line :class:`MediaError`."""
    with atomic_output(path) as tmp:
        write_wav_to(tmp, samples, sr, subtype=subtype)


def write_wav_to(path: str | os.PathLike, samples: np.ndarray, sr: int, *, subtype: str) -> None:
    """Write ``samples`` as WAV straight to ``path`` (the caller makes it atomic, see files.py)."""
    data = np.clip(samples, -1.0, 1.0) if not subtype.startswith(("FLOAT", "DOUBLE")) else samples
    sf.write(str(path), data, sr, subtype=subtype, format="WAV")


def probe_picture(path: str | os.PathLike) -> PictureInfo:
    """Open the picture and read its stream parameters (decodes nothing)."""
    p = check_readable(path, "picture")
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise MediaError(f"the picture {p.name} has no video stream")
            v = c.streams.video[0]
            fps = float(v.average_rate or v.guessed_rate or 0.0)
            if v.duration is not None and v.time_base is not None:
                duration = float(v.duration * v.time_base)
            elif c.duration is not None:
                duration = c.duration / av.time_base
            else:
                duration = 0.0
            return PictureInfo(
                path=str(p), duration=duration, fps=fps, n_frames=int(v.frames or 0),
                width=v.codec_context.width, height=v.codec_context.height,
                has_audio=bool(c.streams.audio),
            )
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        why = "it holds text, not a picture" if _sniff(p) == "text" else _av_reason(e)
        raise MediaError(f"cannot read the picture {p.name}: {why}") from None


def analysis_size(width: int, height: int, max_dim: int = MAX_ANALYSIS_DIM) -> tuple[int, int]:
    """The (width, height) pictures are scaled to for face tracking: longer side <= max_dim, even."""
    scale = min(1.0, max_dim / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def iter_frames(
    path: str | os.PathLike, *, start: float = 0.0, end: float | None = None,
    max_dim: int = MAX_ANALYSIS_DIM, from_key_frame: bool = False, max_rate: float | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode video frames as (time, rgb) with time from the frame's own timestamp.

    Times are seconds from the first frame of the file; only frames with start <= time < end are
    yielded. rgb : np.ndarray [shape=(height, width, 3)] uint8, C-contiguous, scaled so that the
    longer side is at most ``max_dim``. With ``from_key_frame``, frames start at the key frame at
    or before ``start`` instead (nothing is decoded only to be skipped: for sampling a picture).
    With ``max_rate`` (Hz), only the first frame at or after each tick start + k / max_rate is
    converted and yielded (every frame is still decoded).
    """
    p = check_readable(path, "picture")
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise MediaError(f"the picture {p.name} has no video stream")
            origin = first_video_time(c)
        if origin is None:
            return
        seek_to = origin + start - SEEK_MARGIN_S if start > SEEK_MIN_S else None
        skip_before = start  # frames before this are decoded but not yielded
        if from_key_frame:
            seek_to, skip_before = (origin + start if start > 0 else None), -np.inf
        frames = _decode_from(p, seek_to, origin)
        first = next(frames, None)
        if first is not None and seek_to is not None and first[0] > start + 1e-6:
            # the seek landed late (MPEG-PS): decode from the file's start
            frames, first, skip_before = _decode_from(p, None, origin), None, start
        last_tick = None
        for t, frame in itertools.chain([first] if first is not None else [], frames):
            if t < skip_before - 1e-6:
                continue
            if end is not None and t >= end - 1e-6:
                break
            if max_rate is not None:
                tick = int(np.floor((t - start) * max_rate + 1e-3))  # 1e-3: times a hair early
                if tick == last_tick:
                    continue
                last_tick = tick
            w, h = analysis_size(frame.width, frame.height, max_dim)
            yield t, np.ascontiguousarray(frame.to_ndarray(format="rgb24", width=w, height=h))
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"cannot decode the picture {p.name}: {_av_reason(e, decoding=True)}") from None


def _decode_from(path: Path, seek_to: float | None, origin: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time from origin, frame) from a fresh container, after seeking to ``seek_to`` s if given."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        if seek_to is not None:
            c.seek(int(seek_to / stream.time_base), stream=stream, backward=True)
        for frame in c.decode(stream):
            if frame.time is not None:
                yield frame.time - origin, frame


def first_video_time(container: av.container.InputContainer) -> float | None:
    """Presentation time (s) of the first video frame, the origin of picture time."""
    stream = container.streams.video[0]
    for frame in container.decode(stream):
        if frame.time is not None:
            return float(frame.time)
    return None


def read_picture_audio(
    path: str | os.PathLike, *, start: float = 0.0, end: float | None = None, sr: int = ANALYSIS_SR
) -> np.ndarray | None:
    """The picture's own audio as mono float32 at ``sr`` on picture time, or None without a track.

    Sample 0 is picture time ``start``; gaps before the audio begins are filled with zeros.
    """
    p = check_readable(path, "picture")
    try:
        with av.open(str(p)) as c:
            if not c.streams.audio or not c.streams.video:
                return None
            origin = first_video_time(c) or 0.0
        with av.open(str(p)) as c:
            stream = c.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
            chunks, first_t = [], None
            for frame in c.decode(stream):
                if first_t is None and frame.time is not None:
                    first_t = frame.time
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"cannot decode the audio of {p.name}: {_av_reason(e, decoding=True)}") from None
    if not chunks:
        return None
    y = np.concatenate(chunks).astype(np.float32)
    # samples of audio before `start` (negative: audio begins after it)
    lead = int(round(((origin if first_t is None else first_t) - origin - start) * sr))
    y = np.concatenate([np.zeros(lead, np.float32), y]) if lead > 0 else y[-lead:]
    if end is not None:
        n = int(round((end - start) * sr))
        y = y[:n] if len(y) >= n else np.concatenate([y, np.zeros(n - len(y), np.float32)])
    return y


def _short(e: BaseException) -> str:
    """First line of an exception's message, for one-line errors (control bytes escaped)."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in line)


def _av_reason(e: BaseException, decoding: bool = False) -> str:
    """Why FFmpeg refused a file, in words rather than ``[Errno 1094995529] ...: 'path'``."""
    if isinstance(e, av.error.InvalidDataError):
        if decoding:
            return "FFmpeg found damaged data in it (corrupt or truncated?)"
        return "not a media file FFmpeg can read (corrupt or truncated?)"
    if isinstance(e, av.error.DecoderNotFoundError):
        return "FFmpeg has no decoder for its codec; convert it to H.264 or ProRes"
    if isinstance(e, EOFError):
        return "the file ends early (truncated?)"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, OSError) and e.errno == errno.EIO:
        return "FFmpeg could not read it (truncated or damaged?)"
    if isinstance(e, (av.FFmpegError, OSError)) and getattr(e, "strerror", None):
        why = str(e.strerror)
        return _short(ValueError(why[:1].lower() + why[1:]))
    return _short(e)
