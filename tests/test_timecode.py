"""Timecode against hand-computed values (SMPTE 12M counting)."""

import pytest

from dubalign.errors import ParameterError
from dubalign.timecode import (
    frames_per_day,
    frames_to_timecode,
    parse_rate,
    parse_timecode,
    seconds_to_timecode,
    timecode_to_frames,
    timecode_to_seconds,
)

DF = parse_rate("29.97")
NDF = parse_rate("29.97ndf")


@pytest.mark.parametrize(
    ("tc", "rate", "frames"),
    [
        # 29.97 drop-frame: ;00 and ;01 skipped each minute except every tenth.
        ("00:00:59;29", "29.97", 1799),
        ("00:01:00;02", "29.97", 1800),
        ("00:02:00;02", "29.97", 3598),  # 120 s * 30 + 2 - 2 * 2 dropped
        ("00:09:59;29", "29.97", 17981),
        ("00:10:00;00", "29.97", 17982),
        ("00:11:00;02", "29.97", 17982 + 1800),
        ("01:00:00;00", "29.97", 107892),  # 6 * 17982
        ("01:00:00:00", "29.97ndf", 108000),
        ("01:00:00:00", "25", 90000),
        ("10:00:00:00", "25", 900000),
        ("00:00:01:12", "24", 36),
        ("01:00:00:00", "23.976", 86400),
        ("00:00:10:15", "30", 315),
    ],
)
def test_known_frame_counts(tc, rate, frames):
    r = parse_rate(rate)
    assert timecode_to_frames(tc, r) == frames
    assert str(frames_to_timecode(frames, r)) == tc


@pytest.mark.parametrize(
    ("tc", "rate", "seconds"),
    [
        ("01:00:00:00", "25", 3600.0),
        ("01:00:00:00", "23.976", 3603.6),  # 86400 * 1001 / 24000
        ("01:00:00:00", "29.97ndf", 3603.6),  # 108000 * 1001 / 30000
        ("01:00:00;00", "29.97", 3599.9964),  # 107892 * 1001 / 30000: DF tracks the clock
        ("00:00:00:12", "24", 0.5),
    ],
)
def test_known_seconds(tc, rate, seconds):
    assert timecode_to_seconds(tc, parse_rate(rate)) == pytest.approx(seconds, abs=1e-9)


def test_drop_frame_round_trip_every_frame_of_first_twenty_minutes():
    for n in range(0, 2 * 17982 + 5):
        tc = frames_to_timecode(n, DF)
        assert tc.frames >= 2 or tc.seconds != 0 or tc.minutes % 10 == 0, str(tc)
        assert timecode_to_frames(tc, DF) == n


def test_round_trip_random_frames(rng):
    for name in ("23.976", "24", "25", "29.97", "29.97ndf", "30"):
        r = parse_rate(name)
        for n in rng.integers(0, frames_per_day(r), size=200):
            assert timecode_to_frames(frames_to_timecode(int(n), r), r) == n


def test_seconds_to_timecode_nearest_frame():
    assert str(seconds_to_timecode(3600.0 + 0.5 / 25 - 1e-6, parse_rate("25"))) == "01:00:00:00"
    assert str(seconds_to_timecode(3599.9964, DF)) == "01:00:00;00"


def test_frames_per_day():
    assert frames_per_day(parse_rate("25")) == 24 * 3600 * 25
    assert frames_per_day(DF) == 144 * 17982


@pytest.mark.parametrize(
    ("tc", "rate", "match"),
    [
        ("00:01:00;00", "29.97", "does not exist"),
        ("00:01:00;01", "29.97", "does not exist"),
        ("00:00:00:25", "25", "frames must be"),
        ("00:00:00;10", "25", "drop-frame"),
        ("1:2:3", "25", "expected HH:MM:SS:FF"),
        ("24:00:00:00", "25", "hours < 24"),
        ("00:60:00:00", "25", "minutes"),
        ("abc", "24", "bad timecode"),
    ],
)
def test_bad_timecodes_raise(tc, rate, match):
    with pytest.raises(ParameterError, match=match):
        timecode_to_frames(tc, parse_rate(rate))


def test_tenth_minute_keeps_zero_labels():
    assert timecode_to_frames("00:20:00;00", DF) == 2 * 17982
    assert parse_timecode("00:20:00.00").drop_frame


def test_bad_rate_raises():
    with pytest.raises(ParameterError, match="unsupported frame rate"):
        parse_rate("59.94")
    with pytest.raises(ParameterError, match="unsupported frame rate"):
        parse_rate("")


def test_negative_frames_raise():
    with pytest.raises(ParameterError, match="negative"):
        frames_to_timecode(-1, parse_rate("25"))
