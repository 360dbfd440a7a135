"""Expression targets: normalisation, variable genes from training data only, shared genes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError, TrainingDataError
from tmescope.fusion.targets import (
    common_genes,
    normalise_log1p,
    normalise_total,
    pool_gene_moments,
    require_genes,
    select_variable_genes,
)


def counts_matrix(seed: int = 0) -> np.ndarray:
    counts = np.random.default_rng(seed).poisson(3.0, (20, 8)).astype(np.int32)
    counts[5] = 0  # an empty spot
    return counts


def test_normalise_total_scales_rows_and_keeps_empty_spots_at_zero() -> None:
    counts = counts_matrix()
    scaled = normalise_total(counts, target_sum=100.0)
    assert scaled.dtype == np.float32 and isinstance(scaled, np.ndarray)
    sums = scaled.sum(axis=1)
    np.testing.assert_allclose(np.delete(sums, 5), 100.0, rtol=1e-5)
    assert sums[5] == 0 and np.isfinite(scaled).all()


def test_normalise_log1p_dense_and_sparse_agree() -> None:
    counts = counts_matrix(1)
    dense = normalise_log1p(counts)
    sparse = normalise_log1p(sp.csr_matrix(counts))
    assert isinstance(dense, np.ndarray) and dense.dtype == np.float32
    assert sp.issparse(sparse) and sparse.format == "csr" and sparse.dtype == np.float32
    np.testing.assert_allclose(sparse.toarray(), dense, rtol=1e-6)
    library = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.log1p(np.nan_to_num(counts / library) * 1e4)
    np.testing.assert_allclose(dense, expected, rtol=1e-5)
    assert (dense[5] == 0).all()


def test_normalise_rejects_negative_counts_and_bad_target() -> None:
    with pytest.raises(TrainingDataError, match="raw count"):
        normalise_log1p(np.array([[1.0, -2.0]]))
    with pytest.raises(TrainingDataError, match="raw count"):
        normalise_log1p(sp.csr_matrix(np.array([[1.0, np.nan]])))
    with pytest.raises(InvalidParameterError, match="target_sum"):
        normalise_log1p(np.ones((2, 2)), target_sum=0.0)


def leakage_cohort() -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Training samples where A varies most and B is constant; a test sample where B explodes."""
    rng = np.random.default_rng(7)
    genes = ["A", "B", "C", "D"]
    train = []
    for _ in range(2):
        n = 50
        a = rng.choice([0.0, 4.0], n)  # bimodal: large variance
        b = np.full(n, 1.0)  # constant: no variance at all
        c = rng.normal(2.0, 0.3, n)
        d = rng.normal(2.0, 0.1, n)
        train.append(np.column_stack([a, b, c, d]).clip(0))
    test = train[0].copy()
    test[:, 1] = rng.choice([0.0, 50.0], len(test))
    return train, test, genes


def test_variable_genes_come_from_training_spots_only() -> None:
    train, test, genes = leakage_cohort()
    assert select_variable_genes(train, genes, n=1) == ("A",)
    assert select_variable_genes(train, genes, n=3) == ("A", "C", "D")
    # The same call fed the test sample picks B: the check above can fail if test data leaks in.
    assert select_variable_genes([*train, test], genes, n=1) == ("B",)


def test_variable_genes_accept_sparse_matrices_and_break_ties_by_name() -> None:
    tied = np.tile([[0.0, 0.0], [2.0, 2.0]], (10, 1))  # Z and M vary identically
    matrix = np.column_stack([tied, np.linspace(0, 1, 20)])
    names = ["Z", "M", "S"]
    assert select_variable_genes([sp.csr_matrix(matrix)], names, n=2) == ("M", "Z")
    assert select_variable_genes([matrix], names, n=3) == ("M", "Z", "S")


def test_variable_genes_drop_rarely_detected_genes() -> None:
    matrix = np.zeros((300, 2))
    matrix[0, 0] = 100.0  # huge variance, but detected in 1 of 300 spots (< 1%)
    matrix[::2, 1] = 1.0
    assert select_variable_genes([matrix], ["rare", "common"], n=1) == ("common",)
    with pytest.raises(TrainingDataError, match="only 1 of 2 genes"):
        select_variable_genes([matrix], ["rare", "common"], n=2)


def test_variable_genes_reject_bad_input() -> None:
    with pytest.raises(InvalidParameterError, match="n must be"):
        select_variable_genes([np.ones((3, 2))], ["a", "b"], n=0)
    with pytest.raises(TrainingDataError, match=r"expected \(n_spots, 3\)"):
        select_variable_genes([np.ones((3, 2))], ["a", "b", "c"], n=1)
    with pytest.raises(TrainingDataError, match="no training spots"):
        select_variable_genes([], ["a"], n=1)


def test_common_genes_keep_the_first_samples_order() -> None:
    lists = [["C", "A", "B", "A", "D"], ["B", "A", "C"], ["A", "C", "B", "E"]]
    assert common_genes(lists) == ("C", "A", "B")
    with pytest.raises(TrainingDataError, match="share no gene"):
        common_genes([["ENSG1"], ["CD3E"]])
    with pytest.raises(TrainingDataError, match="no samples"):
        common_genes([])


def test_require_genes_names_the_samples_and_genes_missing() -> None:
    samples = {"s1": ["A", "B", "C"], "s2": ["A"], "s3": ["B", "C"]}
    with pytest.raises(TrainingDataError) as caught:
        require_genes(samples, ["A", "B", "C"])
    message = str(caught.value)
    assert "s2 lacks 2 (B, C)" in message and "s3 lacks 1 (A)" in message
    assert "s1" not in message
    assert require_genes({"s1": ["A", "B"], "s2": ["B", "A"]}, ["B", "A", "B"]) == ("B", "A")


def test_require_genes_shortens_long_lists() -> None:
    wanted = [f"G{i}" for i in range(8)]
    with pytest.raises(TrainingDataError, match=r"x lacks 8 \(G0, G1, G2, G3, G4, …\)"):
        require_genes({"x": []}, wanted)


def test_pooled_moments_match_numpy_over_dense_and_sparse_samples() -> None:
    rng = np.random.default_rng(9)
    first = rng.poisson(1.0, (15, 6)).astype(np.float32)
    second = rng.poisson(2.0, (25, 6)).astype(np.float32)
    moments = pool_gene_moments([first, sp.csr_matrix(second)], n_genes=6)
    pooled = np.vstack([first, second]).astype(np.float64)
    assert moments.n_spots == 40
    np.testing.assert_allclose(moments.mean, pooled.mean(axis=0))
    np.testing.assert_allclose(moments.variance, pooled.var(axis=0), atol=1e-12)
    np.testing.assert_allclose(moments.detected, (pooled > 0).mean(axis=0))
