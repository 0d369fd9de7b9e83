"""Review previews: the picture with the aligned dub as its sound, for any player or NLE.

The picture's video packets are copied unchanged when the output container takes its codec in a
form players and editors read (H.264, HEVC, ProRes... in .mov; H.264, HEVC, AV1... in .mp4;
anything in .mkv), so a preview costs a remux, not an encode. Regions of a longer reel, and
codecs the container cannot carry, are re-encoded as H.264 instead: packets can only be cut at
keyframes, and a cut anywhere else would lose frames or show the wrong ones.

Output time 0 is picture time 0 (the first frame of the picture, or of the region); the dub's
first sample plays there. The dub keeps its rate and channel count: 24-bit PCM in .mov (what
editors expect; Chromium and Safari play it too) and .mkv, AAC in .mp4, the one audio codec every
browser and editor plays from an MP4 (ALAC, the lossless alternative, plays silent in Chromium
and Firefox). The picture's production sound may ride along as a second track to compare against.

Writes straight to the path given: the caller makes it atomic (:func:`dubalign.files.atomic_outputs`)
so that a preview lands together with the aligned dub and its report.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from . import media
from .errors import MediaError, ParameterError

# Output file suffixes -> FFmpeg muxer. Temporary names (files.temp_path) have no such suffix,
# so the caller passes the container explicitly when it writes through one.
CONTAINERS = {".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska"}
# Video codecs copied as they are into each container: what players and editors open there.
# Matroska readers (VLC, mpv, browsers for some) play whatever FFmpeg can mux into it.
COPY_CODECS = {
    "mov": frozenset({"h264", "hevc", "prores", "dnxhd", "mjpeg", "mpeg4", "av1"}),
    "mp4": frozenset({"h264", "hevc", "av1", "vp9", "mpeg4"}),
    "matroska": None,  # None: any codec the muxer accepts
}
# Audio codec per container, and the sample format each is fed
AUDIO_CODECS = {"mov": "pcm_s24le", "mp4": "aac", "matroska": "pcm_s24le"}
SAMPLE_FORMATS = {"pcm_s24le": "s32", "aac": "fltp"}
PCM_SCALE = 2**23  # 24-bit full scale; samples are stored in the top 24 bits of an int32
AAC_BITRATE = 160_000  # bit/s per channel: transparent for dialogue
PCM_CHUNK = 4096  # samples per audio frame for codecs without a fixed frame size
ENCODERS = ("libx264", "h264", "mpeg4")  # re-encoding: the first of these the FFmpeg build has
X264_OPTIONS = {"crf": "18", "preset": "veryfast"}  # visually clean, quick; a preview, not a master
DUB_TITLE = "dub (aligned)"  # audio track names, as an NLE shows them
GUIDE_TITLE = "production sound"


@dataclass(frozen=True)
class PreviewInfo:
    """How a preview was written."""

    video: str  # "copied" (packets remuxed, picture untouched) or "re-encoded"
    video_codec: str  # codec of the preview's picture (the encoder's name, e.g. libx264, when re-encoded)
    audio_codec: str  # codec of its audio track(s)
    tracks: int  # audio tracks: 1, or 2 with the production sound
    reason: str = ""  # why the picture was re-encoded; "" when copied


def preview_container(path: str | os.PathLike) -> str:
    """The FFmpeg container for a preview named ``path`` (.mov, .mp4, .m4v or .mkv).

    Call it on the final name before slow work, to refuse a bad suffix early.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise ParameterError(
            f"the preview {Path(path).name} must be a .mov, .mp4 or .mkv file (got {suffix or 'no suffix'})"
        )
    return CONTAINERS[suffix]


