"""The viewer's JSON API over a real store and model (FastAPI's TestClient, no server)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tmescope.errors import ModelMismatchError, StoreNotFoundError
from tmescope.jobs.predict_bins import subspot_anndata
from tmescope.jobs.serve import make_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_store(viewer_store: tuple[Path, Path]) -> tuple[Path, Path]:
    return viewer_store


@pytest.fixture(scope="module")
def client(trained_store: tuple[Path, Path]) -> Iterator[TestClient]:
    store, model = trained_store
    with TestClient(make_app(store, model)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def bare_client(trained_store: tuple[Path, Path]) -> Iterator[TestClient]:
    """The viewer without a model: measured values and similar regions only."""
    with TestClient(make_app(trained_store[0])) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def spots(client: TestClient) -> dict:
    return client.get("/api/samples/synth_01/spots").json()


def _a_spot(spots: dict) -> tuple[str, int]:
    i = spots["kind"].index("spot")
    return spots["barcode"][i], i


def test_samples_list_the_store_with_its_model(client: TestClient) -> None:
    samples = client.get("/api/samples").json()
    assert [s["id"] for s in samples] == ["synth_00", "synth_01", "synth_02"]
    first = samples[0]
    assert first["n_spots"] == 90 and first["n_tiles"] > 0 and first["has_predictions"]
    assert first["has_counts"] and not first["he_only"] and "width" not in first  # records only
    opened = client.get("/api/samples/synth_00").json()
    assert opened["mpp"] > 0 and opened["width"] > 1000 and opened["height"] > 1000
    assert len(opened["genes"]) == 12 and "tumour" in opened["states"]
    info = client.get("/api/info").json()
    assert info["start"] == "synth_00" and info["genes"] == opened["genes"]
    assert info["populations"] == [] and not info["has_subspot"]  # no sub-spot model here


def test_the_sample_list_reads_no_slide_and_no_counts(
    trained_store: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty samples listed must not mean forty slides and count matrices read: the list comes
    from the store's records; a sample is read when it is opened."""
    from tmescope.store import CohortStore
    from tmescope.viz.app import slide_tiles

    read: list[str] = []
    open_sample, read_counts = slide_tiles._open_sample, CohortStore.read_counts

    def opening(store: CohortStore, sample_id: str) -> object:
        read.append(f"slide {sample_id}")
        return open_sample(store, sample_id)

    def counting(store: CohortStore, sample_id: str) -> object:
        read.append(f"counts {sample_id}")
        return read_counts(store, sample_id)

    monkeypatch.setattr(slide_tiles, "_open_sample", opening)
    monkeypatch.setattr(CohortStore, "read_counts", counting)
    with TestClient(make_app(trained_store[0])) as bare:  # without a model: genes are measured
        assert bare.get("/api/info").json()["start"] == "synth_00"
        assert len(bare.get("/api/samples").json()) == 3
        assert read == []
        assert len(bare.get("/api/samples/synth_02").json()["genes"]) > 12
    assert read == ["slide synth_02", "counts synth_02"]


def test_spots_and_values_line_up_row_for_row(client: TestClient, spots: dict) -> None:
    n = spots["n"]
    assert len(spots["barcode"]) == len(spots["x"]) == len(spots["kind"]) == n
    assert spots["kind"].count("spot") == 90 and set(spots["kind"]) == {"spot", "tile"}
    gene = client.get("/api/samples/synth_01").json()["genes"][0]
    measured = client.get(
        "/api/samples/synth_01/values", params={"layer": "measured", "feature": gene}
    ).json()["values"]
    predicted = client.get(
        "/api/samples/synth_01/spots", params={"layer": "predicted", "feature": gene}
    ).json()["values"]
    assert len(measured) == len(predicted) == n
    is_tile = np.array(spots["kind"]) == "tile"
    assert all(v is None for v in np.array(measured, dtype=object)[is_tile])  # tiles: no counts
    assert all(v is not None for v in predicted)  # predicted everywhere, tiles included
    values = np.array([v for v, t in zip(measured, is_tile, strict=True) if not t], dtype=float)
    assert (values >= 0).all() and values.max() > 0  # log1p of normalised counts


