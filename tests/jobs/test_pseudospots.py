"""tmescope pseudospots: a section's cells summed into Visium-like spots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from factories import write_fullres_tiff
from tmescope.errors import ImageMismatchError, InvalidParameterError
from tmescope.io.cell_table import read_cell_table
from tmescope.jobs.pseudospots import hex_lattice, make_pseudospots, pseudospots_from_file

MPP = 0.5


def test_at_the_sections_own_spots_the_compositions_are_its_spot_truth(
    synth_cohort: list[Path], tmp_path: Path
) -> None:
    """Pseudo-spots at synth's spot centres hold exactly the cells its truth counts."""
    folder = synth_cohort[0]
    truth = pd.read_csv(folder / "ground_truth.csv")
    out = tmp_path / "ps.h5ad"
    pseudospots_from_file(
        folder / "cells.h5ad", out=out, mpp=MPP, image=next(folder.glob("*_he.tif")),
        positions=folder / "ground_truth.csv",
    )  # fmt: skip
    spots = ad.read_h5ad(out)
    by_barcode = truth.set_index("barcode").loc[spots.obs_names]
    np.testing.assert_array_equal(spots.obs["n_cells"].to_numpy(), by_barcode["n_cells"])
    shares = spots.obsm["cell_composition"]
    for column in shares.columns:
        np.testing.assert_allclose(shares[column], by_barcode[column], atol=1e-6)
    # Counts are the sums of the cells in each disc.
    cells = ad.read_h5ad(folder / "cells.h5ad")
    first = spots.obsm["spatial"][0]
    inside = np.hypot(*(cells.obsm["spatial"] - first).T) <= 27.5 / MPP
    np.testing.assert_allclose(spots.X[0].toarray().ravel(), cells.X[inside].sum(axis=0).A1)
    assert spots.uns["spatial"]["ps"]["scalefactors"]["spot_diameter_fullres"] == 55 / MPP


def test_the_lattice_is_visiums_hexagonal_100_um_pitch() -> None:
    lattice = hex_lattice(np.array([0.0, 0.0]), np.array([2000.0, 2000.0]), pitch_px=200.0)
    xy = lattice[["x", "y"]].to_numpy()
    distance, _ = cKDTree(xy).query(xy, k=7)
    interior = (xy > 300).all(axis=1) & (xy < 1700).all(axis=1)
    np.testing.assert_allclose(distance[interior, 1:], 200.0, rtol=1e-9)
    assert ((lattice["array_row"] - lattice["array_col"]) % 2 == 0).all()


def test_a_table_without_counts_and_spots_off_the_image_are_refused(
    synth_cohort: list[Path], tmp_path: Path
) -> None:
    folder = synth_cohort[0]
    with pytest.raises(InvalidParameterError, match="no counts per cell"):
        make_pseudospots(read_cell_table(folder / "cells.csv"), mpp=MPP)
    small = write_fullres_tiff(tmp_path / "small.tif", np.full((64, 64, 3), 200, np.uint8), mpp=MPP)
    with pytest.raises(ImageMismatchError, match="positions reach"):
        pseudospots_from_file(folder / "cells.h5ad", out=tmp_path / "x.h5ad", mpp=MPP, image=small)
    assert not (tmp_path / "x.h5ad").exists()
    done = subprocess.run(
        [sys.executable, "-m", "tmescope", "pseudospots", str(folder / "cells.csv"), "--mpp",
         "0.5", "--out", str(tmp_path / "y.h5ad")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "counts" in done.stderr and not (tmp_path / "y.h5ad").exists()