def write_preview(
    picture_path: str | os.PathLike,
    audio: np.ndarray,
    sr: int,
    path: str | os.PathLike,
    *,
    guide: np.ndarray | None = None,
    guide_sr: int | None = None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    container: str | None = None,
) -> PreviewInfo:
    """Write the picture (or its region) with ``audio`` as its sound to ``path``.

    audio : np.ndarray [shape=(n, n_channels)] float32 in [-1, 1] (1-D: mono), sample 0 at
        picture time ``start_s``: the aligned dub as :func:`dubalign.pipeline.align_dub` renders it
    guide : optional second track, [shape=(m,)] or [shape=(m, c)], on the same time line at
        ``guide_sr`` (e.g. ``media.read_picture_audio(picture, start=..., end=..., sr=48000)``)
    start_s, duration_s : the region of the picture, in seconds from its first frame; the whole
        picture by default. A region other than the whole picture is re-encoded.
    container : "mov", "mp4" or "matroska"; None takes it from ``path``'s suffix (see
        :func:`preview_container`; give it when ``path`` is a temporary name)

    Writes non-atomically: wrap the call in :func:`dubalign.files.atomic_outputs`.
    """
    fmt = container if container is not None else preview_container(path)
    if fmt not in AUDIO_CODECS:
        raise ParameterError(f"preview container must be one of {', '.join(AUDIO_CODECS)}, not {fmt!r}")
    dub = _check_audio(audio, sr, "audio")
    tracks = [(dub, int(sr), DUB_TITLE)]
    if guide is not None:
        if guide_sr is None:
            raise ParameterError("give guide_sr, the sample rate of the guide track")
        tracks.append((_check_audio(guide, guide_sr, "guide"), int(guide_sr), GUIDE_TITLE))
    if start_s < 0 or (duration_s is not None and not duration_s > 0):
        raise ParameterError(f"bad preview region: start {start_s} s, duration {duration_s} s")

    picture = media.check_readable(picture_path, "picture")
    info = media.probe_picture(picture)
    whole = start_s == 0 and (duration_s is None or duration_s >= info.duration - 0.5 / max(info.fps, 1.0))
    try:
        with av.open(str(picture)) as c:
            codec = c.streams.video[0].codec_context.codec.name
        allowed = COPY_CODECS[fmt]
        if not whole:
            reason = "a region of the picture: packets can only be cut at keyframes"
        elif allowed is not None and codec not in allowed:
            reason = f"{codec} video does not play from a {fmt} file in most players"
        else:
            reason = ""
        if not reason:
            try:
                _write(picture, path, fmt, tracks, copy=True, start_s=0.0, end_s=None)
                return PreviewInfo("copied", codec, AUDIO_CODECS[fmt], len(tracks))
            except (av.FFmpegError, ValueError) as e:
                reason = f"the {fmt} muxer refused {codec} video ({_first_line(e)})"
        end_s = None if duration_s is None else start_s + duration_s
        encoder = _write(picture, path, fmt, tracks, copy=False, start_s=start_s, end_s=end_s)
        return PreviewInfo("re-encoded", encoder, AUDIO_CODECS[fmt], len(tracks), reason)
    except (av.FFmpegError, ValueError) as e:
        raise MediaError(f"cannot write the preview from {picture.name}: {_first_line(e)}") from None


def _check_audio(y: np.ndarray, sr: int, what: str) -> np.ndarray:
    """``y`` as [shape=(n, c)] float32, finite; raises ParameterError on a bad shape or rate."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] == 0 or not 1 <= y.shape[1] <= 16:
        raise ParameterError(f"the preview's {what} must be [n_samples, n_channels] with samples, got {y.shape}")
    if not (isinstance(sr, (int, np.integer)) and 1000 <= sr <= 384000):
        raise ParameterError(f"the preview's {what} sample rate must be a whole number of Hz, got {sr}")
    return np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)


def _write(
    picture: Path, path: str | os.PathLike, fmt: str,
    tracks: list[tuple[np.ndarray, int, str]], *, copy: bool, start_s: float, end_s: float | None,
) -> str:
    """Write one preview, video copied or re-encoded. Returns the video codec's name.

    Every stream is added before the first packet is written (the header lists them all), and
    packets are written in time order so that players need not seek back and forth.
    """
    with av.open(str(path), "w", format=fmt) as out:
        if copy:
            name, video = _copy_video(picture, out)
        else:
            name, video = _encode_video(picture, out, start_s, end_s)
        audio = [_encode_audio(out, y, rate, title, AUDIO_CODECS[fmt]) for y, rate, title in tracks]
        for _, packet in heapq.merge(video, *audio, key=lambda item: item[0]):
            out.mux(packet)
    return name


Packets = Iterator[tuple[float, av.Packet]]  # (decode time in s, packet), in decode order


def _timed(packets: Iterable[av.Packet]) -> Packets:
    """Each packet with its decode time, kept non-decreasing where a demuxer gave none."""
    last = -np.inf
    for packet in packets:
        ts = packet.dts if packet.dts is not None else packet.pts
        if ts is not None:
            last = max(last, float(ts * packet.time_base))
        yield last, packet


def _copy_video(picture: Path, out: av.container.OutputContainer) -> tuple[str, Packets]:
    """A stream for the picture's video, and its packets shifted so that its first frame is at 0."""
    with av.open(str(picture)) as c:
        origin = media.first_video_time(c) or 0.0
    c = av.open(str(picture))
    vin = c.streams.video[0]
    vout = out.add_stream_from_template(vin)

    def packets() -> Iterator[av.Packet]:
        shift = int(round(origin / vin.time_base))
        with c:
            for packet in c.demux(vin):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = vout
                yield packet

    return vin.codec_context.codec.name, _timed(packets())


