"""``SlideSample``: an H&E slide without expression (an archived block, a biopsy): the image,
its resolution and its name, shaped like a :class:`~tmescope.io.sample.Sample` with no spots.

µm/px comes from ``mpp`` when given, else from the slide's own metadata (TIFF resolution tags,
OME ``PhysicalSizeX``, OpenSlide's ``mpp-x``); with neither, the error names ``--mpp``. The
sample id is the file name without its suffixes unless one is given.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import pandas as pd

from tmescope.errors import InputNotFoundError, InvalidParameterError, ResolutionError
from tmescope.io.slide import Slide
from tmescope.io.slide_backends import open_slide

HE_ONLY = "he_only"  # the platform of a sample without expression
SLIDE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".svs", ".ndpi", ".mrxs", ".scn")
_SPOT_COLUMNS = ("barcode", "in_tissue", "array_row", "array_col", "x", "y")


@dataclass(frozen=True, eq=False)
class SlideSample:
    """One H&E-only section: its slide in its own full-resolution frame (``image_scale`` 1)."""

    sample_id: str
    slide: Slide
    mpp: float
    mpp_source: str
    source: Path

    image_kind = "fullres"
    image_scale = 1.0
    platform = HE_ONLY
    spot_diameter_um = None
    counts = None

    @property
    def spots(self) -> pd.DataFrame:
        """No spots: an empty table with the columns of a Visium sample's."""
        return pd.DataFrame({c: pd.Series(dtype=object) for c in _SPOT_COLUMNS})

    @property
    def n_spots(self) -> int:
        return 0

    @property
    def image_mpp(self) -> float:
        return self.mpp

    def read_patch(self, x: float, y: float, *, size_um: float, size_px: int) -> np.ndarray:
        """The square patch of side ``size_um`` centred on pixel ``(x, y)``, ``size_px`` wide."""
        side = size_um / self.mpp
        return self.slide.read_region(
            x - side / 2, y - side / 2, side, side, size=(size_px, size_px)
        )

    def close(self) -> None:
        self.slide.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_slide(
    path: Path | str, *, sample_id: str | None = None, mpp: float | None = None
) -> SlideSample:
    """Open an H&E-only slide lazily, with its µm/px and sample id (see the module docstring)."""
    path = Path(path)
    check_mpp(mpp)
    if not path.exists():
        raise InputNotFoundError(f"slide {path} does not exist; check the path given with --slide")
    slide = open_slide(path)
    try:
        slide.check_complete()
        if mpp is not None:
            resolution, source = float(mpp), "--mpp"
        elif slide.mpp is not None:
            resolution, source = float(slide.mpp), str(slide.mpp_source)
        else:
            raise ResolutionError(
                f"slide {path} does not say its µm per pixel (no resolution in its metadata); "
                "pass --mpp (about 0.25 for a 40× scan, 0.5 for 20×)"
            )
        return SlideSample(
            sample_id=sample_id or slide_sample_id(path), slide=slide, mpp=resolution,
            mpp_source=source, source=path.resolve(),
        )  # fmt: skip
    except BaseException:
        slide.close()
        raise


def check_mpp(mpp: float | None) -> None:
    """Refuse a µm/px no H&E scan has (``None``: not given)."""
    if mpp is not None and not (math.isfinite(mpp) and 0.05 <= mpp <= 50):
        raise InvalidParameterError(
            f"--mpp must be the slide's µm per pixel (0.05–50; about 0.25 at 40×, 0.5 at 20×), "
            f"got {mpp}"
        )


def slide_sample_id(path: Path) -> str:
    """The file name without its slide suffixes (``case_12.ome.tiff`` → ``case_12``), with
    characters a store key cannot hold replaced by ``_``."""
    name = path.name
    for suffix in SLIDE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = path.stem
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "slide"
