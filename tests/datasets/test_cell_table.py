"""synth's cells.h5ad: the rows of cells.csv with counts of their own."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from tmescope.datasets.catalogue import CELL_TYPES


def test_every_cell_of_cells_csv_has_counts_drawn_from_its_types_profile(
    synth_cohort: list[Path],
) -> None:
    folder = synth_cohort[0]
    table = ad.read_h5ad(folder / "cells.h5ad")
    cells = pd.read_csv(folder / "cells.csv")
    assert table.n_obs == len(cells) and table.n_vars == 200
    np.testing.assert_allclose(table.obsm["spatial"], cells[["x", "y"]].to_numpy(float))
    assert (table.obs["cell_type"].astype(str).to_numpy() == cells["cell_type"].to_numpy()).all()
    x = table.X.tocsr()
    assert x.dtype == np.int32 and x.data.min() >= 0
    # Each type's own markers: more counts in its cells than in all the others'.
    names = list(table.var_names)
    for cell_type in CELL_TYPES:
        mine = (table.obs["cell_type"] == cell_type.name).to_numpy()
        if mine.sum() < 5 or mine.all():
            continue
        markers = [names.index(g) for g in cell_type.markers]
        own = np.asarray(x[mine][:, markers].mean(axis=0)).ravel().sum()
        rest = np.asarray(x[~mine][:, markers].mean(axis=0)).ravel().sum()
        assert own > 3 * rest, cell_type.name
