"""Writers of what a trained model makes (the model itself, fused sets, predictions, the
report, exports) and the removal of a sample with its fused sets, killed at random.

Each writer is killed with SIGKILL at random moments: the store verifies, a reader sees the old
state or the new one, and running the command again gives exactly an uninterrupted run's result
(kill_harness.py says what each trial checks; kill_writers.py what each writer is). ``make test``
kills none of them (each needs a trained model: full run only); ``make reliability`` kills
every writer many times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kill_writers import add_fused, add_model, build_base, kill_writer

# writer → (trials in make test, trials in make reliability); 0 in make test: full run only.
TRIALS = {
    "model directory": (0, 5),
    "fused sets": (0, 6),
    "predictions (h5ad)": (0, 4),
    "report": (0, 3),
    "export: GeoJSON": (0, 4),
    "export: SpatialData": (0, 3),
    "sample removal": (0, 6),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_fused(add_model(build_base(tmp_path_factory.mktemp("kill-base"))))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRIALS))
def test_a_writer_killed_at_random_leaves_old_or_new_and_resumes_to_the_same(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    kill_writer(name, TRIALS[name], request, tmp_path)
