"""Shared fixtures: a seeded rng, and the location of ../shared when it is there."""

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def shared_dir() -> Path:
    """../shared, or skip the test when it is absent (as on a fresh clone without it)."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is not available")
    return SHARED
