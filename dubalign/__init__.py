"""dubalign: align re-recorded dialogue (ADR) to the lips on screen.

The public API, stable across minor versions::

    import dubalign

    result = dubalign.align("picture.mov", "dub.wav", "synced.wav", report="synced.json")
    print(result.summary()["text"])

    # or in two steps, to align several takes to one picture analysis:
    picture = dubalign.analyze_picture("picture.mov")
    for take in ("take1.wav", "take2.wav"):
        result = dubalign.align_dub(picture, take, dubalign.AlignConfig(guide="off"))

Names are imported on first use, so ``import dubalign`` stays fast (MediaPipe and PyAV load only
when an alignment needs them; torch only for ``adapt_from`` and training).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "align": "pipeline",
    "analyze_picture": "pipeline",
    "align_dub": "pipeline",
    "AlignConfig": "pipeline",
    "AlignmentResult": "pipeline",
    "PictureAnalysis": "pipeline",
    "TimeMap": "timemap",
    "DubalignError": "errors",
    "MediaError": "errors",
    "ParameterError": "errors",
    "AlignmentError": "errors",
}

__all__ = [
    "__version__", "align", "analyze_picture", "align_dub", "AlignConfig", "AlignmentResult", "PictureAnalysis",
    "TimeMap", "DubalignError", "MediaError", "ParameterError", "AlignmentError",
]
assert set(__all__) == {"__version__", *_API}

if TYPE_CHECKING:
    from .errors import AlignmentError, DubalignError, MediaError, ParameterError
    from .pipeline import AlignConfig, AlignmentResult, PictureAnalysis, align, align_dub, analyze_picture
    from .timemap import TimeMap


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'dubalign' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
