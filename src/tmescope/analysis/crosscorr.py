"""Bivariate Moran's I between continuous TME scores, with a permutation test.

squidpy's ``spatial_autocorr`` is univariate only, so the cross-correlation of two scores
(does high x sit next to high y?) is computed here. The statistic uses the weights as given;
pass ``row_standardise(W)`` for the common definition (each spot's neighbours sum to 1), under
which ``I(x, x)`` equals squidpy's Moran's I with its default ``transformation=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError


@dataclass(frozen=True)
class CrossCorrResult:
    """Bivariate Moran's I of every ordered pair of scores.

    ``I[i, j]`` relates score ``i`` at a spot to score ``j`` around it (x = i, y = j); it is
    symmetric only when the weights are. ``pvalue`` is two-sided, from permuting y over spots.
    """

    names: tuple[str, ...]
    I: np.ndarray  # noqa: E741 - the statistic's name  (s, s)
    pvalue: np.ndarray  # (s, s)
    n_perms: int


def row_standardise(weights: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Scale each row of ``weights`` to sum to 1; rows without neighbours stay zero."""
    w = sp.csr_matrix(weights, dtype=np.float64)
    row_sum = np.asarray(w.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv = np.where(row_sum != 0, 1.0 / row_sum, 0.0)
    return sp.csr_matrix(sp.diags(inv) @ w)


def bivariate_moran(x: np.ndarray, y: np.ndarray, weights: sp.spmatrix | sp.sparray) -> float:
    """Bivariate Moran's I: ``(n / S0) · z_xᵀ W z_y / sqrt((z_xᵀ z_x)(z_yᵀ z_y))``.

    ``z`` are the centred values, ``S0`` the sum of the weights, ``W`` used as given
    (see :func:`row_standardise`).
    """
    scores = np.column_stack([_vector(x, "x"), _vector(y, "y")])  # (n, 2)
    w = _check_weights(weights, scores.shape[0])
    zn = _unit_columns(scores, ["x", "y"])
    return float(_moran_matrix(zn, w)[0, 1])


def cross_correlation(
    scores: np.ndarray,
    names: Sequence[str],
    weights: sp.spmatrix | sp.sparray,
    *,
    n_perms: int = 999,
    seed: int = 0,
) -> CrossCorrResult:
    """Bivariate Moran's I of all pairs of the ``(n, s)`` ``scores`` with permutation p-values.

    p = (1 + #{|I_perm| >= |I_obs|}) / (n_perms + 1), where each permutation shuffles the spots
    of y (all scores at once, so one sparse product per permutation serves every pair).
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2:
        raise InvalidParameterError(
            f"scores must be (n_spots, n_scores); found shape {values.shape}. Reshape a single score to (n, 1)."
        )
    label = tuple(str(name) for name in names)
    if len(label) != values.shape[1] or len(set(label)) != len(label):
        raise InvalidParameterError(
            f"names must be {values.shape[1]} unique strings, one per score column; found {list(label)}."
        )
    if n_perms < 1:
        raise InvalidParameterError(f"n_perms must be >= 1; found {n_perms}.")
    w = _check_weights(weights, values.shape[0])
    zn = _unit_columns(values, label)  # (n, s), centred, unit norm
    observed = _moran_matrix(zn, w)  # (s, s)

    rng = np.random.default_rng(seed)
    # Permuting y only: W z_y[perm] once per permutation, then one (s, n) @ (n, s) product.
    scale = zn.shape[0] / w.sum()
    exceed = np.zeros_like(observed)
    tol = 1e-12 * np.maximum(1.0, np.abs(observed))  # ties with the observed count as exceeding
    for _ in range(n_perms):
        perm = rng.permutation(zn.shape[0])
        null = scale * (zn.T @ (w @ zn[perm]))
        exceed += np.abs(null) >= np.abs(observed) - tol
    pvalue = (1.0 + exceed) / (n_perms + 1.0)
    return CrossCorrResult(names=label, I=observed, pvalue=pvalue, n_perms=n_perms)


def _moran_matrix(zn: np.ndarray, w: sp.csr_matrix) -> np.ndarray:
    """``(n / S0) · Znᵀ W Zn`` for unit-norm centred columns ``Zn`` ``(n, s)`` → ``(s, s)``."""
    return np.asarray((zn.shape[0] / w.sum()) * (zn.T @ (w @ zn)))


def _unit_columns(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise InvalidParameterError(
            "scores must be finite; found NaN or inf. Impute or drop those spots first."
        )
    centred = values - values.mean(axis=0)
    norm = np.linalg.norm(centred, axis=0)
    flat = [str(name) for name, nrm in zip(names, norm, strict=True) if nrm == 0]
    if flat:
        raise InvalidParameterError(
            f"every score must vary over the spots; found constant {flat}. Drop them: I is undefined."
        )
    return centred / norm  # (n, s)


def _vector(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise InvalidParameterError(f"{name} must be 1-D (n_spots,); found shape {arr.shape}.")
    return arr


def _check_weights(weights: sp.spmatrix | sp.sparray, n: int) -> sp.csr_matrix:
    if not sp.issparse(weights):
        raise InvalidParameterError(
            f"weights must be a scipy.sparse matrix; found {type(weights).__name__}. Wrap it with scipy.sparse.csr_matrix."
        )
    w = sp.csr_matrix(weights, dtype=np.float64)
    if w.shape != (n, n):
        raise InvalidParameterError(
            f"weights must be (n_spots, n_spots) = ({n}, {n}); found {w.shape}."
        )
    if w.sum() == 0:
        raise InvalidParameterError(
            "weights sum to 0 (no neighbours): Moran's I is undefined. Build the graph with a larger radius."
        )
    return w
