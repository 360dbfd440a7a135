"""A :class:`Sample` from a table of measured units (spots, bins or pseudo-spots) and an image.

Every reader that is not a Space Ranger folder ends here: an AnnData beside its H&E
(:mod:`tmescope.io.anndata_sample`, HEST-1k included) and a SpatialData zarr
(:mod:`tmescope.io.spatialdata_sample`). They hand over counts, positions in the image's
full-resolution pixels, the opened slide and its µm/px; this module checks what they share
(positions present, finite and on the image; counts that are counts) and builds the sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.errors import CountsFormatError, ImageMismatchError, InvalidParameterError
from tmescope.io._keys import VISIUM_SPOT_DIAMETER_UM
from tmescope.io.layout import SpaceRangerLayout
from tmescope.io.sample import Platform, Sample
from tmescope.io.scalefactors import Scalefactors
from tmescope.io.slide import Slide

# Positions may reach a unit's radius past the image edge; beyond this share of it they are wrong.
_EDGE_SLACK = 0.02


def sample_from_table(
    counts: ad.AnnData,
    xy: np.ndarray,
    *,
    slide: Slide,
    sample_id: str,
    mpp: float,
    mpp_source: str,
    source: Path,
    hashed: Path,
    spot_diameter_um: float | None = None,
    platform: Platform = "visium",
    bin_size_um: float | None = None,
    in_tissue: np.ndarray | None = None,
    metadata: Mapping[str, Any] | None = None,
    what: str = "the table",
) -> Sample:
    """The sample of ``counts`` (units × genes) at ``xy`` (``(n, 2)`` full-resolution px of
    ``slide``, whose level 0 is that frame). ``hashed`` is the file or folder whose bytes
    identify the measurement (the store refuses a sample id re-used for other data)."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[0] != counts.n_obs or xy.shape[1] < 2:
        raise InvalidParameterError(
            f"{what}: expected positions of shape ({counts.n_obs}, 2) (x, y in image pixels), "
            f"found {xy.shape}"
        )
    xy = xy[:, :2]
    if not np.isfinite(xy).all():
        raise InvalidParameterError(
            f"{what}: {int((~np.isfinite(xy)).any(axis=1).sum())} positions are not finite "
            "numbers; drop those units or fix the positions"
        )
    if counts.n_obs == 0:
        raise CountsFormatError(f"{what} holds no units (0 rows); expected spots or bins")
    check_positions_on_image(xy, slide, what=what)
    matrix = check_counts(counts.X, what=what)
    barcodes = pd.Index(counts.obs_names.astype(str))
    if barcodes.has_duplicates:
        raise CountsFormatError(
            f"{what}: unit names repeat (e.g. {barcodes[barcodes.duplicated()][0]!r}); expected "
            "one row per spot or bin with a unique name"
        )
    tissue = np.ones(len(xy), bool) if in_tissue is None else np.asarray(in_tissue, bool)
    grid = _lattice_indices(xy)
    spots = pd.DataFrame(
        {
            "barcode": barcodes.to_numpy(str),
            "in_tissue": tissue.astype(np.int64),
            "array_row": grid[:, 0],
            "array_col": grid[:, 1],
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )
    table = ad.AnnData(
        X=matrix,
        obs=pd.DataFrame(
            {
                "in_tissue": spots["in_tissue"].to_numpy(),
                "array_row": grid[:, 0],
                "array_col": grid[:, 1],
            },
            index=barcodes,
        ),
        var=counts.var.copy(),
    )
    table.obsm["spatial"] = xy.copy()
    diameter_um = float(spot_diameter_um or bin_size_um or VISIUM_SPOT_DIAMETER_UM)
    layout = SpaceRangerLayout(
        root=source, platform=platform, positions=hashed, scalefactors=None, h5=None,
        mtx_dir=None, hires_image=None, lowres_image=None,
        bin_size_um=int(bin_size_um) if bin_size_um else None,
    )  # fmt: skip
    return Sample(
        sample_id=sample_id, spots=spots, counts=table, slide=slide, image_kind="fullres",
        image_scale=1.0, mpp=float(mpp), mpp_source=mpp_source, spot_diameter_um=diameter_um,
        platform=platform,
        scalefactors=Scalefactors(
            hires=None, lowres=None, spot_diameter_fullres=diameter_um / mpp,
            raw={"spot_diameter_fullres": diameter_um / mpp},
        ),
        layout=layout, bin_size_um=bin_size_um, metadata=dict(metadata or {}),
    )  # fmt: skip


def check_positions_on_image(xy: np.ndarray, slide: Slide, *, what: str) -> None:
    """Refuse positions that fall off the image (a different frame, or the wrong image)."""
    slack = _EDGE_SLACK * max(slide.width, slide.height) + 1
    low, high = xy.min(axis=0), xy.max(axis=0)
    if low.min() < -slack or high[0] > slide.width + slack or high[1] > slide.height + slack:
        raise ImageMismatchError(
            f"{what}: positions reach x {low[0]:.0f}–{high[0]:.0f}, y {low[1]:.0f}–{high[1]:.0f} "
            f"px but {slide.path.name} is {slide.width}×{slide.height} px; expected positions in "
            "the full-resolution pixels of this image (is it the right image, or are the "
            "positions in µm or on a downscaled image?)"
        )


def check_counts(matrix: Any, *, what: str) -> sp.csr_matrix:
    """The matrix as sparse float32 counts: finite, non-negative (integers are not required:
    ambient-corrected or binned counts may be fractional)."""
    if matrix is None:
        raise CountsFormatError(
            f"{what} has no count matrix (X is empty); expected units × genes counts in X"
        )
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    data = csr.data
    if data.size and (not np.isfinite(data).all() or data.min() < 0):
        raise CountsFormatError(
            f"{what}: X holds negative or non-finite values; expected raw counts (not "
            "log-normalised or scaled data: put the counts in X, or in layers['counts'])"
        )
    return csr


def _lattice_indices(xy: np.ndarray) -> np.ndarray:
    """``(n, 2)`` row and column of each unit on its own spacing (for tables that carry no
    array indices): positions divided by the median nearest-neighbour distance, rounded."""
    if len(xy) < 2:
        return np.zeros((len(xy), 2), np.int64)
    from scipy.spatial import cKDTree

    distance = cKDTree(xy).query(xy, k=2)[0][:, 1]
    step = float(np.median(distance)) or 1.0
    origin = xy.min(axis=0)
    return np.rint((xy[:, ::-1] - origin[::-1]) / step).astype(np.int64)
