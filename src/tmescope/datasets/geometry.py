"""The frame of a synthetic section: Visium capture grid, slide size, cell grid and pyramid.

Spots sit on the Visium hexagonal lattice, 100 µm centre to centre: within an array row the
used ``array_col`` step by 2 and odd rows are offset by 1, so one ``array_col`` is 50 µm across
and one ``array_row`` 86.6 µm down. Pixel coordinates are level-0 pixels of the full-resolution
slide. Everything the image shows is computed on a *cell grid* of square cells about 8 µm wide,
each holding at most one drawn cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from tmescope.io._keys import VISIUM_SPOT_PITCH_UM

TISSUE_FRACTION = 0.65  # share of the capture grid under tissue
MARGIN_UM = 300.0  # glass around the capture grid
CELL_UM = 8.0  # target side of a cell-grid cell
FRAME_MULTIPLE = 256  # slide sides are multiples of this, so pyramid levels halve exactly
SMALLEST_LEVEL_PX = 1000  # the pyramid goes down until the long side is below this


@dataclass(frozen=True, eq=False)
class SlideGeometry:
    """Where the spots are and how big the slide, its cell grid and its pyramid are."""

    mpp: float  # µm per level-0 pixel
    width: int  # level-0 pixels
    height: int
    cell_px: int  # side of a cell-grid cell in level-0 pixels (a power of two)
    n_levels: int
    spots: pd.DataFrame  # every capture spot: barcode, array_row, array_col, x, y; by barcode

    @property
    def cell_um(self) -> float:
        return self.cell_px * self.mpp

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of the cell grid."""
        return self.height // self.cell_px, self.width // self.cell_px

    def level_size(self, level: int) -> tuple[int, int]:
        """``(width, height)`` of a pyramid level."""
        return self.width >> level, self.height >> level


def lay_out_slide(n_spots: int, *, mpp: float) -> SlideGeometry:
    """A capture grid with room for ``n_spots`` spots under tissue, and the slide around it."""
    n_grid = math.ceil(n_spots / TISSUE_FRACTION) + 4
    row_um = VISIUM_SPOT_PITCH_UM * math.sqrt(3) / 2
    n_rows = max(3, math.ceil(math.sqrt(n_grid * VISIUM_SPOT_PITCH_UM / row_um)))
    per_row = max(3, math.ceil(n_grid / n_rows))
    rows = np.repeat(np.arange(n_rows), per_row)
    cols = (rows % 2) + 2 * np.tile(np.arange(per_row), n_rows)
    margin_px = MARGIN_UM / mpp
    x = np.rint(margin_px + cols * (VISIUM_SPOT_PITCH_UM / 2) / mpp).astype(np.int64)
    y = np.rint(margin_px + rows * row_um / mpp).astype(np.int64)
    width = _round_up(int(x.max() + margin_px), FRAME_MULTIPLE)
    height = _round_up(int(y.max() + margin_px), FRAME_MULTIPLE)
    n_levels = 1 + max(1, math.ceil(math.log2(max(width, height) / SMALLEST_LEVEL_PX)))
    spots = pd.DataFrame(
        {
            "barcode": visium_barcodes(rows, cols),
            "array_row": rows,
            "array_col": cols,
            "x": x,
            "y": y,
        }
    )
    spots = spots.sort_values("barcode", ignore_index=True)
    return SlideGeometry(
        mpp=mpp,
        width=width,
        height=height,
        cell_px=cell_px_for(mpp),
        n_levels=n_levels,
        spots=spots,
    )


def cell_px_for(mpp: float) -> int:
    """Side of a cell-grid cell in level-0 pixels: the power of two nearest ``CELL_UM``."""
    return int(2 ** round(math.log2(CELL_UM / mpp)))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def visium_barcodes(rows: np.ndarray, cols: np.ndarray) -> list[str]:
    """16-nt barcodes with Space Ranger's ``-1`` suffix, one per array position.

    Like the real whitelist, a position has the same barcode in every sample. The position is
    mixed by a bijection of 32-bit integers, so distinct positions never share a barcode.
    """
    mask = np.uint64(0xFFFFFFFF)
    v = (rows.astype(np.uint64) << np.uint64(16)) | cols.astype(np.uint64)
    v = (v * np.uint64(0x9E3779B1)) & mask
    v ^= v >> np.uint64(15)
    v = (v * np.uint64(0x85EBCA77)) & mask
    v ^= v >> np.uint64(13)
    shifts = np.arange(30, -1, -2, dtype=np.uint64)  # 16 bases, 2 bits each, most significant first
    digits = ((v[:, None] >> shifts[None, :]) & np.uint64(3)).astype(np.uint8)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[digits]
    return [row.tobytes().decode() + "-1" for row in letters]


def grid_values_at(grid: np.ndarray, x: np.ndarray, y: np.ndarray, *, cell_px: int) -> np.ndarray:
    """Bilinear interpolation of a cell-grid field at level-0 pixel positions.

    Cell ``(i, j)`` has its centre at pixel ``((j + 0.5) * cell_px, (i + 0.5) * cell_px)``, the
    convention the renderer uses when it upsamples the same fields.
    """
    coords = np.stack([np.asarray(y, float) / cell_px - 0.5, np.asarray(x, float) / cell_px - 0.5])
    return ndimage.map_coordinates(grid.astype(np.float64), coords, order=1, mode="nearest")
