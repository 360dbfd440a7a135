"""Ground truth of every cell, and of every in-tissue spot: the cells under it, its region and
its distances.

A cell lies at its grid cell's centre, and under a spot when that centre is within the 55 µm
spot disc. Counts are drawn from exactly these cells, so the composition is the truth a
deconvolution method should recover. Osteoclasts count once per drawn nucleus and erythrocytes
once per red cell, in the spot truth and in the cell table alike (one row each).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tmescope.datasets.catalogue import REGIONS, TYPE_NAMES
from tmescope.datasets.cells import CellMap
from tmescope.datasets.geometry import SlideGeometry, grid_values_at
from tmescope.datasets.tissue import TissueLayout
from tmescope.io._keys import VISIUM_SPOT_DIAMETER_UM

CELL_COLUMNS = ("x", "y", "cell_type")
TRUTH_COLUMNS = (
    "barcode", "array_row", "array_col", "x", "y", "region", "n_cells", *TYPE_NAMES,
    "border_um", "vessel_um",
)  # fmt: skip


def spot_truth(
    geometry: SlideGeometry, layout: TissueLayout, cells: CellMap, *, in_tissue: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """The truth table of the in-tissue spots (in barcode order) and their ``(n_spots, n_types)``
    cell counts.

    Columns: ``barcode, array_row, array_col, x, y`` (level-0 pixels), ``region`` (the region
    covering most of the spot), ``n_cells``, one fraction per cell type, ``border_um`` (distance
    to the nearest tumour border) and ``vessel_um`` (to the nearest vessel).
    """
    spots = geometry.spots[in_tissue].reset_index(drop=True)
    x, y = spots["x"].to_numpy(float), spots["y"].to_numpy(float)
    k = geometry.cell_px
    radius_px = VISIUM_SPOT_DIAMETER_UM / 2 / geometry.mpp
    reach = math.ceil(radius_px / k) + 1
    offsets = np.arange(-reach, reach + 1)
    rows = np.floor(y / k).astype(np.int64)[:, None, None] + offsets[None, :, None]
    cols = np.floor(x / k).astype(np.int64)[:, None, None] + offsets[None, None, :]
    n_rows, n_cols = geometry.grid_shape
    inside = ((rows + 0.5) * k - y[:, None, None]) ** 2 + ((cols + 0.5) * k - x[:, None, None]) ** 2
    inside = (
        (inside <= radius_px**2) & (rows >= 0) & (rows < n_rows) & (cols >= 0) & (cols < n_cols)
    )
    rows, cols = np.clip(rows, 0, n_rows - 1), np.clip(cols, 0, n_cols - 1)
    types = cells.cell_type[rows, cols]
    weight = cells.n_objects[rows, cols].astype(np.int64) * inside
    counts = np.stack([(weight * (types == t)).sum(axis=(1, 2)) for t in range(len(TYPE_NAMES))], 1)
    regions = layout.region[rows, cols]
    votes = np.stack([((regions == r) & inside).sum(axis=(1, 2)) for r in range(len(REGIONS))], 1)
    n_cells = counts.sum(axis=1)
    fractions = counts / np.maximum(n_cells, 1)[:, None]
    table = spots[["barcode", "array_row", "array_col", "x", "y"]].assign(
        region=np.asarray(REGIONS)[votes.argmax(axis=1)],  # ties and empty discs: stroma
        n_cells=n_cells,
        **{name: fractions[:, t] for t, name in enumerate(TYPE_NAMES)},
        border_um=grid_values_at(layout.border_um, x, y, cell_px=k),
        vessel_um=grid_values_at(layout.vessel_um, x, y, cell_px=k),
    )
    return table[list(TRUTH_COLUMNS)], counts


def cell_truth(geometry: SlideGeometry, cells: CellMap) -> pd.DataFrame:
    """Every counted cell of the section: ``x, y`` (level-0 pixels) and ``cell_type``.

    Rows run over the cell grid in raster order; a grid cell holding ``n`` counted objects (an
    osteoclast's nuclei, the red cells of a lumen) gives ``n`` rows at its centre, so that the
    cells within a spot's disc add up to exactly that spot's row of the spot truth.
    """
    k = geometry.cell_px
    repeats = np.where(cells.cell_type >= 0, cells.n_objects, 0).astype(np.int64).ravel()
    flat = np.repeat(np.arange(repeats.size), repeats)  # (n_cells,) grid cell of each row
    rows, cols = np.divmod(flat, cells.cell_type.shape[1])
    return pd.DataFrame(
        {
            "x": (cols + 0.5) * k,
            "y": (rows + 0.5) * k,
            "cell_type": pd.Categorical.from_codes(
                cells.cell_type.ravel()[flat], categories=list(TYPE_NAMES)
            ),
        }
    )
