"""Co-occurrence: planted structure on a Visium-like lattice, NaN handling, pooling by hand."""

from __future__ import annotations

import numpy as np
import pytest

from planted_tissue import hex_lattice, planted_labels
from tmescope.analysis.cooccurrence import (
    CooccurrenceResult,
    co_occurrence,
    pool_cooccurrence,
)
from tmescope.errors import InvalidParameterError

EDGES = (0.0, 110.0, 250.0, 500.0, 1000.0)  # first upper edge holds exactly the 6 neighbours


@pytest.fixture(scope="module")
def coords() -> np.ndarray:
    return hex_lattice()


@pytest.fixture(scope="module")
def planted(coords: np.ndarray) -> CooccurrenceResult:
    return co_occurrence(coords, planted_labels(coords, seed=0), distances_um=EDGES, sample_id="s0")


def test_immune_gathers_next_to_tumour(planted: CooccurrenceResult) -> None:
    cats = planted.categories
    ratio = planted.ratio[cats.index("immune"), cats.index("tumour")]
    assert ratio.shape == (len(EDGES) - 1,)
    assert ratio[0] > 1.2
    assert ratio[0] > ratio[-1]
    # The direction convention: tumour around immune, not just immune around tumour, both > 1.
    assert planted.ratio[cats.index("tumour"), cats.index("immune"), 0] > 1.2


def test_random_vessels_are_neutral(planted: CooccurrenceResult) -> None:
    cats = planted.categories
    v = cats.index("vessel")
    mid = planted.ratio[:, v, 1:3]  # 250 and 500 µm
    assert np.all((mid > 0.6) & (mid < 1.5)), mid
    np.testing.assert_array_equal(planted.distances_um, np.asarray(EDGES[1:]))
    assert planted.sample_id == "s0"


def test_default_edges_and_absent_category_are_nan(coords: np.ndarray) -> None:
    labels = planted_labels(coords, seed=1)
    res = co_occurrence(
        coords, labels, categories=["immune", "necrosis", "stroma", "tumour", "vessel"]
    )
    np.testing.assert_array_equal(res.distances_um, np.arange(50.0, 501.0, 50.0))
    assert res.ratio.shape == (5, 5, 10)
    # No pair of spots lies within 50 µm on a 100 µm lattice: undefined, not depleted.
    assert np.all(np.isnan(res.ratio[:, :, 0]))
    n = res.categories.index("necrosis")
    assert np.all(np.isnan(res.ratio[n])) and np.all(np.isnan(res.ratio[:, n]))
    others = [i for i in range(5) if i != n]
    assert np.all(np.isfinite(res.ratio[np.ix_(others, others, [1, 5, 9])]))


def test_pooling_identical_results_gives_them_back(planted: CooccurrenceResult) -> None:
    twin = CooccurrenceResult(
        categories=planted.categories,
        distances_um=planted.distances_um,
        ratio=planted.ratio.copy(),
        sample_id="s1",
    )
    mean, std = pool_cooccurrence([planted, twin])
    np.testing.assert_allclose(mean, planted.ratio)
    np.testing.assert_allclose(std, np.zeros_like(std))


def test_pooling_skips_nan_samples() -> None:
    d = np.array([100.0, 200.0])
    a = np.full((2, 2, 2), 2.0)
    b = np.full((2, 2, 2), 4.0)
    b[0, 1, 0] = np.nan
    c = np.full((2, 2, 2), np.nan)
    mean, std = pool_cooccurrence([CooccurrenceResult(("x", "y"), d, r) for r in (a, b, c)])
    assert mean[0, 1, 0] == pytest.approx(2.0) and std[0, 1, 0] == pytest.approx(0.0)
    assert mean[1, 1, 1] == pytest.approx(3.0) and std[1, 1, 1] == pytest.approx(1.0)


def test_pooling_refuses_mismatched_axes(planted: CooccurrenceResult) -> None:
    other = CooccurrenceResult(planted.categories, planted.distances_um * 2, planted.ratio)
    with pytest.raises(InvalidParameterError, match="share categories and distances"):
        pool_cooccurrence([planted, other])
    with pytest.raises(InvalidParameterError, match="at least one"):
        pool_cooccurrence([])


@pytest.mark.parametrize("edges", [(0.0,), (0.0, 100.0, 100.0), (-10.0, 50.0), (0.0, 200.0, 100.0)])
def test_bad_distances_are_refused(coords: np.ndarray, edges: tuple[float, ...]) -> None:
    with pytest.raises(InvalidParameterError, match="strictly increasing"):
        co_occurrence(coords, planted_labels(coords, seed=0), distances_um=edges)


def test_single_population_is_refused(coords: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError, match="at least 2 populations"):
        co_occurrence(coords, ["tumour"] * len(coords), categories=["immune", "tumour"])


def test_mismatched_labels_are_refused(coords: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError, match="one entry per spot"):
        co_occurrence(coords, ["a", "b"])
