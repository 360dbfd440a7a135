"""read_visium end to end: every reader path, image choice, µm/px, Sample and its AnnData."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import (
    SyntheticVisium,
    add_fullres_tiff,
    hex_lattice,
    write_counts,
    write_fullres_tiff,
    write_png,
    write_tiff_plain,
    write_visium,
    write_visium_hd,
)
from tmescope.errors import ImageMismatchError, InvalidParameterError, TmescopeWarning
from tmescope.io.sample import Sample
from tmescope.io.slide_backends import PilSlide, TiffSlide
from tmescope.io.visium import read_visium

NO_WARNING = pytest.mark.filterwarnings("error::tmescope.errors.TmescopeWarning")


def assert_matches(sample: Sample, truth: SyntheticVisium) -> None:
    """Spots, counts and their join are what the factory wrote."""
    expected = truth.matrix_spots
    assert sample.spots["barcode"].tolist() == truth.barcodes  # one spot per barcode, matrix order
    np.testing.assert_array_equal(
        sample.spots[["x", "y"]].to_numpy(), expected[["x", "y"]].to_numpy()
    )
    np.testing.assert_array_equal(sample.spots["array_row"], expected["array_row"])
    np.testing.assert_array_equal(sample.spots["in_tissue"], expected["in_tissue"].astype(bool))
    assert sample.counts.obs_names.tolist() == truth.barcodes
    np.testing.assert_array_equal(sample.counts.X.toarray(), truth.counts.toarray())
    assert sample.counts.var["gene_ids"].tolist() == truth.gene_ids
    assert sample.n_spots == len(truth.barcodes)
    assert sample.n_genes == len(truth.gene_ids)


@NO_WARNING
def test_default_run(visium_run: SyntheticVisium) -> None:
    with read_visium(visium_run.path) as sample:
        assert_matches(sample, visium_run)
        assert sample.sample_id == "run1"
        assert sample.platform == "visium"
        assert sample.source == visium_run.outs
        assert sample.image_kind == "hires"
        assert isinstance(sample.slide, PilSlide)
        assert sample.image_scale == visium_run.scalefactors["tissue_hires_scalef"]
        assert sample.mpp == pytest.approx(visium_run.mpp, rel=1e-9)
        assert sample.mpp_source == "spot-pitch"
        assert sample.image_mpp == pytest.approx(visium_run.mpp / 0.6)
        assert sample.spot_diameter_um == 55.0
        assert sample.bin_size_um is None
        assert sample.scalefactors.spot_diameter_fullres == pytest.approx(55.0)
        assert sample.metadata["software_version"] == "spaceranger-synthetic"


@NO_WARNING
@pytest.mark.parametrize(
    ("positions", "matrix", "layout"),
    [
        ("v1", ("h5",), "parent"),
        ("v1_header", ("h5_no_attrs",), "outs"),
        ("v2", ("h5_legacy",), "flat"),
        ("v2_no_header", ("mtx_gz",), "parent"),
        ("v2", ("mtx",), "outs"),
        ("v1", ("mtx_genes_tsv",), "flat"),
        ("v2", ("h5", "mtx_gz"), "parent"),  # both, agreeing: no warning
        ("v1", ("h5_legacy", "mtx"), "outs"),
    ],
)
def test_every_reader_path(
    tmp_path: Path, positions: str, matrix: tuple[str, ...], layout: str
) -> None:
    truth = write_visium(tmp_path, positions=positions, matrix=matrix, layout=layout, mpp=0.8)
    with read_visium(truth.path) as sample:
        assert_matches(sample, truth)
        assert sample.sample_id == "run1"
        assert sample.mpp == pytest.approx(0.8, rel=1e-9)


@NO_WARNING
def test_raw_matrix_with_off_tissue_spots(tmp_path: Path) -> None:
    truth = write_visium(tmp_path, matrix=(), matrix_barcodes="all")
    write_counts(
        truth.outs,
        truth.counts,
        barcodes=truth.barcodes,
        gene_ids=truth.gene_ids,
        gene_names=truth.gene_names,
        fmt="h5",
        prefix="raw",
    )
    with read_visium(truth.path) as sample:
        assert_matches(sample, truth)
        assert sample.n_spots == len(truth.spots)
        assert sample.n_in_tissue == int(truth.spots["in_tissue"].sum()) < sample.n_spots


def test_disagreeing_h5_and_mtx_warn_and_use_the_h5(tmp_path: Path) -> None:
    truth = write_visium(tmp_path, matrix=("h5",))
    other = truth.counts.copy()
    other.data[:3] += 7
    write_counts(
        truth.outs,
        other,
        barcodes=truth.barcodes,
        gene_ids=truth.gene_ids,
        gene_names=truth.gene_names,
        fmt="mtx_gz",
    )
    with pytest.warns(
        TmescopeWarning, match=r"disagree \(counts differ\); using filtered_feature_bc_matrix\.h5"
    ):
        sample = read_visium(truth.path)
    np.testing.assert_array_equal(sample.counts.X.toarray(), truth.counts.toarray())


def test_unreadable_mtx_beside_the_h5_warns(tmp_path: Path) -> None:
    truth = write_visium(tmp_path, matrix=("h5", "mtx_gz"))
    (truth.outs / "filtered_feature_bc_matrix" / "barcodes.tsv.gz").unlink()
    with pytest.warns(TmescopeWarning, match="Matrix Market folder is unreadable"):
        sample = read_visium(truth.path)
    assert_matches(sample, truth)


@NO_WARNING
def test_sample_id_override(visium_run: SyntheticVisium) -> None:
    assert read_visium(visium_run.path, sample_id="patient7").sample_id == "patient7"


# --------------------------------------------------------------------------------------------
# Which image, and its resolution


@NO_WARNING
def test_hires_only(tmp_path: Path) -> None:
    truth = write_visium(tmp_path, images=("hires",))
    sample = read_visium(truth.path)
    assert (sample.image_kind, sample.image_scale) == ("hires", 0.6)


def test_lowres_only_warns_that_it_is_too_coarse(tmp_path: Path) -> None:
    truth = write_visium(tmp_path, images=("lowres",))
    with pytest.warns(TmescopeWarning, match=r"tissue_lowres_image\.png at 6\.7 µm/px, too coarse"):
        sample = read_visium(truth.path)
    assert (sample.image_kind, sample.image_scale) == ("lowres", 0.15)
    assert sample.mpp == pytest.approx(truth.mpp)


@pytest.mark.parametrize("value", [0, 255])
def test_blank_hires_placeholder_falls_back_to_lowres(tmp_path: Path, value: int) -> None:
    truth = write_visium(tmp_path)
    with Image.open(truth.images["hires"]) as image:
        hires = np.full((image.height, image.width, 4), value, np.uint8)
    hires[..., 3] = 255
    write_png(truth.images["hires"], hires)  # scanpy's all-black RGBA stand-in
    with pytest.warns(TmescopeWarning) as record:
        sample = read_visium(truth.path)
    messages = [str(w.message) for w in record]
    assert any(
        "tissue_hires_image.png is a blank image" in m and "using tissue_lowres_image.png" in m
        for m in messages
    )
    assert sample.image_kind == "lowres"


@NO_WARNING
def test_fullres_pyramidal_tiff(visium_run: SyntheticVisium) -> None:
    with read_visium(visium_run.path, image=visium_run.fullres_tiff) as sample:
        assert sample.image_kind == "fullres"
        assert sample.image_scale == 1.0
        assert isinstance(sample.slide, TiffSlide)
        assert len(sample.slide.levels) == 3
        assert (sample.slide.width, sample.slide.height) == visium_run.fullres.shape[1::-1]
        assert sample.mpp == pytest.approx(visium_run.mpp, rel=1e-6)
        assert sample.mpp_source == "tiff:XResolution"
        assert sample.image_mpp == sample.mpp


def test_tiff_metadata_disagreeing_with_the_pitch_warns(tmp_path: Path) -> None:
    truth = write_visium(tmp_path)
    tiff = add_fullres_tiff(truth, mpp=1.5)
    with pytest.warns(
        TmescopeWarning, match=r"says 1\.5000 µm/px but the spot pitch gives 1\.0000 µm/px"
    ):
        sample = read_visium(truth.path, image=tiff)
    with sample:
        assert sample.mpp == pytest.approx(1.5)  # the image's own metadata wins; the user is told
        assert sample.mpp_source == "tiff:XResolution"


@NO_WARNING
def test_fullres_ome_tiff(tmp_path: Path) -> None:
    truth = write_visium(tmp_path, mpp=0.5)
    meta = {"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm"}
    path = write_tiff_plain(
        tmp_path / "he.ome.tif", truth.fullres, ome=True, photometric="rgb", metadata=meta
    )
    with read_visium(truth.path, image=path) as sample:
        assert (sample.mpp, sample.mpp_source) == (pytest.approx(0.5), "ome:PhysicalSizeX")


@NO_WARNING
def test_fullres_png_without_metadata_uses_the_pitch(tmp_path: Path) -> None:
    truth = write_visium(tmp_path, mpp=0.9)
    write_png(tmp_path / "he.png", truth.fullres)
    sample = read_visium(truth.path, image=tmp_path / "he.png")
    assert sample.image_kind == "fullres"
    assert (sample.mpp, sample.mpp_source) == (pytest.approx(0.9, rel=1e-9), "spot-pitch")


@NO_WARNING
def test_explicit_mpp_wins(visium_run: SyntheticVisium) -> None:
    with read_visium(visium_run.path, image=visium_run.fullres_tiff, mpp=0.77) as sample:
        assert (sample.mpp, sample.mpp_source) == (0.77, "user")


@pytest.mark.parametrize("mpp", [0.0, -0.5, math.nan])
def test_explicit_mpp_must_be_positive(visium_run: SyntheticVisium, mpp: float) -> None:
    with pytest.raises(InvalidParameterError, match="mpp must be a positive number") as info:
        read_visium(visium_run.path, mpp=mpp)
    assert isinstance(info.value, ValueError)


@NO_WARNING
def test_rotated_and_mirrored_section(tmp_path: Path) -> None:
    spots = hex_lattice(mpp=1.1, origin_px=(300.0, 80.0), rotation_deg=35.0)
    spots["x"] = 900.0 - spots["x"]  # mirrored, as a section placed face down
    assert spots["x"].min() > 100
    truth = write_visium(tmp_path, spots=spots, mpp=1.1)
    assert read_visium(truth.path).mpp == pytest.approx(1.1, rel=1e-9)


@NO_WARNING
def test_explicit_mpp_rescues_a_single_row(tmp_path: Path) -> None:
    truth = write_visium(tmp_path, spots=hex_lattice(1, 8).assign(in_tissue=True))
    sample = read_visium(truth.path, mpp=1.0)
    assert sample.mpp_source == "user"


# --------------------------------------------------------------------------------------------
# Patches


def in_tissue_xy(sample: Sample) -> np.ndarray:
    return sample.spots.loc[sample.spots["in_tissue"], ["x", "y"]].to_numpy(float)


@pytest.mark.parametrize("image", ["hires", "lowres", "fullres"])
@pytest.mark.filterwarnings("ignore:.*too coarse:tmescope.errors.TmescopeWarning")
def test_read_patch_lands_on_the_spots(
    visium_run: SyntheticVisium, tmp_path: Path, image: str
) -> None:
    if image == "lowres":
        sample = read_visium(write_visium(tmp_path, images=("lowres",)).path)
    else:
        sample = read_visium(
            visium_run.path, image=visium_run.fullres_tiff if image == "fullres" else None
        )
    assert sample.image_kind == image
    with sample:
        for x, y in in_tissue_xy(sample):
            patch = sample.read_patch(x, y, size_um=30.0, size_px=24)
            assert patch.shape == (24, 24, 3) and patch.dtype == np.uint8
            assert patch.mean() < 140, (x, y)  # the dark 55 µm spot fills a 30 µm patch
        background = sample.read_patch(20.0, 20.0, size_um=30.0, size_px=24)
        assert background.mean() > 200


def test_patches_agree_across_images(visium_run: SyntheticVisium) -> None:
    """The same 100 µm square read from the full-res TIFF and the hires PNG looks the same."""
    with (
        read_visium(visium_run.path) as hires,
        read_visium(visium_run.path, image=visium_run.fullres_tiff) as full,
    ):
        for x, y in in_tissue_xy(full)[:6] + np.array([25.0, -10.0]):  # off-centre too
            a = hires.read_patch(x, y, size_um=100.0, size_px=48).astype(float)
            b = full.read_patch(x, y, size_um=100.0, size_px=48).astype(float)
            assert np.abs(a - b).mean() < 8


def test_read_patch_matches_the_truth(visium_run: SyntheticVisium) -> None:
    """At the image's own resolution and on whole pixels a patch is the image itself."""
    with read_visium(visium_run.path, image=visium_run.fullres_tiff, mpp=1.0) as sample:
        patch = sample.read_patch(232.0, 300.0, size_um=64.0, size_px=64)
    np.testing.assert_array_equal(patch, visium_run.fullres[268:332, 200:264])


