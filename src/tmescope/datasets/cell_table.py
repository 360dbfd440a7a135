"""Every cell of a synthetic section with its own counts (``cells.h5ad``): the cell-level
measurement a Xenium section, or Visium HD's 2 µm bins, would give of the same tissue.

Each row of ``cells.csv`` (same order) becomes a cell with UMI counts drawn from the spots'
expression model (see :mod:`~tmescope.datasets.expression`): its type's UMIs over its type's
profile, the spatial effects at its own position (interferon near tumour borders, hypoxia far
from vessels), a capture efficiency of its own and negative binomial noise with the cohort's
per-gene dispersion. No ambient RNA: what a pseudo-spot sums is its cells, as in iStar's and
Thor's validations. ``obsm["spatial"]`` holds the cells' level-0 pixels (the H&E's frame) and
``obs["cell_type"]`` the truth, so ``tmescope pseudospots`` and ``tmescope evaluate`` take it as
they take a user's own cell table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.datasets.catalogue import CELL_TYPES, TYPE_NAMES
from tmescope.datasets.expression import SPOT_EFFICIENCY_SD, GenePanel, spatial_factors
from tmescope.datasets.geometry import grid_values_at

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.datasets.tissue import TissueLayout

CELLS_H5AD = "cells.h5ad"
_CHUNK = 8192  # cells drawn at once: (chunk, genes) dense floats, a few MB


def simulate_cell_counts(
    cells: pd.DataFrame,
    layout: TissueLayout,
    *,
    cell_px: int,
    mpp: float,
    panel: GenePanel,
    rng: np.random.Generator,
) -> ad.AnnData:
    """Cells × genes counts (int32 CSR) of the cell table ``cells`` (``x, y, cell_type``).

    ``obs``: ``cell_type`` (categorical, the catalogue's order), ``n_counts``; ``obsm
    ["spatial"]``: ``(x, y)`` level-0 pixels; ``var`` indexed by gene name with ``gene_ids``.
    """
    import anndata as ad

    x, y = cells["x"].to_numpy(np.float64), cells["y"].to_numpy(np.float64)
    codes = pd.Categorical(cells["cell_type"].astype(str), categories=list(TYPE_NAMES)).codes
    umi = np.array([t.umi for t in CELL_TYPES], dtype=np.float64)
    border = grid_values_at(layout.border_um, x, y, cell_px=cell_px)
    vessel = grid_values_at(layout.vessel_um, x, y, cell_px=cell_px)
    size = panel.dispersion[None, :]
    parts = []
    for start in range(0, len(cells), _CHUNK):
        rows = slice(start, start + _CHUNK)
        types = codes[rows]
        mean = umi[types, None] * panel.profiles[types]
        mean *= spatial_factors(panel.names, border_um=border[rows], vessel_um=vessel[rows])
        mean *= rng.lognormal(0.0, SPOT_EFFICIENCY_SD, (len(types), 1))
        parts.append(sp.csr_matrix(rng.poisson(rng.gamma(size, mean / size)).astype(np.int32)))
    counts = (
        sp.vstack(parts, format="csr")
        if parts
        else sp.csr_matrix((0, len(panel.names)), dtype=np.int32)
    )
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(codes, categories=list(TYPE_NAMES)),
            "n_counts": np.asarray(counts.sum(axis=1)).ravel(),
        },
        index=pd.Index([f"cell_{i:07d}" for i in range(len(cells))]),
    )
    var = pd.DataFrame({"gene_ids": list(panel.ids)}, index=pd.Index(list(panel.names)))
    table = ad.AnnData(X=counts, obs=obs, var=var)
    table.obsm["spatial"] = np.c_[x, y]
    table.uns["tmescope"] = {
        "generator": "tmescope.datasets.write_synthetic_cohort",
        "counts": "raw UMI counts of every cell of the section, the spots' expression model",
        "spatial": "level-0 pixels of the sample's full-resolution H&E",
        "mpp": float(mpp),
    }
    return table