def test_a_spot_shows_every_layer(client: TestClient, spots: dict) -> None:
    barcode, _ = _a_spot(spots)
    sample = client.get("/api/samples/synth_01").json()
    body = client.get("/api/samples/synth_01/spot", params={"spot": barcode}).json()
    assert body["kind"] == "spot"
    assert [v["feature"] for v in body["values"]] == sample["states"] + sample["genes"]
    for v in body["values"]:
        assert None not in (v["measured"], v["predicted"], v["std"]) and v["std"] >= 0
    tile = spots["barcode"][spots["kind"].index("tile")]
    at_tile = client.get("/api/samples/synth_01/spot", params={"spot": tile}).json()["values"]
    assert all(v["measured"] is None and v["predicted"] is not None for v in at_tile)


def test_attention_edges_point_at_neighbours(client: TestClient, spots: dict) -> None:
    barcode, i = _a_spot(spots)
    body = client.get("/api/samples/synth_01/attention", params={"spot": barcode}).json()
    assert (body["x"], body["y"]) == (spots["x"][i], spots["y"][i])
    weights = [e["weight"] for e in body["edges"]]
    assert len(weights) >= 3 and weights == sorted(weights, reverse=True)
    assert all(0 <= w <= 1 for w in weights)
    assert all(e["barcode"] in spots["barcode"] for e in body["edges"])


def test_similar_regions_leave_the_query_out_and_have_thumbnails(
    client: TestClient, spots: dict
) -> None:
    barcode, _ = _a_spot(spots)
    body = client.get("/api/query", params={"sample": "synth_01", "spot": barcode, "k": 5}).json()
    hits = body["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert ("synth_01", barcode) not in {(h["sample"], h["barcode"]) for h in hits}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    thumb = client.get(hits[0]["thumb"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"


def test_deep_zoom_tiles_cover_the_image(client: TestClient) -> None:

    dz = client.get("/api/samples/synth_00/dzi").json()
    assert 2 ** (dz["max_level"] - 1) < max(dz["width"], dz["height"]) <= 2 ** dz["max_level"]
    top = client.get("/api/samples/synth_00/tiles/0/0_0.jpg")
    assert Image.open(io.BytesIO(top.content)).size == (1, 1)
    level = dz["max_level"]
    last_col = (dz["width"] - 1) // dz["tile_size"]
    edge = client.get(f"/api/samples/synth_00/tiles/{level}/{last_col}_0.jpg")
    expected_w = dz["width"] - last_col * dz["tile_size"]
    assert Image.open(io.BytesIO(edge.content)).size == (expected_w, dz["tile_size"])
    whole = client.get("/api/samples/synth_00/thumbnail.jpg")
    assert max(Image.open(io.BytesIO(whole.content)).size) <= 1024


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/api/samples/nope/spots", 404, "no sample 'nope'"),
        ("/api/samples/nope", 404, "no sample 'nope'"),
        ("/api/samples/..%2F..%2Fetc%2Fpasswd/dzi", 404, ""),
        ("/api/samples/../../etc/passwd/spots", 404, ""),
        ("/api/samples/%2e%2e/dzi", 404, ""),
        ("/api/samples/..%5C..%5Cwindows/thumbnail.jpg", 404, "no sample"),
        ("/api/query?sample=synth_00&spot=x&k=0", 422, "k"),
        ("/api/query?sample=synth_00&spot=x&k=51", 422, "less than or equal to 50"),
        ("/api/query?sample=/etc/passwd&spot=x", 404, "no sample"),
        ("/api/samples/synth_00/attention?spot=NOPE", 404, "no spot or tile 'NOPE'"),
        ("/api/samples/synth_00/values?layer=raw&feature=tumour", 422, "layer must be one of"),
        ("/api/samples/synth_00/values?layer=measured&feature=NOPE", 404, "no feature 'NOPE'"),
        ("/api/samples/synth_00/spots?layer=measured", 422, "together"),
        ("/api/samples/synth_00/tiles/41/0_0.jpg", 422, "level"),
        ("/api/samples/synth_00/tiles/0/1_0.jpg", 422, "tiles 0–0 × 0–0"),
        ("/api/samples/synth_00/tiles/3/-1_0.jpg", 422, "greater than or equal to 0"),
        ("/api/samples/synth_00/thumb?x=10&y=10&size=4096", 422, "size"),
        ("/api/samples/synth_00/thumb?x=-1e9&y=10", 422, "outside"),
        ("/api/samples/synth_00/thumb?x=nan&y=10", 422, "finite"),
        ("/api/samples/nope/niches", 404, "no sample 'nope'"),
        ("/api/interactions?sample=../../etc", 404, "no sample"),
        ("/api/interactions/figure.png?kind=../x", 422, "kind must be one of"),
    ],
)
def test_bad_requests_get_a_clear_json_error(
    client: TestClient, url: str, status: int, words: str
) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail


