"""Writers of the store's samples and index, killed at random.

Each writer is killed with SIGKILL at random moments: the store verifies, a reader sees the old
state or the new one, and running the command again gives exactly an uninterrupted run's result
(kill_harness.py says what each trial checks; kill_writers.py what each writer is). ``make test``
kills the index once; ``make reliability`` kills every writer many times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kill_writers import build_base, kill_writer

# writer → (trials in make test, trials in make reliability); 0 in make test: full run only.
TRIALS = {
    # make test kills embedding at a fixed point already (tests/jobs/test_embed.py)
    "embedding: spots, grid tiles, sub-spot features": (0, 8),
    "embedding: H&E-only slide tiles": (0, 5),
    "similarity index": (1, 8),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base(tmp_path_factory.mktemp("kill-base"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRIALS))
def test_a_writer_killed_at_random_leaves_old_or_new_and_resumes_to_the_same(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    kill_writer(name, TRIALS[name], request, tmp_path)
