"""Exceptions raised by dubalign.

Every error the library raises on purpose derives from :class:`DubalignError`; the CLI turns
them into a one-line message and a non-zero exit. Messages say what to do next.
"""


class DubalignError(Exception):
    """Root of every error dubalign raises on purpose."""


class MediaError(DubalignError):
    """A file is missing, unreadable, of an unsupported format, or lacks the stream we need."""


class ParameterError(DubalignError):
    """An option or argument is out of range or inconsistent with the inputs."""


class AlignmentError(DubalignError):
    """The inputs were read, but no alignment can be found (no face, no path, dub too long)."""