def _encode_video(
    picture: Path, out: av.container.OutputContainer, start_s: float, end_s: float | None
) -> tuple[str, Packets]:
    """A stream for the frames of [start_s, end_s) encoded as H.264 (or the best encoder there is),
    each frame at its own time minus ``start_s``, and its packets."""
    encoder = next((e for e in ENCODERS if e in av.codecs_available), None)
    if encoder is None:
        raise MediaError("this FFmpeg build has no H.264 or MPEG-4 encoder to write the preview with")
    info = media.probe_picture(picture)
    rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(25)
    vout = out.add_stream(encoder, rate=rate, options=X264_OPTIONS if encoder == "libx264" else {})
    full = max(info.width, info.height)  # decoded at full size, sides rounded to even for 4:2:0
    vout.width, vout.height = media.analysis_size(info.width, info.height, full)
    vout.pix_fmt = "yuv420p"
    vout.time_base = Fraction(1, 90000)  # the MPEG clock: exact for every common frame rate

    def packets() -> Iterator[av.Packet]:
        n = 0
        for t, rgb in media.iter_frames(picture, start=start_s, end=end_s, max_dim=full):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = int(round((t - start_s) / vout.time_base))
            frame.time_base = vout.time_base
            n += 1
            yield from vout.encode(frame)
        if n == 0:
            raise ParameterError(f"the preview region {start_s:g}..{end_s} s holds no picture frame")
        yield from vout.encode()

    return encoder, _timed(packets())


def _encode_audio(out: av.container.OutputContainer, y: np.ndarray, sr: int, title: str, codec: str) -> Packets:
    """A stream for ``y`` [shape=(n, c)] as ``codec`` from time 0, and its packets."""
    n, ch = y.shape
    layout = {1: "mono", 2: "stereo"}.get(ch, f"{ch} channels")  # no speaker positions guessed
    stream = out.add_stream(codec, rate=sr, layout=layout)
    sample_fmt = SAMPLE_FORMATS[codec]
    stream.format = sample_fmt
    stream.time_base = Fraction(1, sr)
    stream.metadata["title"] = title
    if codec == "aac":
        stream.bit_rate = AAC_BITRATE * ch
        data = np.clip(y, -1.0, 1.0).T  # (c, n) planar float
    else:  # 24-bit values in the top bits of int32, as FFmpeg passes 24-bit audio around
        data = np.round(np.clip(y, -1.0, 1.0 - 1.0 / PCM_SCALE) * PCM_SCALE).astype(np.int32) << 8

    def packets() -> Iterator[av.Packet]:
        step = stream.codec_context.frame_size or PCM_CHUNK
        for k in range(0, n, step):
            # packed formats take (1, n * c) interleaved, planar ones (c, n)
            chunk = data[:, k : k + step] if sample_fmt.endswith("p") else data[k : k + step].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=sample_fmt, layout=layout)
            frame.sample_rate = sr
            frame.pts = k
            frame.time_base = Fraction(1, sr)
            yield from stream.encode(frame)
        yield from stream.encode()

    return _timed(packets())


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
