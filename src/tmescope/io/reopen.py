"""A stored sample's inputs opened again, as they were embedded: its Space Ranger run with the
image it was embedded from, its AnnData (or SpatialData) beside its image, or its H&E-only
slide, at the µm/px it was embedded at."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tmescope.errors import TmescopeWarning
from tmescope.io.input_kind import input_kind
from tmescope.io.sample import Sample
from tmescope.io.slide_sample import HE_ONLY, SlideSample, read_slide
from tmescope.io.visium import read_visium

HD_BIN_SIZE = "bin_size_um"  # meta.extra: the Visium HD bin size (µm) a sample was read at


def reopen_sample(
    source_path: str | Path, *, extra: Mapping[str, Any], mpp: float
) -> Sample | SlideSample:
    """Open the sample a store recorded (``source_path`` and its ``meta.extra``) lazily.

    A Visium HD run is read at the bin size it was embedded at (stores written before it was
    recorded: the default). Notes about the image's fitness for embedding were given when it was
    embedded; here they would only confuse, so they are silenced. Errors are the readers'
    :class:`TmescopeError`.
    """
    image = extra.get("image") if extra.get("image_kind") == "fullres" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TmescopeWarning)
        if extra.get("platform") == HE_ONLY:
            return read_slide(image or source_path, mpp=mpp)
        kind = input_kind(source_path)
        if kind in ("anndata", "hest"):
            from tmescope.io.anndata_sample import read_anndata_sample

            return read_anndata_sample(
                source_path, image=image, mpp=mpp, spot_diameter_um=extra.get("spot_diameter_um")
            )
        if kind == "spatialdata":
            from tmescope.io.spatialdata_sample import read_spatialdata

            # The image element the sample was embedded from: the folder the store recorded.
            return read_spatialdata(
                source_path, table=extra.get("table"), image=Path(image).name if image else None
            )
        return read_visium(source_path, image=image, bin_size_um=recorded_bin_size(extra))


def recorded_bin_size(extra: Mapping[str, Any]) -> float | None:
    """The Visium HD bin size a stored sample was read at (``None``: not recorded, the default)."""
    size = extra.get(HD_BIN_SIZE)
    return float(size) if isinstance(size, int | float) else None
