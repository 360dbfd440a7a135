"""The readers on real public files (../shared/data; each test skips when they are absent).

- visium_human_heart_scanpy: real Space Ranger 1.0.0 output cut to 100 barcodes × 100 genes;
  positions list without header (all 4,992 array spots), an all-black placeholder hires PNG.
- wsi_cmu1_small_region/CMU-1-Small-Region.svs: real Aperio SVS, 0.499 µm/px, 2220 × 2967 px.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmescope.errors import CountsFormatError, TmescopeWarning
from tmescope.io.counts import read_10x_h5
from tmescope.io.positions import read_positions
from tmescope.io.sample import Sample
from tmescope.io.slide_backends import OpenSlideSlide, TiffSlide, open_slide
from tmescope.io.visium import read_visium

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def heart_read(heart_dir: Path) -> Iterator[tuple[Sample, list[str]]]:
    """The heart sample and the warnings reading it gave."""
    with pytest.warns(TmescopeWarning) as record:
        sample = read_visium(heart_dir)
    with sample:
        yield sample, [str(w.message) for w in record]


@pytest.fixture
def heart(heart_read: tuple[Sample, list[str]]) -> Sample:
    return heart_read[0]


@pytest.fixture(scope="module")
def heart_positions(heart_dir: Path) -> pd.DataFrame:
    return read_positions(heart_dir / "spatial" / "tissue_positions_list.csv")


def test_heart_spots_and_genes(heart: Sample, heart_positions: pd.DataFrame) -> None:
    assert heart.n_spots == 100
    assert heart.n_genes == 100
    assert heart.counts.X.nnz == 656
    # a filtered matrix: every barcode is under tissue, as the positions file says
    in_tissue = heart_positions.set_index("barcode").loc[heart.counts.obs_names, "in_tissue"]
    assert heart.n_in_tissue == int(in_tissue.sum()) == 100
    assert heart.counts.var["gene_ids"].str.startswith("ENSG").all()
    assert heart.metadata["software_version"] == "spaceranger-1.0.0"
    assert heart.metadata["library_ids"] == ["custom"]


def test_heart_positions_list_without_header(heart_positions: pd.DataFrame) -> None:
    assert len(heart_positions) == 4992
    assert int(heart_positions["in_tissue"].sum()) == 4235
    assert heart_positions["array_row"].between(0, 77).all()
    assert heart_positions["array_col"].between(0, 127).all()
    # first line: ACGCCTGACACGCGCT-1,0,0,0,2546,2779 → y = pxl_row = 2546, x = pxl_col = 2779
    first = heart_positions.iloc[0]
    assert (first["barcode"], first["x"], first["y"]) == ("ACGCCTGACACGCGCT-1", 2779.0, 2546.0)


def test_heart_uses_lowres_because_hires_is_a_blank_placeholder(
    heart_read: tuple[Sample, list[str]],
) -> None:
    heart, messages = heart_read
    assert heart.image_kind == "lowres"
    assert heart.image_scale == pytest.approx(0.045004502)
    assert (heart.slide.width, heart.slide.height) == (600, 600)
    assert any("tissue_hires_image.png is a blank image" in m for m in messages)
    assert any("too coarse" in m for m in messages)


def test_heart_mpp_from_the_spot_pitch(heart: Sample, heart_positions: pd.DataFrame) -> None:
    """138 px between neighbours = 100 µm → 0.725 µm/px; then spot_diameter_fullres (89.43 px)
    is 65 µm, the "theoretical spot" of Space Ranger 1.x, not the 55 µm physical spot."""
    assert heart.mpp_source == "spot-pitch"
    assert heart.mpp == pytest.approx(100 / 138, rel=0.01)
    xy = heart_positions[["x", "y"]].to_numpy(float)
    nearest = np.sort(np.linalg.norm(xy[:200, None] - xy[None], axis=-1), axis=1)[:, 1]
    assert np.median(nearest) == pytest.approx(138, abs=1.5)
    assert heart.mpp * heart.scalefactors.spot_diameter_fullres == pytest.approx(65.0, rel=0.01)


def test_heart_spots_fall_on_tissue(heart: Sample, heart_positions: pd.DataFrame) -> None:
    """On the lowres H&E, spots Space Ranger called in tissue are darker than the others."""
    xy = heart_positions[["x", "y"]].to_numpy(float) * heart.image_scale
    image = heart.slide.read_level(0, 0, 0, heart.slide.width, heart.slide.height)
    cols, rows = np.rint(xy).astype(int).T
    assert (cols >= 0).all() and (cols < 600).all() and (rows >= 0).all() and (rows < 600).all()
    grey = image.mean(axis=2)[rows, cols]
    on, off = grey[heart_positions["in_tissue"]].mean(), grey[~heart_positions["in_tissue"]].mean()
    assert on < off - 15, (on, off)
    # the same through read_patch on the matrix spots (all in tissue)
    patches = [
        heart.read_patch(x, y, size_um=55, size_px=8).mean()
        for x, y in heart.spots[["x", "y"]].to_numpy()
    ]
    assert np.mean(patches) < off - 15


def test_heart_to_anndata(heart: Sample) -> None:
    adata = heart.to_anndata()
    entry = adata.uns["spatial"][heart.sample_id]
    assert entry["images"]["hires"].shape == (2000, 2000, 3)
    assert entry["images"]["lowres"].shape == (600, 600, 3)
    assert entry["scalefactors"]["spot_diameter_fullres"] == pytest.approx(89.42751063343188)
    np.testing.assert_array_equal(adata.obsm["spatial"], heart.spots[["x", "y"]].to_numpy())


def test_heart_h5_truncated(heart_dir: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "filtered_feature_bc_matrix.h5"
    truncated.write_bytes((heart_dir / "filtered_feature_bc_matrix.h5").read_bytes()[:3000])
    with pytest.raises(CountsFormatError, match="truncated") as info:
        read_10x_h5(truncated)
    assert isinstance(info.value, ValueError)


def test_heart_copied_as_outs(heart_dir: Path, tmp_path: Path) -> None:
    """The same files under run/outs/ read the same; the run is named after the folder."""
    shutil.copytree(heart_dir, tmp_path / "heart_run" / "outs")
    with pytest.warns(TmescopeWarning) as record:
        sample = read_visium(tmp_path / "heart_run")
    assert any("blank image" in str(w.message) for w in record)
    assert (sample.sample_id, sample.n_spots) == ("heart_run", 100)


# --------------------------------------------------------------------------------------------
# Aperio SVS


def test_svs_metadata(cmu1_svs: Path) -> None:
    with open_slide(cmu1_svs) as slide:
        assert isinstance(slide, TiffSlide)
        assert (slide.width, slide.height) == (2220, 2967)
        assert len(slide.levels) == 1
        assert (slide.mpp, slide.mpp_source) == (pytest.approx(0.499), "svs:MPP")


@pytest.mark.parametrize("backend", [TiffSlide, OpenSlideSlide])
def test_svs_region_colour(cmu1_svs: Path, backend: type) -> None:
    if backend is OpenSlideSlide:
        pytest.importorskip("openslide", reason="OpenSlide is the 'slides' extra")
    with backend(cmu1_svs) as slide:
        region = slide.read_region(1000, 1000, 224, 224, size=(224, 224))
        assert region.shape == (224, 224, 3) and region.dtype == np.uint8
        np.testing.assert_allclose(region.reshape(-1, 3).mean(axis=0), (152, 106, 145), atol=3)
        assert slide.mpp == pytest.approx(0.499)


def test_svs_backends_agree(cmu1_svs: Path) -> None:
    pytest.importorskip("openslide", reason="OpenSlide is the 'slides' extra")
    with TiffSlide(cmu1_svs) as a, OpenSlideSlide(cmu1_svs) as b:
        assert [lv.width for lv in a.levels] == [lv.width for lv in b.levels]
        ra = a.read_region(500, 700, 300, 200, size=(150, 100)).astype(float)
        rb = b.read_region(500, 700, 300, 200, size=(150, 100)).astype(float)
        assert np.abs(ra - rb).mean() < 3


def test_svs_region_off_the_edge_is_white(cmu1_svs: Path) -> None:
    with open_slide(cmu1_svs) as slide:
        region = slide.read_region(2220 - 100, 2967 - 100, 224, 224, size=(112, 112))
    assert (region[56:, :] == 255).all() and (region[:, 56:] == 255).all()
    assert region[:50, :50].mean() < 250
