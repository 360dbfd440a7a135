"""The reliability suite: its counts reach the log when each worker's session ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import reliability_tally


@pytest.fixture(scope="session", autouse=True)
def _write_the_counts() -> Iterator[None]:
    yield
    reliability_tally.flush()