def test_read_patch_off_the_image_is_white(visium_run: SyntheticVisium) -> None:
    with read_visium(visium_run.path, image=visium_run.fullres_tiff) as sample:
        patch = sample.read_patch(0.0, 0.0, size_um=100.0, size_px=50)
    assert (patch[:25, :] == 255).all() and (patch[:, :25] == 255).all()
    assert (patch[25:, 25:] < 255).any()


@pytest.mark.parametrize(
    ("size_um", "size_px", "level"), [(100, 100, 0), (400, 100, 1), (900, 100, 2)]
)
def test_read_patch_reads_the_best_level(
    visium_run: SyntheticVisium,
    monkeypatch: pytest.MonkeyPatch,
    size_um: float,
    size_px: int,
    level: int,
) -> None:
    with read_visium(visium_run.path, image=visium_run.fullres_tiff) as sample:
        seen: list[int] = []
        original = sample.slide.read_level
        monkeypatch.setattr(
            sample.slide, "read_level", lambda lv, *a: seen.append(lv) or original(lv, *a)
        )
        x, y = in_tissue_xy(sample)[0]
        sample.read_patch(x, y, size_um=size_um, size_px=size_px)
    assert seen == [level]


# --------------------------------------------------------------------------------------------
# AnnData as squidpy.read.visium lays it out


