"""What ``tmescope info`` says of one Space Ranger run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tmescope.io import Sample, read_visium


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
