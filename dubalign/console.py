"""Terminal concerns of the command-line tools (never used by the library itself)."""

from __future__ import annotations

import os
import sys


def mute_native_stderr() -> None:
    """Send what C/C++ libraries write to file descriptor 2 (MediaPipe's glog lines) to /dev/null.

    Python's ``sys.stderr`` keeps writing to the real terminal through a duplicate of the original
    descriptor, so our own messages and progress bars still show. Call once, at process start.
    """
    try:
        if sys.stderr.fileno() != 2:  # already redirected (e.g. captured by a test runner)
            return
        sys.stderr.flush()
        original = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(original, "w", buffering=1, encoding=sys.stderr.encoding, errors="replace")
    except (OSError, AttributeError, ValueError):  # no real stderr (embedded, captured): leave it be
        pass
