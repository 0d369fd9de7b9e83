"""SMPTE timecode <-> frame count <-> seconds.

Cue lists give picture positions as SMPTE timecode (``HH:MM:SS:FF``; drop-frame ``HH:MM:SS;FF``).
A timecode is a *label* counted at the nominal rate (24, 25, 30); the picture itself runs at the
exact rate (24000/1001, 30000/1001 for the "NTSC" rates). Seconds here are real picture time:
``frames / exact_rate``, the convention DAWs use for a Broadcast WAV TimeReference.

Drop-frame (29.97 DF) skips the labels ``;00`` and ``;01`` at the start of every minute except
every tenth minute, so that the label tracks the wall clock: 00:10:00;00 is frame 17982.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import ParameterError

# Drop-frame bookkeeping at 29.97: 2 labels dropped per minute, except minutes divisible by 10.
_DF_DROPPED = 2  # labels skipped at the start of each non-tenth minute
_DF_FRAMES_PER_MINUTE = 60 * 30 - _DF_DROPPED  # 1798 frames in a minute that drops labels
_DF_FRAMES_PER_10_MINUTES = 10 * 60 * 30 - 9 * _DF_DROPPED  # 17982

SECONDS_PER_DAY = 24 * 3600  # timecode wraps at 24:00:00:00

_TC_RE = re.compile(r"^\s*(\d{1,2})[:;.](\d{2})[:;.](\d{2})([:;.,])(\d{2})\s*$")


@dataclass(frozen=True)
class FrameRate:
    """A picture frame rate with its timecode counting.

    ``nominal`` is the label rate (frames per timecode second), ``exact`` the real rate in frames
    per second, ``drop_frame`` whether labels are dropped (29.97 DF only).
    """

    name: str  # as the user wrote it, normalised: "23.976", "24", "25", "29.97df", "29.97ndf", "30"
    nominal: int  # frame labels per timecode second
    exact: Fraction  # frames per second of real time
    drop_frame: bool

    def __str__(self) -> str:
        return self.name


_RATES = {
    "23.976": FrameRate("23.976", 24, Fraction(24000, 1001), False),
    "23.98": FrameRate("23.976", 24, Fraction(24000, 1001), False),
    "24": FrameRate("24", 24, Fraction(24), False),
    "25": FrameRate("25", 25, Fraction(25), False),
    "29.97": FrameRate("29.97df", 30, Fraction(30000, 1001), True),
    "29.97df": FrameRate("29.97df", 30, Fraction(30000, 1001), True),
    "29.97ndf": FrameRate("29.97ndf", 30, Fraction(30000, 1001), False),
    "30": FrameRate("30", 30, Fraction(30), False),
}

RATE_CHOICES = ("23.976", "24", "25", "29.97", "29.97df", "29.97ndf", "30")


def parse_rate(text: str) -> FrameRate:
    """``"23.976" | "24" | "25" | "29.97" (= drop-frame) | "29.97df" | "29.97ndf" | "30"``."""
    key = str(text).strip().lower().replace(" ", "")
    if key.endswith("fps"):
        key = key[:-3]
    if key not in _RATES:
        raise ParameterError(
            f"unsupported frame rate {text!r}: use one of {', '.join(RATE_CHOICES)} "
            "(29.97 means drop-frame; 29.97ndf for non-drop)"
        )
    return _RATES[key]


@dataclass(frozen=True)
class Timecode:
    """A parsed SMPTE timecode label."""

    hours: int
    minutes: int
    seconds: int
    frames: int
    drop_frame: bool  # written with a drop-frame separator (';' or '.') before the frames

    def __str__(self) -> str:
        sep = ";" if self.drop_frame else ":"
        return f"{self.hours:02d}:{self.minutes:02d}:{self.seconds:02d}{sep}{self.frames:02d}"


def parse_timecode(text: str) -> Timecode:
    """Parse ``HH:MM:SS:FF`` (``;`` or ``.`` before FF marks drop-frame); checks field ranges
    that do not depend on the rate."""
    m = _TC_RE.match(str(text))
    if m is None:
        raise ParameterError(
            f"bad timecode {text!r}: expected HH:MM:SS:FF (HH:MM:SS;FF drop-frame)"
        )
    h, mi, s, sep, f = m.groups()
    tc = Timecode(int(h), int(mi), int(s), int(f), sep in ";.")
    if tc.hours >= 24 or tc.minutes >= 60 or tc.seconds >= 60:
        raise ParameterError(f"bad timecode {text!r}: hours < 24, minutes and seconds < 60")
    return tc


def timecode_to_frames(tc: str | Timecode, rate: FrameRate) -> int:
    """Frame count since 00:00:00:00 of timecode ``tc`` at ``rate``.

    A drop-frame label at a non-drop rate (or the reverse) is an error rather than a guess; a
    label that drop-frame skips (``00:01:00;00``) is an error too.
    """
    if not isinstance(tc, Timecode):
        tc = parse_timecode(tc)
    if tc.frames >= rate.nominal:
        raise ParameterError(f"bad timecode {tc}: frames must be < {rate.nominal} at {rate} fps")
    if tc.drop_frame and not rate.drop_frame:
        raise ParameterError(
            f"timecode {tc} is drop-frame (';') but the frame rate is {rate}: "
            "use --fps 29.97 for drop-frame, or write the timecode with ':'"
        )
    if rate.drop_frame and tc.frames < _DF_DROPPED and tc.seconds == 0 and tc.minutes % 10:
        raise ParameterError(
            f"timecode {tc} does not exist in 29.97 drop-frame (frames ;00 and ;01 are skipped "
            "at the start of each minute not divisible by 10)"
        )
    frames = (tc.hours * 3600 + tc.minutes * 60 + tc.seconds) * rate.nominal + tc.frames
    if rate.drop_frame:
        total_minutes = 60 * tc.hours + tc.minutes
        frames -= _DF_DROPPED * (total_minutes - total_minutes // 10)
    return frames


def frames_to_timecode(frames: int, rate: FrameRate) -> Timecode:
    """Timecode label of frame ``frames`` (>= 0) at ``rate``; wraps at 24 hours."""
    frames = int(frames)
    if frames < 0:
        raise ParameterError(f"frame count {frames} is negative: timecode starts at 00:00:00:00")
    frames %= frames_per_day(rate)
    if rate.drop_frame:
        tens, rem = divmod(frames, _DF_FRAMES_PER_10_MINUTES)
        # The first minute of each ten keeps all labels; each later one skips two.
        skipped = 9 * _DF_DROPPED * tens
        if rem >= _DF_DROPPED:
            skipped += _DF_DROPPED * ((rem - _DF_DROPPED) // _DF_FRAMES_PER_MINUTE)
        frames += skipped
    f = frames % rate.nominal
    total_s = frames // rate.nominal
    return Timecode(total_s // 3600, total_s // 60 % 60, total_s % 60, f, rate.drop_frame)


def frames_per_day(rate: FrameRate) -> int:
    """Number of frame labels from 00:00:00:00 to 24:00:00:00."""
    if rate.drop_frame:
        return 24 * 6 * _DF_FRAMES_PER_10_MINUTES
    return SECONDS_PER_DAY * rate.nominal


def frames_to_seconds(frames: int, rate: FrameRate) -> float:
    """Real time in seconds of frame count ``frames`` at ``rate``."""
    return float(Fraction(int(frames)) / rate.exact)


def seconds_to_frames(seconds: float, rate: FrameRate) -> int:
    """Nearest whole frame count for a real time in seconds at ``rate``."""
    return int(round(Fraction(seconds) * rate.exact))


def timecode_to_seconds(tc: str | Timecode, rate: FrameRate) -> float:
    """Real time in seconds since 00:00:00:00 of timecode ``tc`` at ``rate``."""
    return frames_to_seconds(timecode_to_frames(tc, rate), rate)


def seconds_to_timecode(seconds: float, rate: FrameRate) -> Timecode:
    """Timecode label of the frame nearest to ``seconds`` of real time at ``rate``."""
    return frames_to_timecode(seconds_to_frames(seconds, rate), rate)