def test_similar_regions_in_the_fused_space(client: TestClient, spots: dict) -> None:
    barcode, _ = _a_spot(spots)
    params = {"sample": "synth_01", "spot": barcode, "k": 5}
    raw = client.get("/api/query", params=params).json()["hits"]
    fused = client.get("/api/query", params={**params, "space": "fused"}).json()["hits"]
    assert len(fused) == 5 and all(
        (h["sample"], h["barcode"]) != ("synth_01", barcode) for h in fused
    )
    assert [h["barcode"] for h in fused] != [h["barcode"] for h in raw]
    refused = client.get("/api/query", params={**params, "space": "other"})
    assert refused.status_code == 422 and "space must be one of" in refused.json()["detail"]


def test_niches_label_every_row_and_interactions_pool_the_samples(
    client: TestClient, spots: dict
) -> None:
    niches = client.get("/api/samples/synth_01/niches").json()
    assert len(niches["labels"]) == spots["n"] and len(niches["names"]) >= 2
    used = {v for v in niches["labels"] if v is not None}
    assert used <= set(range(len(niches["names"])))
    cohort = client.get("/api/interactions").json()
    assert cohort["pooled"] and cohort["n_samples"] == 3 and cohort["on"] == "states"
    assert all(p["a"] != p["b"] for p in cohort["pairs"]) and "std_z" in cohort["pairs"][0]
    own = client.get("/api/interactions", params={"sample": "synth_02"}).json()
    assert not own["pooled"] and sum(own["counts"].values()) == 90
    zs = [abs(p["z"]) for p in own["pairs"]]
    assert zs == sorted(zs, reverse=True)
    for url in (*cohort["figures"].values(), *own["figures"].values()):
        figure = client.get(url)
        assert figure.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(figure.content)).size[0] > 300


def test_without_a_model_measured_values_and_search_still_work(
    bare_client: TestClient, spots: dict
) -> None:
    sample = bare_client.get("/api/samples/synth_01").json()
    assert not sample["has_predictions"] and sample["states"] == []
    assert len(sample["genes"]) > 12  # every measured gene, most expressed first
    values = bare_client.get(
        "/api/samples/synth_01/values", params={"layer": "measured", "feature": sample["genes"][0]}
    ).json()
    assert values["max"] > 0
    barcode, _ = _a_spot(spots)
    hits = bare_client.get("/api/query", params={"sample": "synth_01", "spot": barcode}).json()
    assert len(hits["hits"]) == 8
    refused = bare_client.get("/api/samples/synth_01/attention", params={"spot": barcode})
    assert refused.status_code == 409 and "--model" in refused.json()["detail"]
    fused = bare_client.get(
        "/api/query", params={"sample": "synth_01", "spot": barcode, "space": "fused"}
    )
    assert fused.status_code == 409 and "--model" in fused.json()["detail"]
    for url in ("/api/samples/synth_01/niches", "/api/interactions"):
        refused = bare_client.get(url)
        assert refused.status_code == 409 and "--model" in refused.json()["detail"]


def test_the_page_and_openapi_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<section id="interactions" hidden>' in page.text
    assert '<section id="subspot" hidden>' in page.text
    assert '<section id="compare" hidden>' in page.text
    assert client.get("/static/viewer.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/compare.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/samples", "/api/query", "/api/samples/{sample_id}/dzi"} <= set(paths)
    assert {"/api/samples/{sample_id}/bins", "/api/samples/{sample_id}/bins/values"} <= set(paths)
    assert {"/api/compare", "/api/compare/figure.png"} <= set(paths)


def test_a_missing_store_or_a_foreign_model_is_refused(
    trained_store: tuple[Path, Path], tmp_path: Path
) -> None:
    import json
    import shutil

    store, model = trained_store
    with pytest.raises(StoreNotFoundError):
        make_app(tmp_path / "absent.zarr")
    foreign = tmp_path / "foreign"
    shutil.copytree(model, foreign)
    header = json.loads((foreign / "model.json").read_text())
    header["fingerprint"]["model"] = "another-encoder"
    (foreign / "model.json").write_text(json.dumps(header))
    with pytest.raises(ModelMismatchError, match="another-encoder"):
        make_app(store, foreign)


# Sub-spot layers: a second model with a sub-spot model, over the same store.


