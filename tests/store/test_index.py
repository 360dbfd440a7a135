"""The similarity index: exact and approximate search, staleness, refresh and the files on disk."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import numpy as np
import pytest
from cohort_factories import SampleData, make_sample, write_sample

from tmescope.errors import (
    IndexMissingError,
    InvalidParameterError,
    SampleNotFoundError,
    SpotNotFoundError,
    StaleIndexWarning,
    StoreError,
)
from tmescope.store import CohortStore
from tmescope.store.index import build_index, index_status, load_index, refresh_index
from tmescope.store.search import region_vector, results_frame, search, spot_vector


def _sample(
    seed: int, *, n: int = 40, dim: int = 8, embeddings: np.ndarray | None = None
) -> SampleData:
    data = make_sample(n_spots=n, n_tiles=4, dim=dim, seed=seed, source_hash=f"h{seed}")
    if embeddings is not None:
        data = dataclasses.replace(data, embeddings=embeddings)
    return data


@pytest.fixture
def cohort(store: CohortStore) -> CohortStore:
    for seed, sample_id in enumerate(["A", "B", "C"]):
        write_sample(store, sample_id, _sample(seed), counts=False)
    return store


def _brute_force(store: CohortStore, queries: np.ndarray, k: int) -> list[list[tuple[str, str]]]:
    ids, barcodes, vectors = [], [], []
    for sample_id in store.sample_ids():
        emb = store.read_embeddings(sample_id).astype(np.float64)
        vectors.append(emb / np.linalg.norm(emb, axis=1, keepdims=True))
        barcodes.extend(store.read_barcodes(sample_id).tolist())
        ids.extend([sample_id] * len(emb))
    db = np.concatenate(vectors)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    order = np.argsort(-(q @ db.T), axis=1)[:, :k]
    return [[(ids[i], barcodes[i]) for i in row] for row in order]


def test_exact_search_equals_brute_force_cosine(cohort: CohortStore) -> None:
    info = build_index(cohort)
    assert info.kind == "flat" and info.n == 3 * 44 and info.dim == 8
    assert info.params["requested"] == "auto"
    queries = np.random.default_rng(5).normal(size=(6, 8))
    results = search(cohort, queries, k=7)
    expected = _brute_force(cohort, queries, 7)
    assert [[(h.sample_id, h.barcode) for h in hits] for hits in results] == expected
    for hits in results:
        assert [h.rank for h in hits] == list(range(1, 8))
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True) and -1.0 <= min(scores) <= max(scores) <= 1.0


def test_a_spots_own_vector_finds_itself_first(cohort: CohortStore) -> None:
    build_index(cohort)
    query = spot_vector(cohort, "B", "AAAC0003-1")
    (hits,) = search(cohort, query, k=3)
    assert (hits[0].sample_id, hits[0].barcode) == ("B", "AAAC0003-1")
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    coords = cohort.read_coords("B")[3]
    assert (hits[0].x, hits[0].y) == pytest.approx((coords[0], coords[1]))
    frame = results_frame([hits])
    assert list(frame.columns) == ["query", "rank", "sample_id", "barcode", "x", "y", "score"]
    assert len(frame) == 3


def test_exclude_sample_returns_k_rows_of_other_samples(cohort: CohortStore) -> None:
    build_index(cohort)
    query = spot_vector(cohort, "A", "AAAC0000-1")
    (hits,) = search(cohort, query, k=60, exclude_sample="A")
    assert len(hits) == 60 and {h.sample_id for h in hits} <= {"B", "C"}
    assert [h.rank for h in hits] == list(range(1, 61))
    with pytest.raises(InvalidParameterError, match="outside sample 'A'"):
        search(cohort, query, k=89, exclude_sample="A")


@pytest.mark.parametrize("k", [0, -1, 133, 2.0, True])
def test_bad_k_is_refused(cohort: CohortStore, k: object) -> None:
    build_index(cohort)
    with pytest.raises(InvalidParameterError, match="k must be an int from 1 to 132"):
        search(cohort, np.ones((1, 8)), k=k)  # type: ignore[arg-type]


def test_bad_queries_are_refused(cohort: CohortStore) -> None:
    build_index(cohort)
    with pytest.raises(InvalidParameterError, match=r"shape \(q, 8\)"):
        search(cohort, np.ones((2, 5)), k=1)
    with pytest.raises(InvalidParameterError, match="non-zero"):
        search(cohort, np.zeros((1, 8)), k=1)


def test_a_store_without_index_says_how_to_build_one(cohort: CohortStore) -> None:
    assert index_status(cohort) == "missing"
    with pytest.raises(IndexMissingError, match="tmescope index STORE"):
        search(cohort, np.ones((1, 8)), k=1)


def test_stale_after_adding_a_sample_and_refresh_makes_it_fresh(cohort: CohortStore) -> None:
    build_index(cohort)
    assert index_status(cohort) == "fresh"
    write_sample(cohort, "D", _sample(3), counts=False)
    assert index_status(cohort) == "stale"
    with pytest.warns(StaleIndexWarning, match="tmescope index STORE"):
        search(cohort, np.ones((1, 8)), k=1)
    info = refresh_index(cohort)
    assert index_status(cohort) == "fresh"
    assert info.n == 4 * 44 and [s.sample_id for s in info.samples] == ["A", "B", "C", "D"]
    queries = np.random.default_rng(1).normal(size=(4, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleIndexWarning)
        results = search(cohort, queries, k=5)
    assert [[(h.sample_id, h.barcode) for h in hits] for hits in results] == _brute_force(
        cohort, queries, 5
    )


def test_removing_a_sample_makes_it_stale_and_refresh_rebuilds(cohort: CohortStore) -> None:
    build_index(cohort)
    cohort.remove_sample("B")
    assert index_status(cohort) == "stale"
    info = refresh_index(cohort)
    assert index_status(cohort) == "fresh" and [s.sample_id for s in info.samples] == ["A", "C"]
    (hits,) = search(cohort, np.ones((1, 8)), k=88)
    assert {h.sample_id for h in hits} == {"A", "C"}


def test_index_files_replace_each_other_atomically(
    cohort: CohortStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss

    first = build_index(cohort)
    second = build_index(cohort)
    names = sorted(p.name for p in (cohort.path / "index").iterdir() if not p.name.startswith("."))
    assert names == sorted(["zarr.json", *second.files.values()])
    assert first.generation != second.generation
    assert cohort.verify() == []

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken)
    write_sample(cohort, "D", _sample(3), counts=False)
    with pytest.raises(OSError, match="disk full"):
        build_index(cohort)
    # The interrupted build left the previous index whole, and no temporary file behind.
    assert not [p for p in (cohort.path / "index").iterdir() if p.name.endswith(".tmp")]
    assert load_index(cohort, warn_stale=False).info.generation == second.generation
    assert index_status(cohort) == "stale"
    assert cohort.verify() == []


def test_spot_and_region_vectors(cohort: CohortStore) -> None:
    with pytest.raises(SpotNotFoundError, match="did you mean 'AAAC0003-1'"):
        spot_vector(cohort, "A", "AAAC0003-2")
    with pytest.raises(SampleNotFoundError, match="did you mean 'A'"):
        spot_vector(cohort, "a", "AAAC0003-1")
    coords = cohort.read_coords("A")
    x, y = (float(v) for v in coords[0])
    own = spot_vector(cohort, "A", "AAAC0000-1")
    # 0.4 µm/px: a radius of 0.01 µm holds only the spot at its own centre.
    assert np.allclose(region_vector(cohort, "A", x, y, 0.01), own, atol=1e-6)
    wide = region_vector(cohort, "A", 2500, 2500, 10_000)
    emb = cohort.read_embeddings("A").astype(np.float32)
    expected = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).mean(axis=0)
    assert np.allclose(wide, expected, atol=1e-5)
    with pytest.raises(SpotNotFoundError, match="widen the radius"):
        region_vector(cohort, "A", -1e6, -1e6, 1.0)
    with pytest.raises(InvalidParameterError, match="radius_um"):
        region_vector(cohort, "A", x, y, 0)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    centres = np.random.default_rng(0).normal(size=(100, dim))  # the same clusters for every seed
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 100, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_reach_recall_at_10(store: CohortStore, kind: str) -> None:
    data = _clustered(20_000, 64, seed=0)
    for i in range(2):
        rows = data[i * 10_000 : (i + 1) * 10_000]
        sample = _sample(10 + i, n=9_996, dim=64, embeddings=rows)
        write_sample(store, f"S{i}", sample, chunk_rows=4096, counts=False)
    queries = _clustered(100, 64, seed=1)
    build_index(store, kind="flat")
    exact = search(store, queries, k=10)
    info = build_index(store, kind=kind)  # type: ignore[arg-type]
    assert info.kind == kind and info.n == 20_000
    assert ("nprobe" in info.params) == (kind == "ivf")
    approximate = search(store, queries, k=10)
    recall = np.mean(
        [
            len({(h.sample_id, h.barcode) for h in a} & {(h.sample_id, h.barcode) for h in e}) / 10
            for a, e in zip(approximate, exact, strict=True)
        ]
    )
    assert recall >= 0.9, (recall, info.params)
    (hits,) = search(store, queries[:1], k=10, exclude_sample="S0")
    assert len(hits) == 10 and {h.sample_id for h in hits} == {"S1"}


def test_the_store_package_does_not_load_faiss() -> None:
    code = (
        "import sys, tmescope.store, tmescope.store.index, tmescope.store.search;"
        "assert 'faiss' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_refresh_builds_a_missing_index_and_leaves_a_fresh_one(cohort: CohortStore) -> None:
    built = refresh_index(cohort)
    assert built.kind == "flat" and index_status(cohort) == "fresh"
    assert refresh_index(cohort).generation == built.generation
    reader = CohortStore.open(cohort.path)
    assert index_status(reader) == "fresh" and len(search(reader, np.ones(8), k=2)[0]) == 2
    with pytest.raises(StoreError, match="read-only"):
        build_index(reader)


def test_refresh_rebuilds_an_hnsw_index_with_its_kind(cohort: CohortStore) -> None:
    build_index(cohort, kind="hnsw")
    write_sample(cohort, "D", _sample(3), counts=False)
    info = refresh_index(cohort)
    assert info.kind == "hnsw" and info.n == 4 * 44 and index_status(cohort) == "fresh"
    with pytest.raises(InvalidParameterError, match="index kind"):
        build_index(cohort, kind="pq")  # type: ignore[arg-type]
