"""The viewer's "What differs between groups": ``/api/compare`` and its figures over a store
whose samples carry a ``group`` column, and a clear one-line refusal for each reason there is
no comparison (FastAPI's TestClient, no server)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tmescope.jobs.serve import make_app

pytestmark = pytest.mark.slow


def _files(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")}


@pytest.fixture(scope="module")
def summarised() -> Iterator[list[str]]:
    """Every section summarised by the viewer, as it happens (the maps are the slow part)."""
    from tmescope.jobs import compare

    calls: list[str] = []
    real = compare.summarise_stored_sample

    def counting(sample_id: str, task: compare.CompareTask) -> object:
        calls.append(sample_id)
        return real(sample_id, task)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare, "summarise_stored_sample", counting)
        yield calls


@pytest.fixture(scope="module")
def client(compare_store: tuple[Path, Path], summarised: list[str]) -> Iterator[TestClient]:
    with TestClient(make_app(*compare_store)) as test_client:
        yield test_client


def _png(content: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(content)).size


def test_the_groups_are_compared_with_patients_as_units(
    client: TestClient, compare_store: tuple[Path, Path], summarised: list[str]
) -> None:
    design = client.get("/api/info").json()["comparison"]
    assert design["ready"] and design["why"] is None and design["subject"] == "patient"
    assert design["groups"] == {"excluded": 2, "inflamed": 2} and design["left_out"] == []
    before = _files(compare_store[0])

    response = client.get("/api/compare")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["by"] == "group" and body["subject"] == "patient"
    assert body["groups"] == ["excluded", "inflamed"] and body["resolution_um"] == 16.0
    assert [s["sample"] for s in body["samples"]] == [f"synth_0{i}" for i in range(4)]
    assert {"a", "b", "groups", "effect", "low", "high", "p", "p_perm", "q", "higher_in",
            "n_patients", "naive_p"} <= set(body["pairs"][0])  # fmt: skip
    assert body["n_significant"] == sum(p["q"] < 0.05 for p in body["pairs"])
    assert [p["q"] for p in body["pairs"]] == sorted(p["q"] for p in body["pairs"])
    # Planted: an excluded tumour keeps its T cells out of the nests, so less contact there.
    contact = next(p for p in body["pairs"] if {p["a"], p["b"]} == {"t_cell", "tumour"})
    assert contact["higher_in"] == "inflamed" and contact["n_patients"] == {
        "excluded": 2, "inflamed": 2}  # fmt: skip
    calls = {s["phenotype"] for s in body["samples"]}
    assert calls <= {"inflamed", "excluded", "desert", "no tumour"}
    assert {g: sum(row.values()) for g, row in body["phenotype_counts"].items()} == {
        "excluded": 2, "inflamed": 2}  # fmt: skip
    assert body["figures"] == {
        "differences": "/api/compare/figure.png?kind=differences",
        "phenotypes": "/api/compare/figure.png?kind=phenotypes",
    }
    for url in body["figures"].values():
        figure = client.get(url)
        assert figure.status_code == 200 and figure.headers["content-type"] == "image/png"
        assert min(_png(figure.content)) > 200
    pair = client.get("/api/compare/figure.png?kind=pair&pair=t_cell,tumour")
    assert pair.status_code == 200 and min(_png(pair.content)) > 200

    # The viewer never writes the store: the maps were predicted in memory, not saved.
    assert _files(compare_store[0]) == before
    assert sorted(summarised) == [f"synth_0{i}" for i in range(4)]
    assert client.get("/api/compare").json() == body  # kept: nothing computed again
    assert len(summarised) == 4


def test_another_column_reuses_the_sections_and_bad_ones_are_refused(
    client: TestClient, summarised: list[str]
) -> None:
    client.get("/api/compare")  # the sections are summarised once, whatever the column
    n = len(summarised)
    by_section = client.get("/api/compare", params={"by": "section"})
    assert by_section.status_code == 200, by_section.text
    assert by_section.json()["groups"] == ["1", "2"] and len(summarised) == n
    assert by_section.json()["figures"]["differences"].startswith(
        "/api/compare/figure.png?by=section&"
    )
    refused = {
        "/api/compare?by=patient": (409, "hold a single patient"),
        "/api/compare?by=stage": (404, "no sample of the store has a 'stage' column"),
        "/api/compare?by=%20": (422, "by must name a metadata column"),
        f"/api/compare?by={'x' * 65}": (422, "by:"),
        "/api/compare/figure.png?kind=../x": (422, "kind must be one of"),
        "/api/compare/figure.png?kind=pair": (422, "kind=pair needs it"),
        "/api/compare/figure.png?kind=differences&pair=t_cell,tumour": (422, "goes with"),
        "/api/compare/figure.png?kind=pair&pair=t_cell": (422, "two different populations"),
        "/api/compare/figure.png?kind=pair&pair=t_cell,dragon": (404, "no population 'dragon'"),
        "/api/compare/figure.png?kind=differences&by=stage": (404, "'stage' column"),
    }
    for url, (status, words) in refused.items():
        response = client.get(url)
        assert response.status_code == status, (url, response.text)
        detail = response.json()["detail"]
        assert words in detail and "\n" not in detail and "Traceback" not in detail, url


@pytest.fixture(scope="module")
def variants(compare_store: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the store whose metadata cannot be compared, and of the model without its
    sub-spot model."""
    from tmescope.store import CohortStore

    store, model = compare_store
    root = tmp_path_factory.mktemp("compare-variants")
    for name, change in (
        ("ungrouped", lambda m: {k: v for k, v in m.items() if k != "group"}),
        ("one-group", lambda m: {**m, "group": "all"}),
    ):
        copy = root / f"{name}.zarr"
        shutil.copytree(store, copy)
        opened = CohortStore.open(copy, mode="a")
        for sample_id in opened.sample_ids():
            opened.update_sample_metadata(
                sample_id, change(opened.sample_record(sample_id).metadata)
            )
    shutil.copytree(model, root / "no-subspot-model", ignore=shutil.ignore_patterns("subspot"))
    return root


@pytest.mark.parametrize(
    ("store", "model", "status", "words"),
    [
        ("ungrouped", None, 404, "no sample of the store has a 'group' column"),
        ("one-group", None, 409, "every patient is in one group ('all')"),
        (None, "no-subspot-model", 409, "has no sub-spot model"),
    ],
)
def test_without_a_comparison_the_viewer_says_why_in_one_line(
    compare_store: tuple[Path, Path], variants: Path, store: str | None, model: str | None,
    status: int, words: str,
) -> None:  # fmt: skip
    store_path = variants / f"{store}.zarr" if store else compare_store[0]
    model_path = variants / model if model else compare_store[1]
    with TestClient(make_app(store_path, model_path)) as test_client:
        response = test_client.get("/api/compare")
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert words in detail and detail.startswith("no comparison between") and "\n" not in detail
        design = test_client.get("/api/info").json()["comparison"]
        if model is None:
            assert design["ready"] is False and words in design["why"]
        else:  # no sub-spot model, no section on the page
            assert design is None


def test_without_a_model_there_is_no_comparison(compare_store: tuple[Path, Path]) -> None:
    with TestClient(make_app(compare_store[0])) as bare:
        assert bare.get("/api/info").json()["comparison"] is None
        response = bare.get("/api/compare")
        assert (
            response.status_code == 409 and "started without a model" in response.json()["detail"]
        )
