"""Python twins of the CLI commands: each joins the rooms for one job.

The CLI only parses arguments and prints; everything it does can be done from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmescope.io import Sample, read_visium

log = logging.getLogger(__name__)


def describe_sample(
    path: Path | str,
    *,
    image: Path | str | None = None,
    bin_size_um: int | None = None,
    mpp: float | None = None,
) -> dict[str, Any]:
    """What ``tmescope info`` prints: counts, resolution and image of one Space Ranger run."""
    with read_visium(path, image=image, bin_size_um=bin_size_um, mpp=mpp) as sample:
        return sample_summary(sample)


def sample_summary(sample: Sample) -> dict[str, Any]:
    """A JSON-ready summary of a sample."""
    slide = sample.slide
    return {
        "sample_id": sample.sample_id,
        "platform": sample.platform,
        "source": str(sample.source),
        "n_spots": sample.n_spots,
        "n_in_tissue": sample.n_in_tissue,
        "n_genes": sample.n_genes,
        "mpp": round(sample.mpp, 6),
        "mpp_source": sample.mpp_source,
        "spot_diameter_um": sample.spot_diameter_um,
        "bin_size_um": sample.bin_size_um,
        "software_version": (sample.metadata or {}).get("software_version"),
        "image": {
            "path": str(slide.path),
            "kind": sample.image_kind,
            "width": slide.width,
            "height": slide.height,
            "levels": len(slide.levels),
            "level_sizes": [[lvl.width, lvl.height] for lvl in slide.levels],
            "mpp": round(sample.image_mpp, 6),
            "backend": slide.backend,
        },
    }


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


@dataclass(frozen=True)
class DemoResult:
    """What the demo made and where."""

    out_dir: Path
    cohort_dir: Path
    overview: Path
    samples: list[dict[str, Any]] = field(default_factory=list)


def run_demo(
    out_dir: Path | str,
    *,
    n_samples: int = 4,
    n_spots: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """The main job on the embedded synthetic cohort (twin of ``tmescope demo``).

    For now: synthesise a cohort, read every sample back with its full-resolution slide,
    summarise it and draw an overview. Later stages (embed, index, train, interactions,
    report) join here.
    """
    from tmescope.viz.overview import plot_cohort_overview

    out_dir = Path(out_dir)
    cohort_dir = out_dir / "cohort"
    sample_dirs = synthesize_cohort(
        cohort_dir, n_samples=n_samples, n_spots=n_spots, seed=seed, progress=progress
    )
    with ExitStack() as stack:
        samples = [
            stack.enter_context(read_visium(d, image=fullres_image_of(d))) for d in sample_dirs
        ]
        if progress is not None:
            progress(f"read back {len(samples)} samples with their full-resolution slides")
        overview = plot_cohort_overview(samples, out_dir / "cohort_overview.png")
        summaries = [sample_summary(s) for s in samples]
    return DemoResult(out_dir=out_dir, cohort_dir=cohort_dir, overview=overview, samples=summaries)


def fullres_image_of(sample_dir: Path) -> Path | None:
    """The full-resolution slide the synthetic cohort writes beside a sample's ``outs/``."""
    images = sorted(sample_dir.glob("*_he.tif"))
    return images[0] if images else None
