"""A Visium HD-like run from cells: 2 µm bins under the cells, 8 and 16 µm bins their sums, read
back by read_visium at every bin size."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from factories import write_fullres_tiff
from tmescope.datasets.hd_writer import write_binned_outputs, write_hd_section
from tmescope.errors import InvalidParameterError
from tmescope.io import read_visium

MPP = 0.5


def _cells() -> ad.AnnData:
    """Six cells (level-0 px at 0.5 µm/px) with counts of three genes; two share a 2 µm bin."""
    xy = np.array([[10, 10], [11, 11], [30, 10], [70, 90], [100, 20], [33, 65]], float)
    counts = sp.csr_matrix(np.arange(18, dtype=np.int32).reshape(6, 3) % 5)
    cells = ad.AnnData(
        X=counts,
        obs=pd.DataFrame({"cell_type": list("aabbab")}, index=[f"c{i}" for i in range(6)]),
        var=pd.DataFrame({"gene_ids": ["E1", "E2", "E3"]}, index=["G1", "G2", "G3"]),
    )
    cells.obsm["spatial"] = xy
    return cells


def test_coarser_bins_are_the_sums_of_the_2_um_bins_and_read_back(tmp_path: Path) -> None:
    cells = _cells()
    outs = tmp_path / "run" / "outs"
    written = write_binned_outputs(cells, outs, mpp=MPP)
    image = write_fullres_tiff(tmp_path / "he.tif", np.full((128, 128, 3), 200, np.uint8), mpp=MPP)
    # Tissue: every bin of a 16 µm block holding a cell (32 px blocks: four of them here).
    blocks = np.unique(np.floor(cells.obsm["spatial"] * MPP / 16), axis=0)
    assert written == {2: len(blocks) * 64, 8: len(blocks) * 4, 16: len(blocks)}
    total = np.asarray(cells.X.sum(axis=0)).ravel()
    for size in (2, 8, 16):
        with read_visium(outs, image=image, bin_size_um=size) as sample:
            assert sample.platform == "visium_hd" and sample.bin_size_um == size
            assert sample.mpp == MPP and sample.mpp_source == "scalefactors:microns_per_pixel"
            assert sample.n_spots == written[size] and sample.spots["in_tissue"].all()
            np.testing.assert_array_equal(np.asarray(sample.counts.X.sum(axis=0)).ravel(), total)
            # Each cell's counts lie in the bin whose square holds its centre.
            spots = sample.spots.set_index("barcode")
            side = size / MPP
            for i, (x, y) in enumerate(cells.obsm["spatial"]):
                col, row = int(x // side), int(y // side)
                barcode = f"s_{size:03d}um_{row:05d}_{col:05d}-1"
                assert spots.loc[barcode, ["x", "y"]].tolist() == [
                    (col + 0.5) * side,
                    (row + 0.5) * side,
                ]
                binned = sample.counts[barcode].X.toarray().ravel()
                assert (binned >= cells.X[i].toarray().ravel()).all()
    with read_visium(outs, image=image, bin_size_um=2) as fine:
        both = fine.counts["s_002um_00002_00002-1"].X.toarray().ravel()  # cells 0 and 1
        np.testing.assert_array_equal(both, cells.X[:2].sum(axis=0).A1)


def test_bin_sizes_must_be_multiples_of_2_um(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="multiples of 2"):
        write_binned_outputs(_cells(), tmp_path / "outs", mpp=MPP, bin_sizes=(2, 5))


def test_a_synthetic_section_becomes_an_hd_run_beside_its_image(
    synth_cohort: list[Path], tmp_path: Path
) -> None:
    section = write_hd_section(synth_cohort[0], tmp_path, bin_sizes=(8, 16), matrix_market=(8,))
    assert section.path == tmp_path / synth_cohort[0].name and section.image.is_file()
    assert (section.bin_dir(8) / "filtered_feature_bc_matrix" / "matrix.mtx.gz").is_file()
    cells = ad.read_h5ad(synth_cohort[0] / "cells.h5ad")
    with read_visium(section.path, image=section.image) as sample:  # 8 µm: the default
        assert sample.bin_size_um == 8 and sample.n_spots == section.n_bins[8]
        assert sample.counts.X.sum() == cells.X.sum()
        assert sample.slide.width > sample.spots["x"].max()
    with pytest.raises(InvalidParameterError, match=r"cells\.h5ad"):
        write_hd_section(tmp_path, tmp_path / "again")
