"""Niches: planted clusters are found, tiles go to the nearest niche, names follow the states."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from tmescope.analysis.niches import (
    composition,
    fit_niches,
    niche_names,
    niche_profiles,
    top_genes,
)
from tmescope.errors import InvalidParameterError


def planted(
    n_per: int = 150, k: int = 4, dim: int = 40, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` well separated Gaussian blobs in ``dim`` dimensions, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, dim))
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(size=(labels.size, dim)), labels


def test_kmeans_with_k_given_recovers_planted_clusters() -> None:
    x, truth = planted()
    model = fit_niches(x, k=4, seed=1)
    assert model.method == "kmeans" and model.k == 4
    assert adjusted_rand_score(truth, model.labels) > 0.95


def test_silhouette_finds_the_planted_number() -> None:
    x, truth = planted(k=5, seed=3)
    model = fit_niches(x, seed=0)
    assert model.params["k"] == 5 and model.params["k_chosen_by"] == "silhouette"
    assert adjusted_rand_score(truth, model.labels) > 0.95


def test_niches_are_numbered_largest_first_and_reproducible() -> None:
    x, _ = planted(n_per=60, k=3)
    x = np.concatenate([x, x[:60] + 0.01])  # niche of the first blob doubles
    a, b = fit_niches(x, k=3, seed=2), fit_niches(x, k=3, seed=2)
    np.testing.assert_array_equal(a.labels, b.labels)
    sizes = np.bincount(a.labels)
    assert list(sizes) == sorted(sizes, reverse=True)


def test_tiles_are_assigned_to_the_nearest_niche() -> None:
    x, _ = planted(seed=4)
    model = fit_niches(x, k=4, seed=0)
    rng = np.random.default_rng(9)
    tiles = x[:40] + rng.normal(scale=0.1, size=(40, x.shape[1]))
    np.testing.assert_array_equal(model.assign(tiles), model.labels[:40])


def test_leiden_recovers_planted_clusters() -> None:
    pytest.importorskip("leidenalg", reason="Leiden needs igraph and leidenalg (tmescope[leiden])")
    x, truth = planted(seed=5)
    model = fit_niches(x, resolution=0.3, seed=0)
    assert model.method == "leiden"
    assert adjusted_rand_score(truth, model.labels) > 0.9


def test_profiles_names_genes_and_composition() -> None:
    labels = np.array([0] * 50 + [1] * 50)
    rng = np.random.default_rng(0)
    states = rng.normal(size=(100, 3))
    states[:50, 0] += 3.0  # niche 0: tumour high
    states[50:, 2] += 3.0  # niche 1: vessels high
    profiles = niche_profiles(labels, states, ["tumour", "t_cells", "vessels"])
    assert profiles.loc[0, "tumour"] > 0.6 and profiles.loc[1, "vessels"] > 0.6
    names = niche_names(profiles)
    assert names[0].startswith("N0 tumour+") and names[1].startswith("N1 vessels+")
    expression = rng.normal(size=(100, 4))
    expression[50:, 3] += 4.0
    assert top_genes(labels, expression, ["A", "B", "C", "D"])[1][0] == "D"
    table = composition({"S1": np.array([0, 0, 1, 1]), "S2": np.array([1, 1, 1, 1])}, 2)
    pd.testing.assert_frame_equal(
        table,
        pd.DataFrame([[0.5, 0.5], [0.0, 1.0]], index=pd.Index(["S1", "S2"], name="sample"),
                     columns=pd.RangeIndex(2, name="niche")),
        check_dtype=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"k": 3, "resolution": 1.0}, "not both"), ({"k": 1}, "--k must"),
     ({"resolution": -1.0}, "--leiden-resolution must")],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs: dict, fragment: str) -> None:
    x, _ = planted(n_per=20)
    with pytest.raises(InvalidParameterError, match=fragment):
        fit_niches(x, **kwargs)


def test_too_few_spots_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="at least 10 spots"):
        fit_niches(np.zeros((5, 3)))
