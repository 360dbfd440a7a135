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


@pytest.fixture(scope="module", params=["h5", "mtx"])
def fine_only(run: Path, request: pytest.FixtureRequest) -> Path:
    """The run's ``outs/`` with only its 2 µm bins (as HDF5, or as Matrix Market alone)."""
    outs = run / f"fine_only_{request.param}" / "outs"
    fine = outs / "binned_outputs" / "square_002um"
    shutil.copytree(run / "outs" / "binned_outputs" / "square_002um", fine)
    if request.param == "mtx":
        (fine / "filtered_feature_bc_matrix.h5").unlink()
    else:
        shutil.rmtree(fine / "filtered_feature_bc_matrix")
    return outs


def test_an_unwritten_bin_size_reads_as_the_written_one(run: Path, fine_only: Path) -> None:
    """``read_visium`` at 16 µm from a run with only 2 µm bins is the written 16 µm sample."""
    image = run / "he.tif"
    with (
        read_visium(fine_only, image=image, bin_size_um=16) as summed,
        read_visium(run / "outs", image=image, bin_size_um=16) as written,
    ):
        assert summed.layout.summed_from == fine_only / "binned_outputs" / "square_002um"
        assert written.layout.summed_from is None
        for attribute in ("platform", "bin_size_um", "spot_diameter_um", "mpp", "mpp_source"):
            assert getattr(summed, attribute) == getattr(written, attribute), attribute
        assert list(summed.counts.obs_names) == list(written.counts.obs_names)
        assert (summed.counts.X != written.counts.X).nnz == 0
        # A Matrix Market folder has no genome column nor root attributes (the written 16 µm
        # is read from HDF5).
        from_h5 = fine_only.parent.name.endswith("h5")
        same = [c for c in written.counts.var if from_h5 or c != "genome"]
        pd.testing.assert_frame_equal(summed.counts.var[same], written.counts.var[same])
        assert summed.metadata == (written.metadata if from_h5 else {})
        pd.testing.assert_frame_equal(summed.spots, written.spots)
        pd.testing.assert_frame_equal(summed.counts.obs, written.counts.obs)
        np.testing.assert_allclose(summed.counts.obsm["spatial"], written.counts.obsm["spatial"])
        assert summed.scalefactors == written.scalefactors
        assert summed.scalefactors.raw == pytest.approx(written.scalefactors.raw)


def test_any_multiple_of_2_um_keeps_every_count(run: Path, fine_only: Path) -> None:
    with (
        read_visium(fine_only, image=run / "he.tif", bin_size_um=2) as fine,
        read_visium(fine_only, image=run / "he.tif", bin_size_um=34) as coarse,
    ):
        assert coarse.bin_size_um == coarse.spot_diameter_um == 34.0
        assert coarse.scalefactors.spot_diameter_fullres == pytest.approx(34 / MPP)
        assert coarse.n_spots < fine.n_spots / 100
        assert coarse.counts.X.sum() == fine.counts.X.sum()
        assert coarse.counts.obs_names[0].startswith("s_034um_")
