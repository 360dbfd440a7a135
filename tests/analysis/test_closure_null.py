"""The closed null on shares: independent populations made into shares "avoid" each other by
closure alone, and only a null that keeps the closure calls them independent."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tmescope.analysis.interfaces import (
    ClosedShift,
    PlainShift,
    ShiftFields,
    ShiftNull,
    are_shares,
    colocation_ratios,
    neighbour_weights,
    null_for,
    pair_statistics,
)

SIDE = 40  # bins across the tissue's bounding box
PITCH = 16.0  # µm, as the sub-spot bins
RADIUS = 30.0
SHIFTS = 99


def _tissue(rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """Positions (µm) of an irregular section: a wavy outline with four holes (~1,000 bins)."""
    gx, gy = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    centre = (side - 1) / 2
    theta = np.arctan2(gy - centre, gx - centre)
    k = np.arange(1, 5)[:, None, None]
    wave = rng.normal(0, 0.24, (4, 1, 1)) / k * np.cos(k * theta + rng.uniform(0, 6.3, (4, 1, 1)))
    mask = np.hypot(gx - centre, gy - centre) < 0.46 * side * (1 + wave.sum(axis=0))
    for _ in range(4):
        inside = np.argwhere(mask)
        hole = inside[rng.integers(len(inside))]
        mask &= np.hypot(gx - hole[0], gy - hole[1]) > rng.uniform(1.5, 3.5)
    return np.argwhere(mask).astype(float) * PITCH


def _fields(rng: np.random.Generator, xy: np.ndarray, p: int, sigma: float = 2.0) -> np.ndarray:
    """``p`` independent smooth positive fields at the positions (exponentiated smoothed noise)."""
    cells = (xy / PITCH).astype(int)
    out = []
    for _ in range(p):
        f = gaussian_filter(rng.normal(size=(SIDE, SIDE)), sigma)
        out.append(np.exp(f / f.std())[cells[:, 0], cells[:, 1]])
    return np.stack(out, axis=1)


def _shares(values: np.ndarray) -> np.ndarray:
    return values / values.sum(axis=1, keepdims=True)


def _pvalues_and_z(p: int, seeds: range, null: ShiftNull) -> tuple[np.ndarray, np.ndarray]:
    """Every pair's p and z over ``seeds``, each a fresh tissue and fresh independent fields
    made into shares of ``p`` populations."""
    pvalues, zscores = [], []
    upper = np.triu_indices(p, 1)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        xy = _tissue(rng)
        shares = _shares(_fields(rng, xy, p))
        names = [f"P{i}" for i in range(p)]
        stats = pair_statistics(
            xy, shares, names, radius=RADIUS, n_shifts=SHIFTS, seed=seed, null=null
        )
        pvalues.append(stats.pvalue[upper])
        zscores.append(stats.zscore[upper])
    return np.concatenate(pvalues), np.concatenate(zscores)


def test_shares_are_recognised_and_get_the_closed_null() -> None:
    rng = np.random.default_rng(0)
    xy = _tissue(rng)
    raw = _fields(rng, xy, 3)
    shares = _shares(raw)
    shares[::50] = 0.0  # empty bins are allowed
    assert are_shares(shares) and not are_shares(raw)
    nudged = shares.copy()
    nudged[1::50, 0] += 4e-4  # within the tolerance of 1e-3 …
    assert are_shares(nudged)
    nudged[2::50, 0] += 2e-3  # … and beyond it
    assert not are_shares(nudged)
    assert isinstance(null_for(shares), ClosedShift) and isinstance(null_for(raw), PlainShift)
    names = ["A", "B", "C"]
    assert pair_statistics(xy, shares, names, radius=RADIUS, n_shifts=19).null == "toroidal-closed"
    assert pair_statistics(xy, raw, names, radius=RADIUS, n_shifts=19).null == "toroidal"
    chosen = pair_statistics(xy, shares, names, radius=RADIUS, n_shifts=19, null=PlainShift())
    assert chosen.null == "toroidal"


@pytest.mark.parametrize("null", [PlainShift(), ClosedShift()], ids=["plain", "closed"])
def test_a_shift_by_nothing_gives_the_observed_ratio(null: ShiftNull) -> None:
    """Both nulls compute the observed statistic when nothing moves: the closed one recomputes
    the neighbour means on the renormalised shares, and with no move they are the observed."""
    rng = np.random.default_rng(1)
    xy = _tissue(rng)
    shares = _shares(_fields(rng, xy, 4))
    shares[::37] = 0.0
    weights = neighbour_weights(xy, RADIUS)
    lag = weights @ shares
    fields = ShiftFields(shares, weights, lag, np.diff(weights.indptr) > 0)
    observed, _, _ = colocation_ratios(xy, shares, radius=RADIUS)
    everywhere = np.ones(len(xy), bool)
    same = null.shifted(fields, everywhere, np.arange(len(xy)))
    np.testing.assert_allclose(same, observed, rtol=1e-10)


def test_the_plain_shift_on_shares_of_three_calls_independent_populations_avoiding() -> None:
    """What the closed null is for: on shares of three, the plain shift finds most pairs of
    independent populations significant, all of them on the avoiding side."""
    pvalues, zscores = _pvalues_and_z(3, range(24), PlainShift())
    assert (pvalues < 0.05).mean() >= 0.5  # nominal 0.05
    assert zscores.mean() < -2.0


def test_the_closed_null_is_calibrated_on_shares_of_three() -> None:
    """The same fields and shifts under the closed null: p < 0.05 near the nominal 5 % of the
    72 pairs, z centred on 0 with unit spread (the plain shift's mean z is below −2)."""
    pvalues, zscores = _pvalues_and_z(3, range(24), ClosedShift())
    assert (pvalues < 0.05).mean() <= 0.10
    assert abs(zscores.mean()) < 0.4
    assert 0.7 < zscores.std() < 1.3


def test_the_closed_null_is_calibrated_on_shares_of_nine() -> None:
    """Nine populations (36 pairs in each of 8 samples): each share is small, the closure
    weak, and the closed null stays at the nominal rate."""
    pvalues, zscores = _pvalues_and_z(9, range(100, 108), ClosedShift())
    assert (pvalues < 0.05).mean() <= 0.10
    assert abs(zscores.mean()) < 0.4


def test_the_closed_null_still_finds_a_planted_border_on_shares() -> None:
    """Nests of A with B in the ring round each, among two independent smooth populations, all
    made into shares: the closed null calls the A–B contact in every draw."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        xy = _tissue(rng)
        cells = xy / PITCH
        centres: list[np.ndarray] = []
        while len(centres) < 12:  # random, not periodic: a lattice of nests would realign
            q = cells[rng.integers(len(cells))]
            if all(np.linalg.norm(q - c) > 6.5 for c in centres):
                centres.append(q)
        distance = np.min(np.linalg.norm(cells[:, None] - np.array(centres)[None], axis=2), 1)
        nest = (distance < 1.6).astype(float)
        ring = ((distance >= 1.6) & (distance < 3.0)).astype(float)
        background = _fields(rng, xy, 2)
        shares = _shares(np.c_[0.1 + 4 * nest, 0.1 + 4 * ring, background])
        stats = pair_statistics(xy, shares, ["A", "B", "C", "D"], radius=RADIUS, n_shifts=SHIFTS)
        assert stats.null == "toroidal-closed"
        assert stats.pvalue[0, 1] <= 0.02 and stats.zscore[0, 1] > 3
