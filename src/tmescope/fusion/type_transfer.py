"""Cell types for cells that come without them, transferred from the model's reference.

Each cell takes the reference type under whose expression profile its counts are most likely:
a multinomial naive Bayes over the genes the cells and the reference share (each profile
renormalised over those genes, with a pseudo-count of one read per 10,000 so that a gene a type
never expresses does not rule it out). It is what label transfer reduces to with one profile per
type; on a real section it confuses types with similar profiles (a T cell and an NK cell), and
a cell panel of a few hundred genes types cells less surely than a transcriptome. Cells with no
count on a shared gene stay untyped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError
from tmescope.fusion.reference import ReferenceProfiles

MIN_SHARED_GENES = 20
PSEUDO_SHARE = 1e-4


def transfer_cell_types(
    counts: sp.csr_matrix, genes: Sequence[str], reference: ReferenceProfiles
) -> np.ndarray:
    """``(n_cells,)`` the most likely reference type of each cell ("" where no shared gene has
    a count)."""
    if reference.markers:
        raise InvalidParameterError(
            "the model's populations are marker gene sets, not a reference of cells: give the "
            "cells' types in the table (cell_type), or train the model with --reference"
        )
    column = {g: i for i, g in enumerate(reference.genes)}
    shared = [(i, column[g]) for i, g in enumerate(genes) if g in column]
    if len(shared) < MIN_SHARED_GENES:
        raise InvalidParameterError(
            f"the cells share {len(shared)} genes with the model's reference (at least "
            f"{MIN_SHARED_GENES} are needed to transfer cell types); give the cells' types in "
            "the table (cell_type)"
        )
    cell_cols, ref_cols = (np.array(c) for c in zip(*shared, strict=True))
    profiles = np.asarray(reference.profiles, dtype=np.float64)[:, ref_cols]
    profiles = profiles / np.maximum(profiles.sum(axis=1, keepdims=True), 1e-300)
    log_share = np.log(profiles + PSEUDO_SHARE)  # (types, genes)
    x = sp.csr_matrix(counts)[:, cell_cols]
    likelihood = np.asarray(x @ log_share.T)  # (cells, types)
    labels = np.asarray(reference.cell_types, dtype=object)[likelihood.argmax(axis=1)]
    labels[np.asarray(x.sum(axis=1)).ravel() == 0] = ""
    return labels.astype(str)
