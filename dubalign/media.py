"""Decoding and writing media: the picture (PyAV), the dub (soundfile), atomic output.

Picture time 0 is the presentation time of the picture's first video frame; every other time in
dubalign (picture audio, the time map, the output) is measured from it.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from .errors import MediaError
from .units import ANALYSIS_SR

# soundfile subtypes we write back unchanged; anything else is written as 24-bit PCM.
KEEPABLE_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8")
DUB_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF")  # soundfile major formats accepted
SILENCE_PEAK = 1e-4  # a dub whose peak stays below this (-80 dBFS) holds no usable speech
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
    """Raise MediaError unless ``path`` is an existing, readable file."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{what} not found: {p}")
    if not p.is_file():
        raise MediaError(f"{what} is not a file: {p}")
    if not os.access(p, os.R_OK):
        raise MediaError(f"{what} is not readable (check permissions): {p}")
    return p


def read_dub(path: str | os.PathLike) -> DubAudio:
    """Read a dub (WAV/BWF/FLAC/AIFF, any rate, any channel count, 16/24/32-bit or float)."""
    p = check_readable(path, "dub")
    try:
        info = sf.info(str(p))
    except Exception as e:  # soundfile raises several types for foreign formats
        raise MediaError(
            f"cannot read the dub {p.name}: not a WAV/BWF/FLAC/AIFF file ({_short(e)}); "
            "convert it to WAV first"
        ) from None
    if info.format not in DUB_FORMATS:
        raise MediaError(f"unsupported dub format {info.format} in {p.name}: use WAV, BWF, FLAC or AIFF")
    try:
        samples, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:
        raise MediaError(f"cannot decode the dub {p.name}: {_short(e)}") from None
    if samples.size == 0:
        raise MediaError(f"the dub {p.name} holds no audio samples")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise MediaError(f"the dub {p.name} is silent (peak below -80 dBFS): nothing to align")
    subtype = info.subtype if info.subtype in KEEPABLE_SUBTYPES else "PCM_24"
    return DubAudio(samples=samples, sr=int(sr), subtype=subtype, path=str(p))


def write_audio(path: str | os.PathLike, samples: np.ndarray, sr: int, *, subtype: str) -> None:
    """Write ``samples`` [shape=(n, n_channels)] as WAV atomically: a temp file, then a rename.

    Nothing is left at ``path`` if writing fails half way.
    """
    out = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent or ".")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the usual mode
        data = np.clip(samples, -1.0, 1.0) if not subtype.startswith(("FLOAT", "DOUBLE")) else samples
        sf.write(tmp, data, sr, subtype=subtype, format="WAV")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        raise MediaError(f"cannot read the picture {p.name}: {_short(e)}") from None


def analysis_size(width: int, height: int, max_dim: int = MAX_ANALYSIS_DIM) -> tuple[int, int]:
    """The (width, height) pictures are scaled to for face tracking: longer side <= max_dim, even."""
    scale = min(1.0, max_dim / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def iter_frames(
    path: str | os.PathLike, *, start: float = 0.0, end: float | None = None,
    max_dim: int = MAX_ANALYSIS_DIM,
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode video frames as (time, rgb) with time from the frame's own timestamp.

    Times are seconds from the first frame of the file; only frames with start <= time < end are
    yielded. rgb : np.ndarray [shape=(height, width, 3)] uint8, C-contiguous, scaled so that the
    longer side is at most ``max_dim``.
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
        frames = _decode_from(p, seek_to, origin)
        first = next(frames, None)
        if first is not None and seek_to is not None and first[0] > start + 1e-6:
            frames, first = _decode_from(p, None, origin), None  # the seek landed late (MPEG-PS)
        for t, frame in itertools.chain([first] if first is not None else [], frames):
            if t < start - 1e-6:
                continue
            if end is not None and t >= end - 1e-6:
                break
            w, h = analysis_size(frame.width, frame.height, max_dim)
            yield t, np.ascontiguousarray(frame.to_ndarray(format="rgb24", width=w, height=h))
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaError(f"cannot decode the picture {p.name}: {_short(e)}") from None


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
        raise MediaError(f"cannot decode the audio of {p.name}: {_short(e)}") from None
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


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _short(e: BaseException) -> str:
    """First line of an exception's message, for one-line errors."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
