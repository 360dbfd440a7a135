"""``Sample``: one Visium section — its spots, counts, lazy slide and resolution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import anndata as ad
import numpy as np
import pandas as pd

from tmescope.io.layout import SpaceRangerLayout
from tmescope.io.scalefactors import Scalefactors
from tmescope.io.slide import Slide
from tmescope.io.slide_backends import open_slide

ImageKind = Literal["fullres", "hires", "lowres"]
Platform = Literal["visium", "visium_hd"]


@dataclass(frozen=True, eq=False)
class Sample:
    """One section: spots joined to their counts, the H&E slide and the frame they share.

    Spot coordinates ``x``, ``y`` are full-resolution pixels (the frame of the image given to
    Space Ranger); ``mpp`` is micrometres per full-resolution pixel. The slide may be that image
    (``image_kind == "fullres"``) or one of Space Ranger's downscaled PNGs, in which case
    ``image_scale`` (slide pixels per full-resolution pixel) maps spots onto it.
    """

    sample_id: str
    spots: pd.DataFrame  # barcode, in_tissue, array_row, array_col, x, y; one row per count barcode
    counts: ad.AnnData  # spots × genes, sparse; obs_names == spots.barcode
    slide: Slide
    image_kind: ImageKind
    image_scale: float
    mpp: float
    mpp_source: str
    spot_diameter_um: float
    platform: Platform
    scalefactors: Scalefactors
    layout: SpaceRangerLayout
    bin_size_um: float | None = None
    metadata: dict[str, Any] | None = None

    @property
    def n_spots(self) -> int:
        return len(self.spots)

    @property
    def n_in_tissue(self) -> int:
        return int(self.spots["in_tissue"].sum())

    @property
    def n_genes(self) -> int:
        return int(self.counts.n_vars)

    @property
    def source(self) -> Path:
        """The Space Ranger ``outs/`` folder (or the folder standing in for it)."""
        return self.layout.root

    @property
    def image_mpp(self) -> float:
        """µm per pixel of the slide's level 0."""
        return self.mpp / self.image_scale

    def read_patch(self, x: float, y: float, *, size_um: float, size_px: int) -> np.ndarray:
        """The square patch of side ``size_um`` centred on full-resolution pixel ``(x, y)``.

        Read from the best pyramid level and resampled to ``size_px`` pixels: ``(size_px,
        size_px, 3)`` uint8, white where it runs off the image.
        """
        side = size_um / self.image_mpp
        cx, cy = x * self.image_scale, y * self.image_scale
        return self.slide.read_region(
            cx - side / 2, cy - side / 2, side, side, size=(size_px, size_px)
        )

    def to_anndata(self, *, library_id: str | None = None) -> ad.AnnData:
        """Counts laid out as ``squidpy.read.visium`` lays them out (images, scalefactors)."""
        library_id = library_id or self.sample_id
        adata = self.counts.copy()
        meta = dict(self.metadata or {})
        if self.image_kind == "fullres":
            meta["source_image_path"] = str(self.slide.path)
        adata.uns["spatial"] = {
            library_id: {
                "images": {
                    kind: _read_whole_image(path)
                    for kind, path in (
                        ("hires", self.layout.hires_image),
                        ("lowres", self.layout.lowres_image),
                    )
                    if path is not None
                },
                "scalefactors": dict(self.scalefactors.raw),
                "metadata": meta,
            }
        }
        return adata

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


def _read_whole_image(path: Path) -> np.ndarray:
    """A Space Ranger PNG as RGB uint8, decoded as the slide readers decode it (palette, 16-bit …)."""
    with open_slide(path) as image:
        return image.read_level(0, 0, 0, image.width, image.height)