@NO_WARNING
def test_to_anndata_layout(visium_run: SyntheticVisium) -> None:
    with read_visium(visium_run.path) as sample:
        adata = sample.to_anndata()
    assert adata.obs_names.tolist() == visium_run.barcodes
    assert list(adata.obs.columns) == ["in_tissue", "array_row", "array_col"]
    expected = visium_run.matrix_spots
    np.testing.assert_array_equal(adata.obsm["spatial"], expected[["x", "y"]].to_numpy())  # (x, y)
    entry = adata.uns["spatial"]["run1"]
    assert set(entry) == {"images", "scalefactors", "metadata"}
    assert entry["scalefactors"] == visium_run.scalefactors
    assert entry["metadata"]["software_version"] == "spaceranger-synthetic"
    assert "source_image_path" not in entry["metadata"]
    for kind in ("hires", "lowres"):
        image = entry["images"][kind]
        on_disk = np.asarray(Image.open(visium_run.images[kind]))
        assert image.dtype == np.uint8 and image.shape == on_disk.shape
        np.testing.assert_array_equal(image, on_disk)
        # the (x, y) order: scaled spot centres fall on the dark discs of each image
        scale = visium_run.scalefactors[f"tissue_{kind}_scalef"]
        cols, rows = np.rint(adata.obsm["spatial"] * scale).astype(int).T
        assert image[rows, cols].mean() < 140
        assert (
            image[cols.clip(max=image.shape[0] - 1), rows.clip(max=image.shape[1] - 1)].mean() > 150
        )


