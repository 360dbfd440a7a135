"""Visium HD 2 µm bins summed into coarser bins a block at a time: the same bins, counts and
centres as Space Ranger's own (here the HD writer's) 8 and 16 µm bins, from HDF5 or Matrix
Market, whatever the block size."""

from __future__ import annotations

import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from factories import write_fullres_tiff
from tmescope.datasets.hd_writer import write_binned_outputs
from tmescope.errors import CountsFormatError, InvalidParameterError
from tmescope.io import read_visium
from tmescope.io.hd_aggregate import aggregate_hd_bins

MPP = 0.5


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HD-like run of 300 random cells over 120 × 120 µm, at 2, 8 and 16 µm; the 2 µm bins
    also as Matrix Market, and alone (no HDF5) in ``mtx_only/``."""
    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 240, (300, 2))
    cells = ad.AnnData(
        X=sp.random(300, 12, density=0.3, format="csr", random_state=4, dtype=np.float64)
        .ceil()
        .astype(np.int32)
        * 3,
        var=pd.DataFrame(
            {"gene_ids": [f"E{i}" for i in range(12)]}, index=[f"G{i}" for i in range(12)]
        ),
    )
    cells.obsm["spatial"] = xy
    root = tmp_path_factory.mktemp("hd_agg")
    outs = root / "outs"
    write_binned_outputs(cells, outs, mpp=MPP, matrix_market=(2,))
    fine = outs / "binned_outputs" / "square_002um"
    (root / "mtx_only").mkdir()
    for part in ("filtered_feature_bc_matrix", "spatial"):
        shutil.copytree(fine / part, root / "mtx_only" / part)
    write_fullres_tiff(root / "he.tif", np.full((288, 288, 3), 200, np.uint8), mpp=MPP)
    return root


@pytest.mark.parametrize("source", ["outs/binned_outputs/square_002um", "mtx_only"])
@pytest.mark.parametrize("size", [8, 16])
@pytest.mark.parametrize("chunk", [97, 1 << 21])
def test_summed_2_um_bins_are_the_coarse_bins(
    run: Path, source: str, size: int, chunk: int
) -> None:
    coarse = aggregate_hd_bins(run / source, size_um=size, chunk_entries=chunk)
    with read_visium(run / "outs", image=run / "he.tif", bin_size_um=size) as sample:
        assert coarse.size_um == size
        assert list(coarse.counts.obs_names) == list(sample.counts.obs_names)
        assert (coarse.counts.X != sample.counts.X).nnz == 0
        assert list(coarse.counts.var["gene_ids"]) == list(sample.counts.var["gene_ids"])
        expected = sample.spots.drop(columns="in_tissue").reset_index(drop=True)
        got = coarse.positions.drop(columns="in_tissue").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_a_bin_size_that_is_not_2_um_bins_is_refused(run: Path) -> None:
    with pytest.raises(InvalidParameterError, match="multiple of 2"):
        aggregate_hd_bins(run / "mtx_only", size_um=5)


def test_barcodes_of_another_bin_size_are_refused(run: Path) -> None:
    eight = run / "outs" / "binned_outputs" / "square_008um"
    with pytest.raises(CountsFormatError, match="not a 2 µm Visium HD bin"):
        aggregate_hd_bins(eight, size_um=16)
