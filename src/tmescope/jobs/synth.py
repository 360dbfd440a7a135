"""The synthetic cohort (twin of ``tmescope synth``) and where it puts each slide."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def synthesize_cohort(
    out: Path | str,
    *,
    n_samples: int,
    n_spots: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write a synthetic cohort in Space Ranger layout (twin of ``tmescope synth``)."""
    from tmescope.datasets import write_synthetic_cohort

    return write_synthetic_cohort(
        Path(out), n_samples=n_samples, n_spots=n_spots, seed=seed, progress=progress
    )


def fullres_image_of(sample_dir: Path) -> Path | None:
    """The full-resolution slide the synthetic cohort writes beside a sample's ``outs/``."""
    images = sorted(sample_dir.glob("*_he.tif"))
    return images[0] if images else None
