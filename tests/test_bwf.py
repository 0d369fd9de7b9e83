"""Broadcast WAV writer: audio round trip through libsndfile, bext read back byte by byte."""

import datetime as dt
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from dubalign import files
from dubalign.bwf import bwf_subtype, read_bext, write_bwf
from dubalign.errors import MediaError, ParameterError
from dubalign.files import TEMP_MARK

NOW = dt.datetime(2026, 11, 24, 13, 5, 9)


@pytest.mark.parametrize(
    ("subtype", "n_channels", "tol"),
    [("PCM_16", 1, 1 / 2**15), ("PCM_24", 2, 1 / 2**23), ("PCM_32", 1, 1 / 2**31),
     ("FLOAT", 2, 0.0), ("PCM_24", 6, 1 / 2**23)],
)
def test_audio_round_trip(tmp_path, rng, subtype, n_channels, tol):
    x = (rng.uniform(-0.9, 0.9, size=(1001, n_channels))).astype(np.float32)
    path = tmp_path / "a.wav"
    write_bwf(path, x, 48000, subtype=subtype, time_reference=123, now=NOW)
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    info = sf.info(path)
    assert sr == 48000 and info.channels == n_channels and info.subtype == subtype
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=tol * 1.01, rtol=0)


def test_clipping_and_full_scale(tmp_path):
    x = np.array([[-2.0], [-1.0], [0.0], [1.0], [2.0]], dtype=np.float32)
    path = tmp_path / "c.wav"
    write_bwf(path, x, 8000, subtype="PCM_16", time_reference=0)
    y, _ = sf.read(path, dtype="int16", always_2d=True)
    assert y[:, 0].tolist() == [-32768, -32768, 0, 32767, 32767]


def test_bext_fields_read_back_and_at_spec_offsets(tmp_path):
    # 23:59:59 at 192 kHz does not fit 32 bits: the high word must be used.
    tref = (23 * 3600 + 59 * 60 + 59) * 192000
    path = tmp_path / "b.wav"
    write_bwf(path, np.zeros((10, 1)), 192000, subtype="PCM_24", time_reference=tref,
              description="cue 12A take 3", originator_reference="ref-1", now=NOW)
    info = read_bext(path)
    assert info.time_reference == tref
    assert info.description == "cue 12A take 3"
    assert info.originator == "dubalign"
    assert info.originator_reference == "ref-1"
    assert info.origination_date == "2026-11-24"
    assert info.origination_time == "13:05:09"
    assert info.version == 1
    assert info.coding_history.startswith("A=PCM,F=192000,W=24,M=mono,T=dubalign")
    # Independent of read_bext: the chunk comes first, TimeReference low/high words at 338/342.
    raw = path.read_bytes()
    assert raw[12:16] == b"bext"
    body = 20
    assert raw[body + 256:body + 264] == b"dubalign"
    lo, hi = struct.unpack_from("<II", raw, body + 338)
    assert lo + (hi << 32) == tref and hi > 0
    assert raw[body + 320:body + 330] == b"2026-11-24"


def test_riff_sizes_consistent_with_odd_chunks(tmp_path):
    path = tmp_path / "o.wav"
    write_bwf(path, np.zeros((3, 1)), 44100, subtype="PCM_24", time_reference=5)  # 9 data bytes
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 4)[0] == len(raw) - 8
    assert len(raw) % 2 == 0


def test_subtype_mapping():
    assert bwf_subtype("PCM_24") == "PCM_24"
    assert bwf_subtype("FLOAT") == "FLOAT"
    assert bwf_subtype("DOUBLE") == "FLOAT"
    assert bwf_subtype("MPEG_LAYER_III") == "PCM_24"
    assert bwf_subtype(None) == "PCM_24"


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ParameterError, match="subtype"):
        write_bwf(tmp_path / "x.wav", np.zeros((3, 1)), 48000, subtype="ULAW", time_reference=0)
    with pytest.raises(ParameterError, match="TimeReference"):
        write_bwf(tmp_path / "x.wav", np.zeros((3, 1)), 48000, subtype="PCM_16",
                  time_reference=-1)
    with pytest.raises(ParameterError, match="sample rate"):
        write_bwf(tmp_path / "x.wav", np.zeros((3, 1)), 0, subtype="PCM_16", time_reference=0)
    assert not (tmp_path / "x.wav").exists()


def test_read_bext_errors(tmp_path):
    plain = tmp_path / "plain.wav"
    sf.write(plain, np.zeros(10), 16000)
    with pytest.raises(MediaError, match="no bext"):
        read_bext(plain)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    with pytest.raises(MediaError, match="not a RIFF"):
        read_bext(junk)
    with pytest.raises(MediaError, match="cannot read"):
        read_bext(tmp_path / "missing.wav")


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.wav"
    path.write_bytes(b"old")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupt)  # Ctrl-C after the data, before the rename
    with pytest.raises(KeyboardInterrupt):
        write_bwf(path, np.zeros((10, 1)), 48000, subtype="PCM_16", time_reference=0)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    assert not any(TEMP_MARK in name for name in os.listdir(tmp_path))


def test_failed_write_is_one_line_media_error(tmp_path):
    with pytest.raises(MediaError, match=r"^could not write .*x\.wav: .*; nothing was written$"):
        write_bwf(tmp_path / "missing" / "x.wav", np.zeros((10, 1)), 48000, subtype="PCM_16", time_reference=0)
    assert list(tmp_path.iterdir()) == []
