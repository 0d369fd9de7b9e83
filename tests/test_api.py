"""The public API: what `import dubalign` offers, and that importing it stays light."""

import subprocess
import sys

import dubalign


def test_public_names_resolve():
    from dubalign import errors, pipeline, timemap

    assert dubalign.align is pipeline.align and dubalign.align_dub is pipeline.align_dub
    assert dubalign.analyze_picture is pipeline.analyze_picture
    assert dubalign.AlignConfig is pipeline.AlignConfig and dubalign.TimeMap is timemap.TimeMap
    assert issubclass(dubalign.MediaError, dubalign.DubalignError) and dubalign.DubalignError is errors.DubalignError
    assert sorted(dir(dubalign)) == sorted(dubalign.__all__)


def test_import_is_light():
    # mediapipe and PyAV load when an alignment needs them (torch only to adapt or train), not on `import dubalign`
    code = "import sys, dubalign; print(sorted(m for m in ('torch', 'mediapipe', 'av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dubalign.nope  # noqa: B018
