"""Bivariate Moran's I: brute force, planted and independent pairs, squidpy's univariate I."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from tmescope.analysis.crosscorr import bivariate_moran, cross_correlation, row_standardise
from tmescope.errors import InvalidParameterError


def _grid_graph(side: int = 20) -> tuple[np.ndarray, sp.csr_matrix]:
    """Square grid, rook neighbours (binary, symmetric)."""
    r, c = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    coords = np.column_stack([r.ravel(), c.ravel()]).astype(float)
    pairs = cKDTree(coords).query_pairs(r=1.01, output_type="ndarray")
    n = len(coords)
    w = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return coords, sp.csr_matrix(w + w.T)


def _brute_force(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    n = len(x)
    zx, zy = x - x.mean(), y - y.mean()
    num = 0.0
    s0 = 0.0
    for i in range(n):
        for j in range(n):
            num += w[i, j] * zx[i] * zy[j]
            s0 += w[i, j]
    return (n / s0) * num / np.sqrt(np.sum(zx**2) * np.sum(zy**2))


def test_matches_brute_force_on_random_weighted_graph() -> None:
    rng = np.random.default_rng(0)
    n = 25
    dense = rng.random((n, n)) * (rng.random((n, n)) < 0.2)  # asymmetric, weighted
    np.fill_diagonal(dense, 0.0)
    x, y = rng.normal(size=n), rng.normal(size=n)
    w = sp.csr_matrix(dense)
    assert bivariate_moran(x, y, w) == pytest.approx(_brute_force(x, y, dense), rel=1e-12)
    rs = row_standardise(w)
    np.testing.assert_allclose(np.asarray(rs.sum(axis=1)).ravel()[dense.sum(1) > 0], 1.0)
    assert bivariate_moran(x, y, rs) == pytest.approx(_brute_force(x, y, rs.toarray()), rel=1e-12)


def test_cross_correlation_matrix_equals_pairwise() -> None:
    rng = np.random.default_rng(1)
    _, w = _grid_graph(8)
    scores = rng.normal(size=(w.shape[0], 3))
    res = cross_correlation(scores, ["a", "b", "c"], w, n_perms=9)
    for i in range(3):
        for j in range(3):
            assert res.I[i, j] == pytest.approx(bivariate_moran(scores[:, i], scores[:, j], w))


def _planted_and_independent(seed: int, w: sp.csr_matrix) -> np.ndarray:
    """Columns: x (smooth field), y = smoothed x + noise, u white noise independent of both."""
    rng = np.random.default_rng(seed)
    rs = row_standardise(w)
    n = w.shape[0]

    def smooth(v: np.ndarray) -> np.ndarray:
        for _ in range(3):
            v = 0.5 * v + 0.5 * (rs @ v)
        return v

    x = smooth(rng.normal(size=n))
    y = smooth(x) + 0.05 * x.std() * rng.normal(size=n)
    # White noise: two independent *smooth* fields would fail the permutation null too often,
    # since shuffling spots ignores the autocorrelation of x (a known limit of this test).
    u = rng.normal(size=n)
    return np.column_stack([x, y, u])


def test_planted_pair_significant_independent_pair_not() -> None:
    _, w = _grid_graph(20)
    rs = row_standardise(w)
    independent_p = []
    for seed in range(5):
        res = cross_correlation(_planted_and_independent(seed, w), ["x", "y", "u"], rs, n_perms=199)
        assert res.I[0, 1] > 0.3
        assert res.pvalue[0, 1] < 0.01
        independent_p.append(res.pvalue[0, 2])
    assert sum(p > 0.05 for p in independent_p) >= 4, independent_p


def test_seed_reproducible_and_pvalue_bounds() -> None:
    _, w = _grid_graph(10)
    scores = _planted_and_independent(0, w)
    a = cross_correlation(scores, ["x", "y", "u"], w, n_perms=49, seed=7)
    b = cross_correlation(scores, ["x", "y", "u"], w, n_perms=49, seed=7)
    np.testing.assert_array_equal(a.pvalue, b.pvalue)
    assert np.all(a.pvalue >= 1 / 50) and np.all(a.pvalue <= 1)


def test_self_correlation_equals_squidpy_moran() -> None:
    import anndata as ad
    import pandas as pd
    import squidpy as sq

    coords, w = _grid_graph(12)
    x = _planted_and_independent(3, w)[:, 0]
    adata = ad.AnnData(obs=pd.DataFrame({"x": x}, index=[str(i) for i in range(len(x))]))
    adata.obsm["spatial"] = coords
    adata.obsp["spatial_connectivities"] = w
    df = sq.gr.spatial_autocorr(
        adata, genes=["x"], attr="obs", mode="moran", n_perms=None, copy=True, n_jobs=1
    )
    # squidpy row-standardises (transformation=True), so compare on row_standardise(W).
    assert bivariate_moran(x, x, row_standardise(w)) == pytest.approx(df.loc["x", "I"], rel=1e-6)


def test_bad_inputs_raise() -> None:
    _, w = _grid_graph(4)
    n = w.shape[0]
    with pytest.raises(InvalidParameterError, match="vary"):
        bivariate_moran(np.ones(n), np.arange(n, dtype=float), w)
    with pytest.raises(InvalidParameterError, match="n_spots, n_spots"):
        bivariate_moran(np.arange(3.0), np.arange(3.0), w)
    with pytest.raises(InvalidParameterError, match=r"scipy\.sparse"):
        bivariate_moran(np.arange(n, dtype=float), np.arange(n, dtype=float), w.toarray())
    with pytest.raises(InvalidParameterError, match="unique"):
        cross_correlation(np.random.default_rng(0).normal(size=(n, 2)), ["a", "a"], w)
