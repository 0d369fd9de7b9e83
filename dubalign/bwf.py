"""Broadcast WAV (EBU Tech 3285): a RIFF WAVE with a ``bext`` chunk.

The ``bext`` chunk is what lets a DAW spot an aligned dub at its place on the timeline:
``TimeReference`` is the file's first sample counted in samples since midnight at the file's
own rate. We write the chunk ourselves (libsndfile's support is not exposed by soundfile) and
read it back with a small parser, :func:`read_bext`.

Layout written: ``RIFF/WAVE`` > ``bext`` > ``fmt `` > (``fact`` for float) > ``data``.
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .errors import MediaError, ParameterError
from .files import atomic_output

ORIGINATOR = "dubalign"

_BEXT_FIXED_SIZE = 602  # bytes of the bext chunk before CodingHistory (Tech 3285 v1/v2)
_BEXT_VERSION = 1  # v1: UMID field present; loudness fields (v2) left zero, i.e. reserved
_RIFF_MAX = 2**32 - 1  # plain RIFF sizes are 32-bit; RF64 is not supported
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# KSDATAFORMAT_SUBTYPE_* GUID tail shared by PCM and float sub-formats.
_GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

# subtype -> (bits per sample, is float)
SUBTYPES = {
    "PCM_16": (16, False), "PCM_24": (24, False), "PCM_32": (32, False), "FLOAT": (32, True),
}


def bwf_subtype(subtype: str | None) -> str:
    """The subtype we write for a dub read with ``subtype`` (soundfile naming).

    PCM 16/24/32 and 32-bit float are kept; 8-bit and unknown/compressed sources go to PCM_24,
    doubles to FLOAT (32-bit float keeps more than any recorded dub holds).
    """
    if subtype in SUBTYPES:
        return subtype
    if subtype == "DOUBLE":
        return "FLOAT"
    return "PCM_24"


@dataclass(frozen=True)
class BextInfo:
    """The fields of a ``bext`` chunk (EBU Tech 3285)."""

    description: str
    originator: str
    originator_reference: str
    origination_date: str  # yyyy-mm-dd
    origination_time: str  # hh:mm:ss
    time_reference: int  # first sample, in samples since midnight at the file's rate
    version: int
    coding_history: str


def _ascii_field(text: str, size: int) -> bytes:
    data = str(text).encode("ascii", errors="replace")[:size]
    return data.ljust(size, b"\x00")


def _pack_bext(info: BextInfo) -> bytes:
    if not 0 <= info.time_reference < 2**64:
        raise ParameterError(f"TimeReference {info.time_reference} is out of range (0 .. 2^64)")
    body = b"".join(
        [
            _ascii_field(info.description, 256),
            _ascii_field(info.originator, 32),
            _ascii_field(info.originator_reference, 32),
            _ascii_field(info.origination_date, 10),
            _ascii_field(info.origination_time, 8),
            struct.pack("<QH", info.time_reference, info.version),
            b"\x00" * 64,  # UMID: none
            b"\x00" * 190,  # loudness (v2) + reserved: zero
        ]
    )
    assert len(body) == _BEXT_FIXED_SIZE
    return body + info.coding_history.encode("ascii", errors="replace")


def _chunk(tag: bytes, payload: bytes) -> bytes:
    pad = b"\x00" if len(payload) % 2 else b""
    return tag + struct.pack("<I", len(payload)) + payload + pad


def _fmt_chunk(sr: int, n_channels: int, bits: int, is_float: bool) -> bytes:
    block_align = n_channels * bits // 8
    tag = _WAVE_FORMAT_IEEE_FLOAT if is_float else _WAVE_FORMAT_PCM
    if n_channels <= 2:
        fmt = struct.pack("<HHIIHH", tag, n_channels, sr, sr * block_align, block_align, bits)
        if is_float:
            fmt += struct.pack("<H", 0)  # cbSize: non-PCM formats carry it
        return _chunk(b"fmt ", fmt)
    # More than two channels: WAVE_FORMAT_EXTENSIBLE, as the Microsoft spec asks; no speaker
    # positions assigned (mask 0) since a dub's stems have none we know of.
    guid = struct.pack("<I", tag) + _GUID_TAIL
    fmt = struct.pack(
        "<HHIIHHHHI", _WAVE_FORMAT_EXTENSIBLE, n_channels, sr, sr * block_align, block_align,
        bits, 22, bits, 0,
    ) + guid
    return _chunk(b"fmt ", fmt)


def _encode(samples: np.ndarray, bits: int, is_float: bool) -> bytes:
    """Interleaved little-endian sample bytes of ``samples [shape=(n, n_channels)]``."""
    if is_float:
        return np.ascontiguousarray(samples, dtype="<f4").tobytes()
    full_scale = float(2 ** (bits - 1))
    x = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * full_scale),
                -full_scale, full_scale - 1)
    if bits == 16:
        return x.astype("<i2").tobytes()
    if bits == 32:
        return x.astype("<i4").tobytes()
    # 24-bit: the low three bytes of each little-endian int32.
    return x.astype("<i4").reshape(-1, 1).view(np.uint8)[:, :3].tobytes()


def coding_history(sr: int, n_channels: int, subtype: str) -> str:
    """One EBU R98 CodingHistory line for what we wrote."""
    bits, is_float = SUBTYPES[subtype]
    mode = {1: "mono", 2: "stereo"}.get(n_channels, "multitrack")
    algo = "IEEE_FLOAT" if is_float else "PCM"
    return f"A={algo},F={sr},W={bits},M={mode},T=dubalign {__version__}\r\n"


def write_bwf(
    path: str | os.PathLike,
    samples: np.ndarray,
    sr: int,
    *,
    subtype: str,
    time_reference: int,
    description: str = "",
    originator_reference: str = "",
    now: _dt.datetime | None = None,
) -> None:
    """Write ``samples`` as a Broadcast WAV, atomically (see :mod:`dubalign.files`).

    samples : np.ndarray [shape=(n, n_channels)] float, full scale +-1
    subtype : 'PCM_16' | 'PCM_24' | 'PCM_32' | 'FLOAT'
    time_reference : first sample, in samples since midnight at ``sr``
    """
    if subtype not in SUBTYPES:
        raise ParameterError(f"cannot write subtype {subtype!r}: use one of {sorted(SUBTYPES)}")
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] < 1:
        raise ParameterError(f"samples must be (n, n_channels), got shape {samples.shape}")
    if int(sr) != sr or sr <= 0:
        raise ParameterError(f"sample rate must be a positive integer, got {sr}")
    bits, is_float = SUBTYPES[subtype]
    n_channels = samples.shape[1]
    now = now or _dt.datetime.now()
    info = BextInfo(
        description=description,
        originator=ORIGINATOR,
        originator_reference=originator_reference,
        origination_date=now.strftime("%Y-%m-%d"),
        origination_time=now.strftime("%H:%M:%S"),
        time_reference=int(time_reference),
        version=_BEXT_VERSION,
        coding_history=coding_history(int(sr), n_channels, subtype),
    )
    data = _encode(samples, bits, is_float)
    chunks = [_chunk(b"bext", _pack_bext(info)), _fmt_chunk(int(sr), n_channels, bits, is_float)]
    if is_float:
        chunks.append(_chunk(b"fact", struct.pack("<I", samples.shape[0])))
    header = b"WAVE" + b"".join(chunks)
    riff_size = len(header) + 8 + len(data) + len(data) % 2
    if riff_size > _RIFF_MAX:
        raise ParameterError(
            f"{path}: {riff_size} bytes exceed the 4 GiB WAV limit; split the cue or use fewer "
            "channels"
        )
    parts = [b"RIFF", struct.pack("<I", riff_size), header, b"data", struct.pack("<I", len(data)), data,
             b"\x00" * (len(data) % 2)]
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        for part in parts:
            f.write(part)


def read_bext(path: str | os.PathLike) -> BextInfo:
    """Read the ``bext`` chunk of a WAV file; :class:`MediaError` if there is none."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise MediaError(f"{path}: not a RIFF WAVE file")
            while True:
                ch = f.read(8)
                if len(ch) < 8:
                    raise MediaError(f"{path}: no bext chunk (not a Broadcast WAV)")
                tag, size = ch[:4], struct.unpack("<I", ch[4:])[0]
                if tag == b"bext":
                    return _unpack_bext(f.read(size), path)
                f.seek(size + size % 2, os.SEEK_CUR)
    except OSError as e:
        raise MediaError(f"cannot read {path}: {e}") from e


def _unpack_bext(raw: bytes, path: Path) -> BextInfo:
    if len(raw) < _BEXT_FIXED_SIZE:
        raise MediaError(f"{path}: bext chunk too short ({len(raw)} bytes)")

    def text(a: int, b: int) -> str:
        return raw[a:b].split(b"\x00", 1)[0].decode("ascii", errors="replace")

    time_reference, version = struct.unpack_from("<QH", raw, 338)
    return BextInfo(
        description=text(0, 256),
        originator=text(256, 288),
        originator_reference=text(288, 320),
        origination_date=text(320, 330),
        origination_time=text(330, 338),
        time_reference=time_reference,
        version=version,
        coding_history=raw[_BEXT_FIXED_SIZE:].split(b"\x00", 1)[0].decode("ascii", "replace"),
    )
