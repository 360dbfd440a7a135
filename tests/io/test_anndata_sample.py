"""An AnnData of spots beside its H&E (scanpy's, HEST-1k's, pseudospots' layout) as a Sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from tmescope.errors import ImageMismatchError, InvalidParameterError
from tmescope.io import read_visium
from tmescope.io.anndata_sample import read_anndata_sample
from tmescope.io.input_kind import input_kind


@pytest.fixture
def spots_h5ad(synth_cohort: list[Path], tmp_path: Path) -> tuple[Path, Path]:
    """The first synthetic sample's spots as scanpy lays them out, and its full-res H&E."""
    folder = synth_cohort[0]
    image = next(folder.glob("*_he.tif"))
    with read_visium(folder, image=image) as sample:
        table = sample.counts.copy()
        table.uns["spatial"] = {"lib": {"scalefactors": {"spot_diameter_fullres": 110.0}}}
    path = tmp_path / "spots.h5ad"
    table.write_h5ad(path)
    return path, image


def test_counts_positions_and_the_spot_diameter_come_from_the_anndata(
    spots_h5ad: tuple[Path, Path], synth_cohort: list[Path]
) -> None:
    path, image = spots_h5ad
    with (
        read_anndata_sample(path, image=image) as sample,
        read_visium(synth_cohort[0], image=image) as reference,
    ):
        assert sample.sample_id == "spots" and input_kind(path) == "anndata"
        assert sample.mpp == pytest.approx(reference.mpp)  # the TIFF's resolution tags
        assert sample.spot_diameter_um == pytest.approx(110.0 * sample.mpp)
        np.testing.assert_allclose(sample.spots[["x", "y"]], reference.spots[["x", "y"]])
        assert (reference.counts.X.astype(np.float32) != sample.counts.X).nnz == 0
        assert sample.spots["barcode"].tolist() == list(reference.counts.obs_names)


def test_raw_counts_in_a_layer_are_preferred_to_normalised_x(
    spots_h5ad: tuple[Path, Path], tmp_path: Path
) -> None:
    path, image = spots_h5ad
    table = ad.read_h5ad(path)
    table.layers["counts"] = table.X.copy()
    table.X = np.log1p(table.X.toarray()) - 1.0  # negative: would be refused as counts
    table.write_h5ad(tmp_path / "normalised.h5ad")
    with read_anndata_sample(tmp_path / "normalised.h5ad", image=image, mpp=0.5) as sample:
        assert sample.counts.X.min() >= 0 and sample.mpp_source == "--mpp"


def test_missing_positions_and_positions_off_the_image_are_refused(
    spots_h5ad: tuple[Path, Path], tmp_path: Path
) -> None:
    path, image = spots_h5ad
    table = ad.read_h5ad(path)
    del table.obsm["spatial"]
    table.write_h5ad(tmp_path / "nopos.h5ad")
    with pytest.raises(InvalidParameterError, match=r"obsm\['spatial'\]"):
        read_anndata_sample(tmp_path / "nopos.h5ad", image=image)
    table = ad.read_h5ad(path)
    table.obsm["spatial"] = table.obsm["spatial"] * 50.0  # e.g. µm taken for pixels
    table.write_h5ad(tmp_path / "far.h5ad")
    with pytest.raises(ImageMismatchError, match="positions reach"):
        read_anndata_sample(tmp_path / "far.h5ad", image=image)
    with pytest.raises(InvalidParameterError, match="--image"):
        read_anndata_sample(path)  # no image anywhere


def test_a_hest_folder_and_an_id_find_the_table_the_image_and_the_resolution(
    spots_h5ad: tuple[Path, Path], tmp_path: Path
) -> None:
    path, image = spots_h5ad
    root = tmp_path / "hest"
    for folder in ("st", "wsis", "metadata"):
        (root / folder).mkdir(parents=True)
    shutil.copy(path, root / "st" / "TENX00.h5ad")
    shutil.copy(image, root / "wsis" / "TENX00.tif")
    (root / "metadata" / "TENX00.json").write_text(json.dumps({"pixel_size_um_estimated": 0.5}))
    assert input_kind(root) == "hest"
    with read_anndata_sample(root, sample_id="TENX00") as sample:
        assert sample.sample_id == "TENX00" and sample.slide.path.name == "TENX00.tif"
        assert sample.n_spots == 60
    with pytest.raises(InvalidParameterError, match="--sample-id"):
        read_anndata_sample(root)


def test_a_stored_anndata_sample_reopens_from_what_the_store_recorded(
    spots_h5ad: tuple[Path, Path],
) -> None:
    """The report, the viewer and query open a stored sample again from its source path."""
    from tmescope.io.reopen import reopen_sample

    path, image = spots_h5ad
    extra = {"image": str(image), "image_kind": "fullres", "platform": "visium",
             "spot_diameter_um": 55.0}  # fmt: skip
    with reopen_sample(path, extra=extra, mpp=0.5) as sample:
        assert sample.n_spots == 60 and sample.slide.path == image and sample.mpp == 0.5