@NO_WARNING
def test_to_anndata_with_fullres_and_a_library_id(visium_run: SyntheticVisium) -> None:
    with read_visium(visium_run.path, image=visium_run.fullres_tiff) as sample:
        adata = sample.to_anndata(library_id="lib1")
    meta = adata.uns["spatial"]["lib1"]["metadata"]
    assert meta["source_image_path"] == str(visium_run.fullres_tiff)
    assert set(adata.uns["spatial"]["lib1"]["images"]) == {"hires", "lowres"}


@NO_WARNING
@pytest.mark.parametrize("mode", ["RGBA", "P", "L"])
def test_to_anndata_images_are_rgb_uint8(tmp_path: Path, mode: str) -> None:
    truth = write_visium(tmp_path)
    rgb = np.asarray(Image.open(truth.images["hires"]))
    Image.fromarray(rgb).convert(mode).save(truth.images["hires"])
    expected = np.asarray(Image.open(truth.images["hires"]).convert("RGB"))
    with read_visium(truth.path) as sample:
        hires = sample.to_anndata().uns["spatial"]["run1"]["images"]["hires"]
        np.testing.assert_array_equal(hires, expected)
        np.testing.assert_array_equal(sample.slide.read_level(0, 0, 0, *rgb.shape[1::-1]), expected)


