"""Fixtures of the store tests; their helpers live in ``cohort_factories.py`` beside them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers sit beside the tests that use them (tests/ itself is on the path, not this folder).
sys.path.insert(0, str(Path(__file__).parent))

from cohort_factories import FINGERPRINT, SampleData, make_sample

from tmescope.store import CohortStore


@pytest.fixture
def fingerprint() -> dict[str, object]:
    return dict(FINGERPRINT)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "cohort.zarr"


@pytest.fixture
def store(store_path: Path) -> CohortStore:
    return CohortStore.open(store_path, mode="a", fingerprint=FINGERPRINT)


@pytest.fixture
def sample() -> SampleData:
    return make_sample()
