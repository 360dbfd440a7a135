"""SpatialData zarrs as samples: written here with spatialdata's own models (and spatialdata-io's
Visium reader), read back with ``read_spatialdata``: positions through the elements'
transformations, µm/px from the spot or bin pitch or a µm coordinate system, the lazy slide, and
the one-line errors (two tables, no H&E, a DAPI image, units missing from their shapes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from factories import (
    SyntheticVisium,
    hex_lattice,
    lattice_extent,
    random_counts,
    render_tissue,
    square_lattice,
)
from tmescope.errors import (
    CountsFormatError,
    ImageMismatchError,
    InvalidParameterError,
    ResolutionError,
    SlideReadError,
)
from tmescope.io.spatialdata_sample import is_spatialdata, read_spatialdata
from tmescope.io.zarr_slide import ZarrSlide

# zarr 3.1 warns of its coming autosharding on every array spatialdata writes.
pytestmark = pytest.mark.filterwarnings("ignore:.*autosharding:UserWarning")

MPP = 1.0  # µm per full-resolution px
HALF_MPP = 0.8  # the Visium fixture, whose image is stored at half resolution (1.6 µm/px)
N_GENES = 6


def _image(pixels: np.ndarray, system: str, transform: Any = None, **kwargs: Any) -> Any:
    """A 2-level multiscale image of ``(h, w, c)`` pixels."""
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity

    return Image2DModel.parse(
        np.moveaxis(pixels, -1, 0), dims=("c", "y", "x"), scale_factors=[2], chunks=64,
        transformations={system: transform or Identity()}, **kwargs,
    )  # fmt: skip


def _circles(xy: np.ndarray, radius: float, system: str, transform: Any = None) -> Any:
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import Identity

    index = pd.Index(np.arange(len(xy)) + 100, name="spot_id")  # not the table's row numbers
    return ShapesModel.parse(
        xy, geometry=0, radius=np.full(len(xy), radius), index=index,
        transformations={system: transform or Identity()},
    )  # fmt: skip


def _table(spots: pd.DataFrame, region: str, *, seed: int = 0, grid: bool = True) -> ad.AnnData:
    """Counts of ``spots`` (shuffled rows) annotating ``region``'s circles 100, 101, …"""
    from spatialdata.models import TableModel

    order = np.random.default_rng(seed).permutation(len(spots))
    obs = pd.DataFrame(
        {"region": pd.Categorical([region] * len(spots)), "spot_id": order + 100},
        index=spots["barcode"].to_numpy()[order],
    )
    if grid:
        obs[["array_row", "array_col"]] = spots[["array_row", "array_col"]].to_numpy()[order]
    counts = random_counts(len(spots), N_GENES, seed=seed)
    table = ad.AnnData(X=counts.astype(np.float32), obs=obs)
    table.var_names = [f"GENE{i}" for i in range(N_GENES)]
    return TableModel.parse(table, region=region, region_key="region", instance_key="spot_id")


def _write(path: Path, **elements: Any) -> Path:
    import spatialdata as sd

    sd.SpatialData(**elements).write(path)
    return path


