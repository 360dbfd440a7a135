"""Neighbourhood enrichment: planted structure on a Visium-like lattice, pooling by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from planted_tissue import hex_lattice, planted_labels
from tmescope.analysis.enrichment import NhoodResult, nhood_enrichment, pool_cohort
from tmescope.errors import InvalidParameterError

N_PERMS = 200  # enough for stable z on 900 spots, cheap on 2 cores


@pytest.fixture(scope="module")
def coords() -> np.ndarray:
    return hex_lattice()


def _z(result: NhoodResult, a: str, b: str) -> float:
    return float(result.zscore[result.categories.index(a), result.categories.index(b)])


def test_planted_contact_enriched_and_random_vessels_not(coords: np.ndarray) -> None:
    immune_tumour, vessel_immune = [], []
    for seed in range(5):
        res = nhood_enrichment(coords, planted_labels(coords, seed), n_perms=N_PERMS, seed=seed)
        immune_tumour.append(_z(res, "immune", "tumour"))
        vessel_immune.append(_z(res, "vessel", "immune"))
    assert sum(z > 3 for z in immune_tumour) >= 4, immune_tumour
    assert sum(abs(z) < 2 for z in vessel_immune) >= 4, vessel_immune


def test_same_seed_same_z_and_counts_match_graph(coords: np.ndarray) -> None:
    labels = planted_labels(coords, 0)
    a = nhood_enrichment(coords, labels, n_perms=50, seed=3)
    b = nhood_enrichment(coords, labels, n_perms=50, seed=3)
    np.testing.assert_array_equal(a.zscore, b.zscore)
    # Observed counts are ordered pairs over the 6-neighbour graph: they sum to 2·E.
    n_edges = len(cKDTree(coords).query_pairs(r=125))
    assert a.count.sum() == 2 * n_edges
    np.testing.assert_array_equal(a.count, a.count.T)


def test_edge_index_gives_same_result_as_radius_graph(coords: np.ndarray) -> None:
    labels = planted_labels(coords, 1)
    pairs = cKDTree(coords).query_pairs(r=125, output_type="ndarray").T  # one direction only
    edge_index = np.concatenate([pairs, pairs[::-1]], axis=1)
    by_radius = nhood_enrichment(coords, labels, n_perms=50, seed=0)
    by_edges = nhood_enrichment(coords, labels, edge_index=edge_index, n_perms=50, seed=0)
    np.testing.assert_array_equal(by_radius.count, by_edges.count)
    np.testing.assert_allclose(by_radius.zscore, by_edges.zscore)


def test_absent_category_is_nan_on_full_axis(coords: np.ndarray) -> None:
    labels = planted_labels(coords, 0)
    labels[labels == "vessel"] = "stroma"
    cats = ["tumour", "immune", "stroma", "vessel"]
    res = nhood_enrichment(coords, labels, n_perms=50, categories=cats, sample_id="s1")
    assert res.categories == tuple(cats) and res.sample_id == "s1"
    assert np.all(np.isnan(res.zscore[3, :])) and np.all(np.isnan(res.zscore[:, 3]))
    assert np.all(np.isfinite(res.zscore[:3, :3]))
    assert np.all(res.count[3, :] == 0)


def test_one_population_raises(coords: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError, match="at least 2 populations"):
        nhood_enrichment(coords, ["tumour"] * len(coords), categories=["tumour", "immune"])


def test_label_outside_categories_raises(coords: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError, match="one of categories"):
        nhood_enrichment(coords, planted_labels(coords, 0), categories=["tumour", "immune"])


def _result(z: list[list[float]]) -> NhoodResult:
    arr = np.asarray(z)
    return NhoodResult(categories=("a", "b"), zscore=arr, count=np.zeros_like(arr))


def test_pool_cohort_by_hand() -> None:
    nan = np.nan
    results = [
        _result([[1.0, 2.0], [2.0, nan]]),
        _result([[3.0, 4.0], [4.0, nan]]),
        _result([[2.0, nan], [nan, nan]]),
    ]
    pooled = pool_cohort(results)
    np.testing.assert_array_equal(pooled.n_samples, [[3, 2], [2, 0]])
    assert pooled.mean_z[0, 0] == pytest.approx(2.0)  # all three defined: plain mean
    assert pooled.mean_z[0, 1] == pytest.approx(3.0)  # NaN sample skipped
    assert pooled.std_z[0, 0] == pytest.approx(np.sqrt(2 / 3))  # ddof 0
    assert pooled.stouffer_z[0, 0] == pytest.approx(6.0 / np.sqrt(3))
    assert pooled.stouffer_z[0, 1] == pytest.approx(6.0 / np.sqrt(2))
    assert np.isnan(pooled.mean_z[1, 1]) and np.isnan(pooled.stouffer_z[1, 1])


def test_pool_cohort_mean_equals_average_of_real_samples(coords: np.ndarray) -> None:
    cats = ["immune", "stroma", "tumour", "vessel"]
    results = [
        nhood_enrichment(coords, planted_labels(coords, s), n_perms=50, seed=s, categories=cats)
        for s in range(2)
    ]
    pooled = pool_cohort(results)
    np.testing.assert_allclose(pooled.mean_z, (results[0].zscore + results[1].zscore) / 2)


def test_pool_cohort_rejects_mismatched_axes() -> None:
    other = NhoodResult(categories=("b", "a"), zscore=np.zeros((2, 2)), count=np.zeros((2, 2)))
    with pytest.raises(InvalidParameterError, match="share one category axis"):
        pool_cohort([_result([[0.0, 0.0], [0.0, 0.0]]), other])
    with pytest.raises(InvalidParameterError, match="at least one"):
        pool_cohort([])
