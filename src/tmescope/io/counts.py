"""Read spot × gene counts: 10x feature-barcode HDF5 (v3 and legacy v2) or Matrix Market folders.

Counts come back as an AnnData with barcodes as ``obs_names``, gene symbols (made unique) as
``var_names``, and ``var`` columns ``gene_ids``, ``feature_types``, ``genome``. Only "Gene
Expression" features are kept; antibody or CRISPR features of multiome runs are dropped. Every
reader checks what it hands on the same way (:mod:`tmescope.io.count_table`).
"""

from __future__ import annotations

import anndata as ad
import numpy as np

from tmescope.io.counts_h5 import read_10x_h5
from tmescope.io.counts_mtx import read_10x_mtx

__all__ = ["describe_disagreement", "read_10x_h5", "read_10x_mtx"]


def describe_disagreement(a: ad.AnnData, b: ad.AnnData) -> str | None:
    """Say how two count matrices of one sample differ, or ``None`` when they agree."""
    if a.shape != b.shape:
        return f"shapes differ ({a.n_obs}×{a.n_vars} vs {b.n_obs}×{b.n_vars})"
    if not np.array_equal(a.obs_names.to_numpy(), b.obs_names.to_numpy()):
        return "barcodes differ"
    if not np.array_equal(a.var["gene_ids"].to_numpy(), b.var["gene_ids"].to_numpy()):
        return "features differ"
    if (a.X != b.X).nnz:
        return "counts differ"
    return None
