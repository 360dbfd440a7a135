"""Interface scores and the toroidal-shift null on continuous abundances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tmescope.analysis.interfaces import (
    interface_map,
    neighbour_weights,
    pair_statistics,
    pairs_of,
)
from tmescope.errors import InvalidParameterError

SIDE = 32
PITCH = 16.0  # µm, as the sub-spot bins
RADIUS = 30.0


def _lattice(side: int = SIDE) -> np.ndarray:
    gx, gy = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return np.c_[gx.ravel(), gy.ravel()].astype(float) * PITCH


def _smooth_field(rng: np.random.Generator, side: int = SIDE, sigma: float = 3.0) -> np.ndarray:
    """A smooth non-negative field, stationary on the torus (as the shift null assumes)."""
    f = gaussian_filter(rng.normal(size=(side, side)), sigma, mode="wrap")
    return ((f - f.min()) / (f.max() - f.min())).ravel()


def test_interface_map_is_high_where_the_populations_touch() -> None:
    xy = _lattice()
    column = xy[:, 0] / PITCH
    a = (column < SIDE / 2).astype(float)  # A on the left half, B on the right
    scores = interface_map(xy, np.c_[a, 1 - a], (0, 1), RADIUS)
    border = np.abs(column - (SIDE / 2 - 0.5)) < 1
    assert scores[border].min() > 0.5
    assert np.allclose(scores[np.abs(column - SIDE / 2) > 3], 0.0)


def test_interface_map_of_evenly_mixed_populations_is_one() -> None:
    xy = _lattice(12)
    even = np.full((len(xy), 2), 0.5)
    assert np.allclose(interface_map(xy, even, (0, 1), RADIUS), 1.0)


def test_neighbour_weights_leave_each_location_out_and_sum_to_one() -> None:
    w = neighbour_weights(_lattice(6), RADIUS)
    assert np.allclose(w.diagonal(), 0.0)
    assert np.allclose(np.asarray(w.sum(axis=1)).ravel(), 1.0)
    assert w[7].nnz == 8  # an inner location of the lattice has its 8 neighbours within 30 µm


def test_shift_null_stays_calm_on_independent_smooth_fields() -> None:
    """Two smooth fields drawn independently: p < 0.05 about 5 % of the time, where shuffling
    values between locations (today's label null) calls most of them interacting."""
    xy = _lattice()
    shift_hits, shuffle_hits, seeds = 0, 0, 40
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        fields = np.c_[_smooth_field(rng), _smooth_field(rng)]
        stats = pair_statistics(xy, fields, ["A", "B"], radius=RADIUS, n_shifts=99, seed=seed)
        shift_hits += stats.pvalue[0, 1] < 0.05
        shuffle_hits += _shuffle_pvalue(xy, fields, rng) < 0.05
    assert shift_hits / seeds <= 0.15  # nominal 0.05; 40 seeds leave room for chance
    assert shuffle_hits / seeds >= 0.4  # the null it replaces is fooled by autocorrelation


def test_shift_null_fires_on_a_planted_border() -> None:
    """Nests of A scattered at random, B in the ring just round each (a tumour margin): the pair
    meets far more than any shift of B gives, in every draw."""
    xy = _lattice()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        centres: list[np.ndarray] = []
        while len(centres) < 14:  # random, not periodic: a lattice of nests would realign
            p = rng.uniform(2, SIDE - 2, 2)
            if all(np.linalg.norm(p - q) > 6.5 for q in centres):
                centres.append(p)
        distance = np.min(np.linalg.norm(xy[:, None] - np.array(centres)[None] * PITCH, axis=2), 1)
        a = (distance < 1.6 * PITCH).astype(float)
        b = ((distance >= 1.6 * PITCH) & (distance < 3 * PITCH)).astype(float)
        noisy = np.c_[a, b, 1 - a - b] + rng.uniform(0, 0.1, (len(xy), 3))
        stats = pair_statistics(xy, noisy, ["A", "B", "C"], radius=RADIUS, n_shifts=99, seed=0)
        assert stats.pvalue[0, 1] <= 0.02 and stats.zscore[0, 1] > 3
        assert stats.ratio[0, 1] > stats.null_mean[0, 1]
        assert np.allclose(stats.ratio, stats.ratio.T, equal_nan=True)


def test_rare_populations_are_left_out() -> None:
    xy = _lattice(12)
    rng = np.random.default_rng(0)
    values = np.c_[rng.uniform(size=len(xy)), rng.uniform(size=len(xy)), np.zeros(len(xy))]
    stats = pair_statistics(xy, values, ["A", "B", "none"], radius=RADIUS, n_shifts=19)
    assert np.isnan(stats.ratio[2]).all() and np.isfinite(stats.ratio[0, 1])


def test_pairs_of_names_an_unknown_population() -> None:
    assert pairs_of(["a", "b", "c"], None) == [(0, 1), (0, 2), (1, 2)]
    assert pairs_of(["a", "b", "c"], [("c", "a")]) == [(2, 0)]
    with pytest.raises(InvalidParameterError, match=r"unknown population 'nope'.*a, b, c"):
        pairs_of(["a", "b", "c"], [("a", "nope")])


@pytest.mark.parametrize(
    ("values", "match"),
    [(np.full((5, 2), np.nan), "finite"), (-np.ones((5, 2)), "non-negative"),
     (np.ones(5), "shape")],
)  # fmt: skip
def test_bad_abundances_are_refused(values: np.ndarray, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        pair_statistics(_lattice(5)[:5], values, ["A", "B"], radius=RADIUS)


def _shuffle_pvalue(xy: np.ndarray, fields: np.ndarray, rng: np.random.Generator) -> float:
    """The label-shuffling null: B's values permuted over the locations."""
    w = neighbour_weights(xy, RADIUS)

    def ratio(b: np.ndarray) -> float:
        a = fields[:, 0]
        return float(((a * (w @ b)).mean() + (b * (w @ a)).mean()) / 2 / (a.mean() * b.mean()))

    observed = ratio(fields[:, 1])
    null = np.array([ratio(rng.permutation(fields[:, 1])) for _ in range(99)])
    extreme = np.abs(null - null.mean()) >= abs(observed - null.mean())
    return float((1 + extreme.sum()) / 100)
