"""``export``: a store and a model's maps to SpatialData and QuPath GeoJSON, read back with their
own readers (spatialdata, shapely), and the targets that are refused or replaced whole."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pytest

from tmescope.errors import InvalidParameterError, TmescopeWarning
from tmescope.jobs.embed import SlideInput
from tmescope.jobs.export import (
    ExportModel,
    export_store,
    load_export_model,
    replace_atomically,
)
from tmescope.jobs.train import TrainSettings, train_model
from tmescope.store import CohortStore, RowKind
from tmescope.workflows import embed_samples, write_fused

# zarr 3.1 warns of its coming autosharding on every array spatialdata writes.
pytestmark = pytest.mark.filterwarnings("ignore:.*autosharding:UserWarning")

SPOTS = ("he", "spots", "measured", "predicted", "bins", "populations", "patches")
EMBEDDINGS = "test-vit-tiny_embeddings"


@pytest.fixture(scope="module")
def cohort(
    tmp_path_factory: pytest.TempPathFactory, synth_cohort: list[Path], synth_store: Path
) -> dict[str, Path]:
    """Two Visium samples (a copy of the session's store) and a model with a 16 µm sub-spot
    model; then an H&E-only slide (``archive_01``) joins the store, and a copy of it holds the
    model's niches."""
    root = tmp_path_factory.mktemp("export")
    store, model = root / "cohort.zarr", root / "model"
    shutil.copytree(synth_store, store)
    settings = TrainSettings(
        models=("ridge",), n_genes=10, n_members=1, device="cpu", resolution_um=16.0,
        reference=synth_cohort[0].parent / "reference.h5ad",
    )  # fmt: skip
    train_model(store, model, settings=settings)
    slide = SlideInput(next(synth_cohort[1].glob("*_he.tif")), sample_id="archive_01")
    embed_samples([slide], store=store, encoder="test-vit-tiny", device="cpu")
    with_niches = root / "niches.zarr"
    shutil.copytree(store, with_niches)
    write_fused(with_niches, model, device="cpu")
    return {"store": store, "model": model, "niches": with_niches}


@pytest.fixture(scope="module")
def exported(cohort: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    import spatialdata as sd

    out = tmp_path_factory.mktemp("sd") / "cohort_sd.zarr"
    summary = export_store(cohort["store"], out, to="spatialdata", model_dir=cohort["model"])
    assert summary.samples == ("archive_01", "synth_00", "synth_01")
    return sd.read_zarr(out)


@pytest.fixture(scope="module")
def niche_model(cohort: dict[str, Path]) -> ExportModel:
    """The model loaded for export from the store with fused sets: its niches, fitted once."""
    return load_export_model(CohortStore.open(cohort["niches"]), cohort["model"])


def test_every_sample_has_its_elements_in_its_own_coordinate_system(exported: Any) -> None:
    for sample in ("synth_00", "synth_01"):
        names = {f"{sample}_{part}" for part in SPOTS}
        assert names <= set(exported.images) | set(exported.shapes) | set(exported.tables)
        assert f"{sample}_{EMBEDDINGS}" in exported.tables
    # The H&E-only slide: its image, bins, patches, maps and embeddings; no spots, and no
    # measured table at all (absent, not zero). Its spot-level maps annotate its tiles.
    elements = set(exported.images) | set(exported.shapes)
    assert {"archive_01_he", "archive_01_bins", "archive_01_patches"} <= elements
    assert "archive_01_spots" not in exported.shapes
    assert "archive_01_measured" not in exported.tables
    tables = {"archive_01_populations", "archive_01_predicted", f"archive_01_{EMBEDDINGS}"}
    assert tables <= set(exported.tables)
    predicted = exported.tables["archive_01_predicted"]
    assert set(predicted.obs["kind"]) == {"tile"}
    assert predicted.uns["spatialdata_attrs"]["region"] == "archive_01_patches"
    assert "measured" not in predicted.layers
    assert set(exported.coordinate_systems) == {"archive_01", "synth_00", "synth_01"}
    about = exported.attrs["tmescope_export"]
    assert about["um_per_px"]["synth_00"] == pytest.approx(0.5)


def test_spot_circles_sit_on_the_stored_spots_and_tables_find_them(
    exported: Any, cohort: dict[str, Path]
) -> None:
    import spatialdata as sd

    store = CohortStore.open(cohort["store"])
    rows = np.flatnonzero(store.read_kind("synth_00") == RowKind.SPOT)
    spots = sd.transform(exported.shapes["synth_00_spots"], to_coordinate_system="synth_00")
    centres = np.column_stack([spots.geometry.x, spots.geometry.y])
    np.testing.assert_allclose(centres, store.read_coords("synth_00")[rows], atol=1e-3)
    assert np.allclose(spots["radius"], 55.0 / 2 / 0.5)
    for table in ("synth_00_measured", "synth_00_predicted"):
        elements, joined = sd.join_spatialelement_table(
            sdata=exported, spatial_element_names="synth_00_spots", table_name=table,
            how="left", match_rows="left",
        )  # fmt: skip
        shapes = elements["synth_00_spots"]
        np.testing.assert_allclose(
            joined.obsm["spatial"], np.column_stack([shapes.geometry.x, shapes.geometry.y])
        )
    measured = exported.tables["synth_00_measured"]
    counts = store.read_counts("synth_00")
    assert counts is not None
    np.testing.assert_array_equal(measured.X.toarray(), counts.X.toarray())


def test_the_he_is_a_lazy_pyramid_of_the_slide(exported: Any, cohort: dict[str, Path]) -> None:
    from spatialdata.transformations import Identity, get_transformation

    from tmescope.io import open_slide

    store = CohortStore.open(cohort["store"])
    image = exported.images["synth_00_he"]
    assert len(image) >= 2
    level0 = image["scale0"]["image"]
    assert isinstance(get_transformation(level0, to_coordinate_system="synth_00"), Identity)
    with open_slide(store.sample_record("synth_00").meta.extra["image"]) as slide:
        assert level0.shape == (3, slide.height, slide.width)
        expected = slide.read_level(0, 40, 30, 64, 48).transpose(2, 0, 1)
    np.testing.assert_array_equal(level0[:, 30:78, 40:104].values, expected)
    assert image["scale1"]["image"].shape[1] == level0.shape[1] // 2


def test_bins_are_squares_of_the_maps_and_embeddings_follow_sopa(
    exported: Any, cohort: dict[str, Path]
) -> None:
    import spatialdata as sd

    store = CohortStore.open(cohort["store"])
    bins = sd.transform(exported.shapes["archive_01_bins"], to_coordinate_system="archive_01")
    populations = exported.tables["archive_01_populations"]
    order = populations.obs["instance_id"].to_numpy()
    centres = np.column_stack([bins.geometry.centroid.x, bins.geometry.centroid.y])[order]
    np.testing.assert_allclose(centres, populations.obsm["spatial"], atol=1e-3)
    np.testing.assert_allclose(bins.geometry.area, 32.0**2)  # 16 µm at 0.5 µm/px
    assert populations.obsm["populations"].shape[1] >= 2
    table = exported.tables[f"synth_01_{EMBEDDINGS}"]
    np.testing.assert_allclose(table.X, store.read_embeddings("synth_01").astype(np.float32))
    np.testing.assert_allclose(table.obsm["spatial"], store.read_coords("synth_01"))
    config = table.uns["embedding_config"]
    assert config["model_name"] == "test-vit-tiny" and config["um_per_px"] == pytest.approx(0.5)
    assert config["patch_size_um"] == pytest.approx(store.sample_record("synth_01").meta.patch_um)
    assert table.uns["spatialdata_attrs"]["region"] == "synth_01_patches"


def test_niches_join_the_maps_when_the_store_has_them(
    niche_model: ExportModel, cohort: dict[str, Path], exported: Any
) -> None:
    import shapely
    from shapely.geometry import shape

    from tmescope.jobs.export import spot_predictions
    from tmescope.jobs.export_geojson import layer_features, sample_layers

    store = CohortStore.open(cohort["niches"])
    predicted = spot_predictions(store, niche_model, "synth_00")
    assert predicted is not None
    niches = predicted.obs["niche"]
    assert niches.notna().all() and str(niches.iloc[0]).startswith("N")
    assert list(niches.cat.categories) == niche_model.niche_names
    layers = {layer.name: layer for layer in sample_layers(store, "synth_00", niche_model)}
    features = layer_features(layers["niche"], sample_id="synth_00", mpp=0.5)
    check_geojson({"type": "FeatureCollection", "features": features})
    regions = {f["properties"]["name"]: shape(f["geometry"]) for f in features}
    xy = predicted.obsm["spatial"]
    for name in set(niches):
        inside = xy[(niches == name).to_numpy()]
        assert shapely.contains_xy(regions[name], inside[:, 0], inside[:, 1]).all(), name
    # An H&E-only slide takes no part in the fit: its tiles are placed in the nearest niche.
    tiles = spot_predictions(store, niche_model, "archive_01")
    assert tiles is not None and tiles.obs["niche"].notna().all()
    # Without the model's fused sets in the store, no niches: export computes none.
    assert "niche" not in exported.tables["synth_00_predicted"].obs


# spatialdata-plot draws a sample's sub-SpatialData, whose tables name the other samples' shapes.
@pytest.mark.filterwarnings("ignore:The table is annotating:UserWarning")
def test_a_shapes_element_draws(exported: Any, tmp_path: Path) -> None:
    """With spatialdata-plot (coloured by a predicted column through the table link), else with
    geopandas' own matplotlib drawing."""
    import importlib.util

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    if importlib.util.find_spec("spatialdata_plot") is not None:
        import spatialdata_plot  # noqa: F401 - registers the .pl accessor

        table = exported.tables["synth_00_predicted"]
        state = next(c for c in table.obs if c.startswith("state_"))
        exported.pl.render_shapes(
            "synth_00_spots", color=state, table_name="synth_00_predicted"
        ).pl.show(ax=ax, coordinate_systems="synth_00")
    else:
        exported.shapes["synth_00_bins"].plot(ax=ax)
    fig.savefig(tmp_path / "spots.png")
    plt.close(fig)
    assert ax.has_data() and (tmp_path / "spots.png").stat().st_size > 1000


def test_geojson_regions_are_valid_and_cover_the_bins_of_their_class(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    import shapely
    from shapely.geometry import shape

    out = tmp_path / "synth_00.geojson"
    summary = export_store(
        cohort["store"], out, to="geojson", model_dir=cohort["model"], sample="synth_00"
    )
    assert any("population" in line for line in summary.contents)
    collection = json.loads(out.read_text())
    check_geojson(collection)
    assert {f["properties"]["layer"] for f in collection["features"]} == {"population"}
    maps = ad.read_h5ad(_predicted_bins(cohort, "synth_00", tmp_path))  # as `predict --resolution`
    dominant = np.asarray(maps.obsm["populations"].columns)[
        np.asarray(maps.obsm["populations"]).argmax(axis=1)
    ]
    regions = {
        f["properties"]["classification"]["name"]: shape(f["geometry"])
        for f in collection["features"]
        if f["properties"]["layer"] == "population"
    }
    for name in set(dominant):
        centres = maps.obsm["spatial"][dominant == name]
        assert shapely.contains_xy(regions[name], centres[:, 0], centres[:, 1]).all(), name
    niches = [f for f in collection["features"] if f["properties"]["layer"] == "niche"]
    assert all(f["properties"]["measurements"]["area_um2"] > 0 for f in niches)


def test_an_he_only_slide_gets_population_regions_from_its_bins(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "archive.geojson"
    export_store(cohort["store"], out, model_dir=cohort["model"], sample="archive_01")
    collection = json.loads(out.read_text())
    check_geojson(collection)
    assert {f["properties"]["layer"] for f in collection["features"]} == {"population"}


def test_without_a_sub_spot_model_regions_come_from_the_spot_head(cohort: dict[str, Path]) -> None:
    from dataclasses import replace

    import shapely
    from shapely.geometry import shape

    from tmescope.jobs.export_geojson import layer_features, population_layer

    store = CohortStore.open(cohort["store"])
    spot_only = replace(load_export_model(store, cohort["model"]), bin_um=None)
    for sample, unit, kind in (
        ("synth_01", "spots", RowKind.SPOT),
        ("archive_01", "tiles", RowKind.TILE),
    ):
        layer = population_layer(store, sample, spot_only)
        assert layer.unit == unit and len(layer.classes) >= 2
        features = layer_features(layer, sample_id=sample, mpp=0.5)
        check_geojson({"type": "FeatureCollection", "features": features})
        regions = {f["properties"]["name"]: shape(f["geometry"]) for f in features}
        xy = store.read_coords(sample)[store.read_kind(sample) == kind]
        for k, name in enumerate(layer.classes):
            inside = xy[layer.labels == k]
            if len(inside):
                assert shapely.contains_xy(regions[name], inside[:, 0], inside[:, 1]).all()


def test_an_existing_target_is_refused_then_replaced_whole(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "n.geojson"
    out.write_text("old")
    with pytest.raises(InvalidParameterError, match="--overwrite"):
        export_store(cohort["store"], out, model_dir=cohort["model"], sample="synth_01")
    assert out.read_text() == "old"
    with pytest.warns(TmescopeWarning, match="--sample"):
        export_store(cohort["store"], out, model_dir=cohort["model"], overwrite=True)
    check_geojson(json.loads(out.read_text()))
    assert [p.name for p in tmp_path.iterdir()] == ["n.geojson"]  # no partial left behind


def test_a_failed_export_leaves_the_old_target_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "sd.zarr"
    out.mkdir()
    (out / "zarr.json").write_text("{}")

    def fail(partial: Path) -> None:
        partial.mkdir()
        (partial / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        replace_atomically(out, fail, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd.zarr"]
    assert (out / "zarr.json").read_text() == "{}"


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("x.zarr", {"to": "parquet"}, "not a format"),
        ("x.txt", {}, "cannot tell the format"),
        ("x.geojson", {}, "needs|give --model"),
        ("cohort.zarr/inside.zarr", {}, "inside it"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(
    cohort: dict[str, Path], tmp_path: Path, target: str, options: dict[str, str], message: str
) -> None:
    out = cohort["store"].parent / target if target.startswith("cohort.zarr") else tmp_path / target
    with pytest.raises(InvalidParameterError, match=message):
        export_store(cohort["store"], out, **options)  # type: ignore[arg-type]
    assert not out.exists()


def test_a_folder_that_is_not_an_export_is_never_replaced(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "results.zarr"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InvalidParameterError, match="refusing"):
        export_store(cohort["store"], out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def check_geojson(collection: dict[str, Any]) -> None:
    """RFC 7946 as QuPath reads it: a FeatureCollection of (Multi)Polygons whose rings are
    closed with at least 4 finite positions, and QuPath's annotation properties."""
    assert collection["type"] == "FeatureCollection" and collection["features"]
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        geometry = feature["geometry"]
        polygons = (
            [geometry["coordinates"]]
            if geometry["type"] == "Polygon"
            else geometry["coordinates"]
            if geometry["type"] == "MultiPolygon"
            else pytest.fail(f"not a polygon: {geometry['type']}")
        )
        for polygon in polygons:
            for ring in polygon:
                assert len(ring) >= 4 and ring[0] == ring[-1]
                assert all(
                    len(p) == 2 and all(isinstance(v, float | int) and math.isfinite(v) for v in p)
                    for p in ring
                )
        properties = feature["properties"]
        assert properties["objectType"] == "annotation"
        colour = properties["classification"]["color"]
        assert properties["classification"]["name"] and len(colour) == 3
        assert all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
        assert all(isinstance(v, int | float) for v in properties["measurements"].values())


def _predicted_bins(cohort: dict[str, Path], sample: str, tmp_path: Path) -> Path:
    from tmescope.workflows import predict_subspot

    return predict_subspot(
        cohort["store"], cohort["model"], sample=sample, resolution_um=16.0,
        out=tmp_path / f"{sample}_bins.h5ad",
    )  # fmt: skip


def test_an_export_on_dask_workers_is_the_serial_export_byte_for_byte(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    """Each sample's part is a task (its niches handed to it, fitted once on the cohort); the
    parts are joined in the samples' order, so the file is the serial one's."""
    from distributed import LocalCluster

    serial, on_dask = tmp_path / "serial.geojson", tmp_path / "dask.geojson"
    with pytest.warns(TmescopeWarning, match="share one GeoJSON"):
        export_store(cohort["niches"], serial, model_dir=cohort["model"])
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                     dashboard_address=None) as cluster,
        pytest.warns(TmescopeWarning, match="share one GeoJSON"),
    ):  # fmt: skip
        export_store(
            cohort["niches"], on_dask, model_dir=cohort["model"],
            scheduler=cluster.scheduler_address,
        )  # fmt: skip
    assert on_dask.read_bytes() == serial.read_bytes()
    layers = {f["properties"]["layer"] for f in json.loads(serial.read_text())["features"]}
    assert layers == {"population", "niche"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dask.geojson", "serial.geojson"]
