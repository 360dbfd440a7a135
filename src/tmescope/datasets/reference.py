"""A simulated single-cell reference of the synthetic cohort (``reference.h5ad``).

Cells of every synthetic type are drawn from the same expression model as the spots (see
``expression``): a cell's UMIs, its type's profile, negative binomial noise with the cohort's
per-gene dispersion. What a real reference adds is kept: capture efficiency varies from cell to
cell, and the single-cell platform measures each gene a little differently from the spots (a
gene-wise shift), so a deconvolution method meets the platform effect it meets in the field. No
ambient RNA and no spatial effects: dissociated cells have neither neighbours nor a border.

As in the spot truth, an osteoclast contributes one "cell" per nucleus and its UMIs per nucleus,
so shares of cells mean the same thing in the reference, the spots and ``cells.csv``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.datasets.catalogue import CELL_TYPES, TYPE_NAMES
from tmescope.datasets.expression import BATCH_SD, SPOT_EFFICIENCY_SD, GenePanel

if TYPE_CHECKING:
    import anndata as ad

REFERENCE_H5AD = "reference.h5ad"
CELLS_PER_TYPE = 200
LABEL_KEY = "cell_type"


def simulate_reference(
    panel: GenePanel, *, rng: np.random.Generator, cells_per_type: int = CELLS_PER_TYPE
) -> ad.AnnData:
    """Raw counts of ``cells_per_type`` single cells of every type (cells × genes, int32 CSR).

    ``obs["cell_type"]`` holds each cell's type (categorical, in the catalogue's order) and
    ``obs["n_counts"]`` its library size; ``var`` is indexed by gene name with ``gene_ids``.
    """
    import anndata as ad

    n_types = len(CELL_TYPES)
    types = np.repeat(np.arange(n_types), cells_per_type)  # (n_cells,)
    umi = np.array([t.umi for t in CELL_TYPES])[types]  # (n_cells,)
    efficiency = np.asarray(rng.lognormal(0.0, SPOT_EFFICIENCY_SD, types.size))  # (n_cells,)
    platform = np.asarray(rng.lognormal(0.0, BATCH_SD, panel.profiles.shape[1]))  # (n_genes,)
    mean = (umi * efficiency)[:, None] * panel.profiles[types] * platform[None, :]
    size = panel.dispersion[None, :]
    counts = rng.poisson(rng.gamma(size, mean / size)).astype(np.int32)  # (n_cells, n_genes)
    obs = pd.DataFrame(
        {
            LABEL_KEY: pd.Categorical.from_codes(types, categories=list(TYPE_NAMES)),
            "n_counts": counts.sum(axis=1),
        },
        index=pd.Index([f"cell_{i:05d}" for i in range(types.size)]),
    )
    var = pd.DataFrame({"gene_ids": list(panel.ids)}, index=pd.Index(list(panel.names)))
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    adata.uns["tmescope"] = {
        "generator": "tmescope.datasets.write_synthetic_cohort",
        "counts": "raw UMI counts of single cells, same expression model as the spots",
        "label_key": LABEL_KEY,
    }
    return adata