# --------------------------------------------------------------------------------------------
# Visium HD


@NO_WARNING
def test_visium_hd_default_bins(tmp_path: Path) -> None:
    hd = write_visium_hd(tmp_path)
    with read_visium(hd.path) as sample:
        assert sample.platform == "visium_hd"
        assert sample.sample_id == "hd_run"
        assert sample.bin_size_um == 8.0 and sample.spot_diameter_um == 8.0
        assert (sample.mpp, sample.mpp_source) == (hd.mpp, "scalefactors:microns_per_pixel")
        assert sample.n_spots == 36 and sample.n_in_tissue == 35
        assert sample.image_kind == "hires" and sample.image_scale == 0.5
        np.testing.assert_array_equal(
            sample.spots[["x", "y"]].to_numpy(), hd.bins[8][["x", "y"]].to_numpy()
        )


@NO_WARNING
@pytest.mark.parametrize("size", [2, 16])
def test_visium_hd_explicit_bins_without_microns_per_pixel(tmp_path: Path, size: int) -> None:
    hd = write_visium_hd(tmp_path, with_microns_per_pixel=False)
    with read_visium(hd.path, bin_size_um=size) as sample:
        assert sample.bin_size_um == size
        assert (sample.mpp, sample.mpp_source) == (pytest.approx(hd.mpp, rel=1e-9), "spot-pitch")


@NO_WARNING
def test_visium_hd_bin_folder_directly(tmp_path: Path) -> None:
    hd = write_visium_hd(tmp_path)
    with read_visium(hd.outs / "binned_outputs" / "square_016um") as sample:
        assert (sample.platform, sample.bin_size_um, sample.n_spots) == ("visium_hd", 16.0, 36)
        assert sample.sample_id == "hd_run"


def test_the_slide_is_closed_when_reading_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = write_visium(tmp_path)
    small = write_fullres_tiff(tmp_path / "small.tif", truth.fullres[:100, :100], mpp=1.0)
    closed: list[bool] = []
    original = TiffSlide.close
    monkeypatch.setattr(TiffSlide, "close", lambda self: closed.append(True) or original(self))
    with pytest.raises(ImageMismatchError):
        read_visium(truth.path, image=small)
    assert closed == [True]
