"""The synthetic cohort (twin of ``tmescope synth``), where it puts each slide and its sheet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def synthesize_cohort(
    out: Path | str,
    *,
    n_samples: int,
    n_spots: int,
    seed: int,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    phenotypes: Sequence[str] = (),
    sections_per_patient: int = 2,
) -> list[Path]:
    """Write a synthetic cohort in Space Ranger layout, with its sample sheet
    (:func:`cohort_samplesheet`), ``workers`` samples at a time (default: as the thread budget
    allows); ``phenotypes`` plants immune phenotypes, one per patient in turn, each patient
    ``sections_per_patient`` consecutive samples; twin of ``tmescope synth``."""
    from tmescope.datasets import write_synthetic_cohort

    return write_synthetic_cohort(
        Path(out), n_samples=n_samples, n_spots=n_spots, seed=seed, workers=workers,
        progress=progress, phenotypes=phenotypes, sections_per_patient=sections_per_patient,
    )  # fmt: skip


def cohort_samplesheet(cohort_dir: Path | str) -> Path:
    """The sample sheet the synthetic cohort writes at its root (``embed --samplesheet``)."""
    from tmescope.datasets.cohort_sheet import SAMPLESHEET

    return Path(cohort_dir) / SAMPLESHEET


def fullres_image_of(sample_dir: Path) -> Path | None:
    """The full-resolution slide the synthetic cohort writes beside a sample's ``outs/``."""
    images = sorted(sample_dir.glob("*_he.tif"))
    return images[0] if images else None