@pytest.fixture(scope="module")
def visium(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Spots on the 100 µm lattice, the H&E stored at half resolution and shifted: its
    transformation to ``global`` is a Scale(2) then a Translation."""
    from spatialdata.transformations import Scale, Sequence, Translation

    spots = hex_lattice(n_rows=5, n_per_row=5, mpp=HALF_MPP, origin_px=(60.0, 50.0))
    size = lattice_extent(spots, mpp=HALF_MPP)
    pixels = render_tissue(spots, mpp=HALF_MPP, size=size)  # (h, w, 3) full resolution
    stored = pixels[::2, ::2][5:, 10:]  # half resolution, cropped by (10, 5) stored px
    # stored px (x, y) → global (2x + 20, 2y + 10)
    to_global = Sequence(
        [Scale([2.0, 2.0], axes=("y", "x")), Translation([10.0, 20.0], axes=("y", "x"))]
    )
    path = _write(
        tmp_path_factory.mktemp("sd") / "visium.zarr",
        images={"he": _image(stored, "global", to_global, c_coords=["r", "g", "b"])},
        shapes={"spots": _circles(spots[["x", "y"]].to_numpy(float), 27.5 / HALF_MPP, "global")},
        tables={"measured": _table(spots, "spots")},
    )
    return {"path": path, "spots": spots, "stored": stored}


def test_spots_land_on_the_image_pixels_through_its_transformation(visium: dict) -> None:
    with read_spatialdata(visium["path"]) as sample:
        spots = visium["spots"].set_index("barcode").loc[sample.spots["barcode"]]
        expected = (spots[["x", "y"]].to_numpy(float) - [20, 10]) / 2  # global → stored px
        np.testing.assert_allclose(sample.spots[["x", "y"]].to_numpy(), expected, atol=1e-9)
        # 100 µm between neighbours, HALF_MPP µm per global unit, 2 units per stored pixel
        assert sample.mpp == pytest.approx(2 * HALF_MPP) and sample.mpp_source == "spot-pitch"
        assert sample.sample_id == "visium" and sample.spot_diameter_um == 55.0
        assert sample.platform == "visium" and sample.slide.path.name == "he"


def test_counts_follow_the_table_rows_and_their_units(visium: dict) -> None:
    import anndata as ad

    table = ad.read_zarr(visium["path"] / "tables" / "measured")
    with read_spatialdata(visium["path"]) as sample:
        assert list(sample.counts.obs_names) == list(table.obs_names)
        assert list(sample.counts.var_names) == [f"GENE{i}" for i in range(N_GENES)]
        assert (sp.csr_matrix(table.X) != sample.counts.X).nnz == 0


def test_the_slide_reads_windows_of_each_level_lazily(visium: dict) -> None:
    stored = visium["stored"]  # (h, w, 3)
    with read_spatialdata(visium["path"]) as sample:
        slide = sample.slide
        assert isinstance(slide, ZarrSlide)
        assert (slide.width, slide.height) == (stored.shape[1], stored.shape[0])
        # spatialdata's own scale between levels: level 0's size over theirs (odd sizes halve down)
        assert [lvl.downsample for lvl in slide.levels] == [1.0, slide.width / (slide.width // 2)]
        np.testing.assert_array_equal(slide.read_level(0, 50, 40, 90, 70), stored[40:110, 50:140])
        edge = slide.read_level(0, -5, stored.shape[0] - 3, 8, 6)  # runs off: white
        assert (edge[:, :5] == 255).all() and (edge[3:] == 255).all()
        np.testing.assert_array_equal(edge[:3, 5:], stored[-3:, :3])
        level1 = np.asarray(slide.read_level(1, 0, 0, slide.levels[1].width, 10))
        assert level1.shape == (10, slide.levels[1].width, 3) and level1.dtype == np.uint8


def test_it_is_a_spatialdata_and_other_folders_are_not(visium: dict, tmp_path: Path) -> None:
    assert is_spatialdata(visium["path"])
    assert not is_spatialdata(tmp_path) and not is_spatialdata(tmp_path / "none.zarr")
    with pytest.raises(InvalidParameterError, match="not a SpatialData zarr"):
        read_spatialdata(tmp_path)


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SpatialData (written once) holding several tables of the same spots: ``raw`` and
    ``other``; ``cut``, whose shapes lack 3 of its units; ``nogrid``, without array indices and
    with normalised X beside ``layers["counts"]``; ``lonely``, whose shapes lie in a coordinate
    system where only a DAPI image is. The H&E ``he`` is in the spots' frame, beside a DAPI."""
    spots = hex_lattice(n_rows=5, n_per_row=6, mpp=MPP)
    pixels = render_tissue(spots, mpp=MPP, size=lattice_extent(spots, mpp=MPP))
    xy = spots[["x", "y"]].to_numpy(float)
    dapi = pixels[:, :, :1].astype(np.uint16) * 200
    nogrid = _table(spots, "spots", grid=False)
    nogrid.layers["counts"] = nogrid.X.copy()
    nogrid.X = np.log1p(nogrid.X)  # normalised in X: the counts layer is read
    return _write(
        tmp_path_factory.mktemp("sd") / "many.zarr",
        images={
            "he": _image(pixels, "s"),
            "dapi": _image(dapi, "s", c_coords=["DAPI"]),
            "dapi_elsewhere": _image(dapi, "elsewhere", c_coords=["DAPI"]),
        },
        shapes={
            "spots": _circles(xy, 27.5 / MPP, "s"),
            "cut_spots": _circles(xy[:-3], 27.5 / MPP, "s"),
            "lonely_spots": _circles(xy, 27.5 / MPP, "elsewhere"),
        },
        tables={
            "raw": _table(spots, "spots"),
            "other": _table(spots, "spots", seed=1),
            "cut": _table(spots, "cut_spots"),
            "nogrid": nogrid,
            "lonely": _table(spots, "lonely_spots"),
        },
    )


def test_several_tables_need_table_and_it_picks_one(many: Path) -> None:
    names = "cut, lonely, nogrid, other, raw"
    with pytest.raises(InvalidParameterError, match=rf"5 tables \({names}\).*--table") as err:
        read_spatialdata(many)
    assert "\n" not in str(err.value)
    with pytest.raises(InvalidParameterError, match=rf"no table 'nope'; its tables: {names}"):
        read_spatialdata(many, table="nope")
    with read_spatialdata(many, table="other", sample_id="s7") as sample:
        assert sample.sample_id == "s7" and sample.mpp == pytest.approx(MPP)
        assert sample.slide.path.name == "he"  # the DAPI image is never taken for the H&E


def test_a_fluorescence_image_is_refused_as_the_he(many: Path) -> None:
    with pytest.raises(SlideReadError, match=r"'dapi' has 1 channel DAPI.*expected an RGB"):
        read_spatialdata(many, table="raw", image="dapi")
    with pytest.raises(InvalidParameterError, match="no image 'x'; its images: dapi, da"):
        read_spatialdata(many, table="raw", image="x")


def test_without_an_he_image_it_says_how_to_add_one(many: Path) -> None:
    with pytest.raises(SlideReadError, match="no H&E image element beside 'lonely_spots'") as err:
        read_spatialdata(many, table="lonely")
    assert "\n" not in str(err.value) and "add the H&E" in str(err.value)
    assert "dapi_elsewhere (1 channel DAPI, uint16)" in str(err.value)
    with pytest.raises(ImageMismatchError, match="'he' shares no coordinate system with 'lonely"):
        read_spatialdata(many, table="lonely", image="he")


def test_units_missing_from_their_shapes_are_named(many: Path) -> None:
    with pytest.raises(CountsFormatError, match="3 rows of table 'cut' name units absent from"):
        read_spatialdata(many, table="cut")


def test_a_lattice_without_array_indices_still_gives_the_pitch(many: Path) -> None:
    import anndata as ad

    counts = ad.read_zarr(many / "tables" / "nogrid").layers["counts"]
    with read_spatialdata(many, table="nogrid") as sample:
        assert sample.mpp == pytest.approx(MPP) and sample.mpp_source == "spot-pitch"
        assert sample.counts.X.max() == counts.max()


def test_a_tmescope_export_gives_its_measured_table_id_and_resolution(tmp_path: Path) -> None:
    """``tmescope export``'s layout: ``<s>_measured`` beside other tables, µm/px in the root's
    ``tmescope_export`` attributes (off the lattice's 100 µm pitch here, to tell them apart)."""
    import spatialdata as sd

    spots = hex_lattice(n_rows=5, n_per_row=5, mpp=MPP)
    pixels = render_tissue(spots, mpp=MPP, size=lattice_extent(spots, mpp=MPP))
    xy = spots[["x", "y"]].to_numpy(float)
    sdata = sd.SpatialData(
        images={"s1_he": _image(pixels, "s1"), "s1_thumb": _image(pixels[::4, ::4], "s1")},
        shapes={"s1_spots": _circles(xy, 30.0, "s1")},
        tables={"s1_measured": _table(spots, "s1_spots"), "s1_maps": _table(spots, "s1_spots")},
    )
    sdata.attrs["tmescope_export"] = {"samples": ["s1"], "um_per_px": {"s1": 0.9}}
    sdata.write(tmp_path / "export.zarr")
    with read_spatialdata(tmp_path / "export.zarr") as sample:
        assert sample.sample_id == "s1" and sample.slide.path.name == "s1_he"
        assert sample.mpp == 0.9 and sample.mpp_source == "tmescope export: um_per_px of s1"
        assert sample.spot_diameter_um == pytest.approx(2 * 30.0 * 0.9)
        assert sample.counts.n_obs == len(spots)


def test_visium_hd_bins_take_their_size_from_the_name(tmp_path: Path) -> None:
    import geopandas as gpd
    import shapely
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import Identity

    bins = square_lattice(8, bin_um=8.0, mpp=0.5)  # 16 px squares
    pixels = np.full((200, 200, 3), 230, np.uint8)
    low = bins[["x", "y"]].to_numpy(float) - 8
    squares = gpd.GeoDataFrame(
        geometry=shapely.box(low[:, 0], low[:, 1], low[:, 0] + 16, low[:, 1] + 16),
        index=pd.Index(np.arange(len(bins)) + 100),
    )
    shapes = ShapesModel.parse(squares, transformations={"hd": Identity()})
    path = _write(
        tmp_path / "hd.zarr", images={"hd_full_image": _image(pixels, "hd")},
        shapes={"hd_square_008um": shapes},
        tables={
            "square_008um": _table(bins, "hd_square_008um"),
            "square_008um_plain": _table(bins, "hd_square_008um", grid=False),
        },
    )  # fmt: skip
    for table, source in (("square_008um", "bin-pitch"), ("square_008um_plain", "bin-size")):
        with read_spatialdata(path, table=table) as sample:
            assert (sample.platform, sample.bin_size_um, sample.spot_diameter_um) == (
                "visium_hd", 8.0, 8.0,
            )  # fmt: skip
            assert sample.mpp == pytest.approx(0.5) and sample.mpp_source == source


def test_cells_in_a_micrometre_system_with_an_aligned_he(tmp_path: Path) -> None:
    """Xenium's and MERSCOPE's layout: cells (circles, polygons) in µm (``global``), the H&E
    placed on them by an affine map."""
    import geopandas as gpd
    import spatialdata as sd
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import Affine, Identity

    rng = np.random.default_rng(3)
    cells_um = rng.uniform(20, 180, (40, 2))  # not a lattice
    cells = pd.DataFrame({"barcode": [f"cell{i}" for i in range(40)]})
    pixels = np.full((260, 260, 3), 220, np.uint8)
    # H&E px → µm: 0.8 µm/px, turned 90° and shifted
    affine = Affine(np.array([[0, -0.8, 200], [0.8, 0, 0], [0, 0, 1]]), ("x", "y"), ("x", "y"))
    outlines = gpd.GeoSeries(gpd.points_from_xy(cells_um[:, 0], cells_um[:, 1])).buffer(5.0)
    boundaries = ShapesModel.parse(
        gpd.GeoDataFrame(geometry=outlines.values, index=pd.Index(np.arange(40) + 100)),
        transformations={"global": Identity()},
    )
    path = _write(
        tmp_path / "xenium.zarr", images={"he_image": _image(pixels, "global", affine)},
        shapes={"cell_circles": _circles(cells_um, 4.0, "global"), "cell_boundaries": boundaries},
        tables={
            "table": _table(cells, "cell_circles", grid=False),
            "outlined": _table(cells, "cell_boundaries", grid=False),
        },
    )  # fmt: skip
    with pytest.raises(ResolutionError, match="cannot tell µm per pixel") as err:
        read_spatialdata(path, table="table")
    assert "\n" not in str(err.value)
    sdata = sd.read_zarr(path)
    sdata.attrs["spatialdata_io_reader"] = "xenium"  # spatialdata-io's mark: "global" is µm
    sdata.write_attrs()
    for table, diameter in (("table", 8.0), ("outlined", 10.0)):
        with read_spatialdata(path, table=table) as sample:
            assert sample.mpp == pytest.approx(0.8) and sample.platform == "visium"
            assert sample.mpp_source == "spatialdata-io xenium: global in µm"
            assert sample.spot_diameter_um == pytest.approx(diameter, rel=0.01)
            um = cells_um[sample.spots["barcode"].str.removeprefix("cell").astype(int)]
            expected = np.column_stack([um[:, 1] / 0.8, (200 - um[:, 0]) / 0.8])  # affine undone
            np.testing.assert_allclose(sample.spots[["x", "y"]].to_numpy(), expected, atol=1e-6)


def test_spatialdata_io_visium_reads_as_read_visium_does(
    visium_run: SyntheticVisium, tmp_path: Path
) -> None:
    """spatialdata-io's Visium layout (full image, hires, lowres; table ``table``) matches the
    Space Ranger reader on the same run: spots, counts and µm/px from the same full image."""
    import spatialdata_io

    from tmescope.io import read_visium

    assert visium_run.fullres_tiff is not None
    sdata = spatialdata_io.visium(
        visium_run.outs, dataset_id="run1", fullres_image_file=visium_run.fullres_tiff
    )
    sdata.write(tmp_path / "run1.zarr")
    with (
        read_spatialdata(tmp_path / "run1.zarr") as sample,
        read_visium(visium_run.path, image=visium_run.fullres_tiff) as reference,
    ):
        assert sample.sample_id == "run1" and sample.slide.path.name == "run1_full_image"
        assert sample.mpp == pytest.approx(reference.mpp)
        ours = sample.spots.set_index("barcode")
        theirs = reference.spots.set_index("barcode").loc[ours.index]
        np.testing.assert_allclose(ours[["x", "y"]], theirs[["x", "y"]], atol=1e-9)
        assert (sample.counts.X != reference.counts[ours.index].X).nnz == 0
