"""A Visium HD-like section from a synthetic section's cells: Space Ranger's ``binned_outputs``.

Every cell of ``cells.h5ad`` (counts of its own, ``obsm["spatial"]`` in level-0 pixels of the
sample's H&E) gives its counts to the 2 µm bin under its centre; coarser bins (8 µm, 16 µm)
are sums of their 2 µm bins, as Space Ranger makes them. Bins lie on one square grid anchored
at pixel (0, 0) of the H&E, so bins of every size nest. The filtered matrix holds the bins under
tissue: every bin of a tissue block (the smallest square every bin size tiles, 16 µm for the
standard sizes) that holds a cell, so tissue bins without a cell are kept with no counts, as
Space Ranger keeps them.

Written per bin size: ``binned_outputs/square_NNNum/`` with ``filtered_feature_bc_matrix.h5``
(and, on request, the Matrix Market folder), ``spatial/tissue_positions.parquet`` and
``spatial/scalefactors_json.json`` (``bin_size_um``, ``microns_per_pixel``); ``outs/spatial/``
holds the sample's hires and lowres PNGs, and the H&E is copied beside ``outs/``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.datasets.spaceranger_writer import (
    write_10x_h5,
    write_10x_mtx,
    write_positions_parquet,
    write_scalefactors,
)
from tmescope.errors import InvalidParameterError
from tmescope.io._keys import ScalefactorKeys as K
from tmescope.io._keys import VisiumFiles as F

if TYPE_CHECKING:
    import anndata as ad

HD_BIN_SIZES = (2, 8, 16)  # µm: the sizes Space Ranger writes
FINEST_UM = 2


@dataclass(frozen=True)
class HDSection:
    """What :func:`write_hd_section` wrote: the run folder (``outs/``'s parent), its H&E, µm/px
    and the number of tissue bins per bin size."""

    path: Path
    image: Path
    mpp: float
    n_bins: dict[int, int]

    @property
    def outs(self) -> Path:
        return self.path / F.OUTS

    def bin_dir(self, size_um: int) -> Path:
        return self.outs / F.BINNED_OUTPUTS / f"square_{size_um:03d}um"


def write_hd_section(
    sample_dir: Path | str,
    out: Path | str,
    *,
    bin_sizes: Sequence[int] = HD_BIN_SIZES,
    matrix_market: Sequence[int] = (),
) -> HDSection:
    """Write the Visium HD-like run of synthetic sample ``sample_dir`` under ``out/<sample_id>``.

    ``sample_dir`` holds ``cells.h5ad``, ``<sample_id>_he.tif`` and ``outs/spatial/`` (as
    :func:`~tmescope.datasets.write_synthetic_cohort` writes them); ``matrix_market`` names the
    bin sizes whose counts are also written as a Matrix Market folder.
    """
    import anndata as ad

    sample_dir = Path(sample_dir)
    cells_path = sample_dir / "cells.h5ad"
    images = sorted(sample_dir.glob("*_he.tif"))
    if not cells_path.is_file() or len(images) != 1:
        raise InvalidParameterError(
            f"{sample_dir} is not a synthetic sample with its cells: expected cells.h5ad and one "
            "<sample_id>_he.tif (write the cohort again with tmescope synth)"
        )
    cells = ad.read_h5ad(cells_path)
    spatial = sample_dir / F.OUTS / F.SPATIAL
    factors = json.loads((spatial / F.SCALEFACTORS).read_text(encoding="utf-8"))
    mpp = float(cells.uns.get("tmescope", {}).get("mpp", 0.0))
    if not mpp > 0:
        raise InvalidParameterError(
            f"{cells_path} does not say its µm per pixel (uns.tmescope.mpp)"
        )
    run = Path(out) / sample_dir.name
    (run / F.OUTS / F.SPATIAL).mkdir(parents=True, exist_ok=True)
    for name in (F.HIRES_IMAGE, F.LOWRES_IMAGE):
        if (spatial / name).is_file():
            shutil.copyfile(spatial / name, run / F.OUTS / F.SPATIAL / name)
    image = run / images[0].name
    shutil.copyfile(images[0], image)
    shared = {k: factors[k] for k in (K.HIRES, K.LOWRES) if k in factors}
    n_bins = write_binned_outputs(
        cells, run / F.OUTS, mpp=mpp, bin_sizes=bin_sizes, scalefactors=shared,
        matrix_market=matrix_market,
    )  # fmt: skip
    return HDSection(path=run, image=image, mpp=mpp, n_bins=n_bins)


def write_binned_outputs(
    cells: ad.AnnData,
    outs: Path,
    *,
    mpp: float,
    bin_sizes: Sequence[int] = HD_BIN_SIZES,
    scalefactors: dict[str, float] | None = None,
    matrix_market: Sequence[int] = (),
) -> dict[int, int]:
    """Bin ``cells`` (counts, ``obsm["spatial"]`` in full-resolution px of µm/px ``mpp``) on
    the 2 µm grid and write ``outs/binned_outputs/square_NNNum/`` for every size of
    ``bin_sizes``. Returns the number of tissue bins per size."""
    sizes = sorted({int(s) for s in bin_sizes})
    if not sizes or any(s < FINEST_UM or s % FINEST_UM for s in sizes):
        raise InvalidParameterError(
            f"bin sizes must be multiples of {FINEST_UM} µm (Visium HD writes 2, 8 and 16), got "
            f"{list(bin_sizes)}"
        )
    block = math.lcm(*sizes) // FINEST_UM  # 2 µm bins along a tissue block's side
    fine_cells, counts = _finest_bins(cells, mpp=mpp)  # (n, 2) (col, row), (n, genes)
    tissue = _tissue_bins(fine_cells, block=block)  # (m, 2) every 2 µm bin of a tissue block
    fine = _sum_into(tissue, fine_cells, counts)  # (m, genes): cells' counts on tissue bins
    gene_ids = cells.var["gene_ids"].astype(str).tolist()
    gene_names = cells.var_names.astype(str).tolist()
    written = {}
    for size in sizes:
        factor = size // FINEST_UM
        coarse, members = np.unique(tissue // factor, axis=0, return_inverse=True)
        order = np.lexsort((coarse[:, 0], coarse[:, 1]))  # by row, then column (barcode order)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        summing = sp.csr_matrix(
            (np.ones(len(tissue)), (rank[members.ravel()], np.arange(len(tissue)))),
            shape=(len(coarse), len(tissue)),
        )
        binned = (summing @ fine).tocsr().astype(np.int32)  # (bins, genes)
        grid = coarse[order]
        folder = outs / F.BINNED_OUTPUTS / f"square_{size:03d}um"
        (folder / F.SPATIAL).mkdir(parents=True, exist_ok=True)
        barcodes = [f"s_{size:03d}um_{r:05d}_{c:05d}-1" for c, r in grid]
        side_px = size / mpp
        write_positions_parquet(
            folder / F.SPATIAL / F.POSITIONS_PARQUET,
            pd.DataFrame(
                {
                    "barcode": barcodes,
                    "in_tissue": np.ones(len(grid), dtype=int),
                    "array_row": grid[:, 1],
                    "array_col": grid[:, 0],
                    "x": (grid[:, 0] + 0.5) * side_px,
                    "y": (grid[:, 1] + 0.5) * side_px,
                }
            ),
        )
        write_scalefactors(
            folder / F.SPATIAL / F.SCALEFACTORS,
            {
                **(scalefactors or {}),
                K.SPOT_DIAMETER: side_px,
                K.BIN_SIZE_UM: float(size),
                K.MICRONS_PER_PIXEL: float(mpp),
            },
        )
        labels = {"barcodes": barcodes, "gene_ids": gene_ids, "gene_names": gene_names}
        write_10x_h5(folder / F.FILTERED_H5, binned, **labels)
        if size in matrix_market:
            write_10x_mtx(folder / F.FILTERED_MTX_DIR, binned, **labels)
        written[size] = len(grid)
    return written


def _finest_bins(cells: ad.AnnData, *, mpp: float) -> tuple[np.ndarray, sp.csr_matrix]:
    """Each cell's 2 µm bin ``(column, row)`` and its counts ``(n_cells, genes)``."""
    xy = np.asarray(cells.obsm["spatial"], dtype=np.float64)
    grid = np.floor(xy * mpp / FINEST_UM).astype(np.int64)
    if len(grid) and grid.min() < 0:
        raise InvalidParameterError("cells lie left of or above the image's pixel (0, 0)")
    return grid, sp.csr_matrix(cells.X)


def _tissue_bins(fine_cells: np.ndarray, *, block: int) -> np.ndarray:
    """``(m, 2)`` the 2 µm bins of every ``block`` × ``block`` square holding a cell."""
    blocks = np.unique(fine_cells // block, axis=0)  # (b, 2)
    offsets = np.stack(np.meshgrid(np.arange(block), np.arange(block)), axis=-1).reshape(-1, 2)
    return (blocks[:, None, :] * block + offsets[None, :, :]).reshape(-1, 2)


def _sum_into(tissue: np.ndarray, fine_cells: np.ndarray, counts: sp.csr_matrix) -> sp.csr_matrix:
    """``(len(tissue), genes)``: the counts of the cells in each tissue bin, summed."""
    width = int(tissue[:, 0].max()) + 1
    keys = tissue[:, 1] * width + tissue[:, 0]
    order = np.argsort(keys)
    where = order[np.searchsorted(keys[order], fine_cells[:, 1] * width + fine_cells[:, 0])]
    gather = sp.csr_matrix(
        (np.ones(len(fine_cells)), (where, np.arange(len(fine_cells)))),
        shape=(len(tissue), len(fine_cells)),
    )
    return (gather @ counts).tocsr()
