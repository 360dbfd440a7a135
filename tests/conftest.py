"""Shared fixtures: synthetic Space Ranger runs (see factories.py) and the public real data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # factories imports the writers: only the fixtures that use them load it
    from factories import SyntheticVisium

# The public data lies beside the repository (../shared/data); TMESCOPE_TEST_DATA overrides it.
REAL_DATA = Path(
    os.environ.get(
        "TMESCOPE_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)


def _real(relative: str) -> Path:
    path = REAL_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {relative} not found under {REAL_DATA} (set TMESCOPE_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def heart_dir() -> Path:
    """Real Space Ranger 1.0.0 output (human heart), cut to 100 barcodes × 100 genes."""
    return _real("visium_human_heart_scanpy")


@pytest.fixture(scope="session")
def cmu1_svs() -> Path:
    """Real Aperio SVS, 0.499 µm/px, 2220 × 2967 px, one level."""
    return _real("wsi_cmu1_small_region/CMU-1-Small-Region.svs")


@pytest.fixture(scope="session")
def visium_run(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVisium:
    """A default synthetic run (v2 positions, h5, hires + lowres, a pyramidal full-res TIFF).

    Shared by the whole session: tests must not change its files.
    """
    from factories import add_fullres_tiff, write_visium

    sample = write_visium(tmp_path_factory.mktemp("visium"))
    add_fullres_tiff(sample)
    return sample


@pytest.fixture(scope="session")
def synth_cohort(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small synthetic samples (60 spots each, H&E-like pyramidal TIFF); read-only."""
    from tmescope.datasets import write_synthetic_cohort

    return write_synthetic_cohort(
        tmp_path_factory.mktemp("synth"), n_samples=2, n_spots=60, seed=11
    )