@pytest.fixture(scope="module")
def subspot_client(viewer_subspot_model: tuple[Path, Path]) -> Iterator[TestClient]:
    store, model = viewer_subspot_model
    with TestClient(make_app(store, model)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def subspot_maps(viewer_subspot_model: tuple[Path, Path]) -> ad.AnnData:
    """What `tmescope predict --resolution 16` gives for synth_01: what the viewer must show."""
    store, model = viewer_subspot_model
    return subspot_anndata(store, model, sample="synth_01", resolution_um=16.0)


def test_bins_are_the_sub_spot_predictions_bins(
    subspot_client: TestClient, subspot_maps: ad.AnnData
) -> None:
    info = subspot_client.get("/api/info").json()
    assert info["has_subspot"] is True
    body = subspot_client.get("/api/samples/synth_01/bins").json()
    assert info["populations"] == body["populations"]  # listed before any bin is predicted
    n = subspot_maps.n_obs
    assert body["n"] == n == len(body["x"]) == len(body["y"]) and n > 90
    np.testing.assert_allclose(
        np.c_[body["x"], body["y"]], subspot_maps.obsm["spatial"], rtol=0, atol=0.051
    )
    assert body["populations"] == list(subspot_maps.obsm["populations"].columns)
    about = subspot_maps.uns["subspot"]
    assert body["bin_um"] == 16.0
    assert body["bin_px"] == pytest.approx(16.0 / about["um_per_px"], abs=1e-3)
    missing = subspot_client.get("/api/samples/nope/bins")
    assert missing.status_code == 404 and "no sample 'nope'" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("layer", "key"),
    [("populations", "populations"), ("uncertainty", "populations_std"),
     ("image", "populations_image"), ("interface", None)],
)  # fmt: skip
def test_each_sub_spot_layer_has_one_value_per_bin(
    subspot_client: TestClient, subspot_maps: ad.AnnData, layer: str, key: str | None
) -> None:
    from tmescope.analysis.adata_pairs import adata_interface_maps

    a, b = list(subspot_maps.obsm["populations"].columns)[:2]
    if key is None:
        feature = f"{a}|{b}"
        expected = adata_interface_maps(subspot_maps, [(a, b)], radius_um=30.0)[feature]
    else:
        feature = a
        expected = subspot_maps.obsm[key][a].to_numpy(float)
    body = subspot_client.get(
        "/api/samples/synth_01/bins/values", params={"layer": layer, "feature": feature}
    ).json()
    assert (body["layer"], body["feature"]) == (layer, feature)
    values = np.array(body["values"], dtype=float)  # null → NaN
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-4)
    assert body["min"] == pytest.approx(np.nanmin(expected), abs=1e-6)
    assert body["max"] == pytest.approx(np.nanmax(expected), abs=1e-6)
    assert body["max"] > body["min"]


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("layer=raw&feature=tumour", 422, "layer must be one of populations, uncertainty"),
        ("layer=populations&feature=NOPE", 404, "no population 'NOPE' in the sub-spot model"),
        ("layer=image&feature=a|b", 404, "no population 'a|b'"),
        ("layer=interface&feature=tumour", 422, "two different populations as A|B"),
        ("layer=interface&feature=tumour|tumour", 422, "two different populations"),
        ("layer=interface&feature=tumour|NOPE", 404, "no population 'NOPE'"),
        ("layer=populations", 422, "feature"),
    ],
)
def test_bad_sub_spot_requests_get_a_clear_json_error(
    subspot_client: TestClient, query: str, status: int, words: str
) -> None:
    response = subspot_client.get(f"/api/samples/synth_01/bins/values?{query}")
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    if status == 404 and "NOPE" in query:
        assert "its populations are" in response.json()["detail"]


def test_without_a_sub_spot_model_the_bins_say_how_to_train_one(
    client: TestClient, bare_client: TestClient
) -> None:
    assert client.get("/api/info").json()["has_subspot"] is False
    refused = client.get("/api/samples/synth_01/bins")
    assert refused.status_code == 409
    assert "has no sub-spot model" in refused.json()["detail"]
    assert "--resolution 16" in refused.json()["detail"]
    values = client.get(
        "/api/samples/synth_01/bins/values", params={"layer": "populations", "feature": "x"}
    )
    assert values.status_code == 409 and "has no sub-spot model" in values.json()["detail"]
    assert bare_client.get("/api/info").json()["has_subspot"] is False
    bare = bare_client.get("/api/samples/synth_01/bins")
    assert bare.status_code == 409 and "--model" in bare.json()["detail"]
