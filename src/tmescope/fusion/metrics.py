"""Scores of predicted expression: Pearson r per gene (the HEST metric) and interval coverage.

HEST reports Pearson r per gene on the test fold, averaged over the genes, then mean ± std
over folds; :func:`pearson_per_gene` and :func:`mean_pearson` are those two steps. A gene that
is constant in the truth or in the prediction has no correlation: it scores NaN (scipy would
warn once per gene) and :func:`mean_pearson` leaves it out.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from tmescope.errors import InvalidParameterError

__all__ = ["interval_coverage", "mean_pearson", "pearson_per_gene"]


def pearson_per_gene(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``y_true`` (n, g) with the same column of ``y_pred`` (n, g).

    Returns a float64 array (g,). A 1-D input is one gene. A column constant in either input,
    or fewer than 2 rows, gives NaN; a NaN in a column gives NaN for that gene.
    """
    truth = _as_columns(y_true, "y_true")
    pred = _as_columns(y_pred, "y_pred")
    if truth.shape != pred.shape:
        raise InvalidParameterError(
            f"y_true and y_pred must have the same shape (spots, genes); found {truth.shape} "
            f"and {pred.shape}: predict the same spots and genes as the truth holds"
        )
    n_genes = truth.shape[1]
    if truth.shape[0] < 2:
        return np.full(n_genes, np.nan)
    # Exact equality, as scipy.stats.pearsonr tests it: centring a constant column in floating
    # point can leave residues of 1e-17 that would otherwise give a meaningless r.
    constant = (truth.max(axis=0) == truth.min(axis=0)) | (pred.max(axis=0) == pred.min(axis=0))
    truth = truth - truth.mean(axis=0)
    pred = pred - pred.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (truth * pred).sum(axis=0) / np.sqrt((truth**2).sum(axis=0) * (pred**2).sum(axis=0))
    r = np.clip(r, -1.0, 1.0)  # rounding can step just past ±1
    r[constant] = np.nan
    return r


def mean_pearson(per_gene: np.ndarray) -> float:
    """Mean of per-gene Pearson r, ignoring NaN genes; NaN when no gene has a value."""
    values = np.asarray(per_gene, dtype=np.float64).ravel()
    finite = values[~np.isnan(values)]
    # np.nanmean on an all-NaN array warns ("Mean of empty slice"); the answer is simply NaN.
    return float(finite.mean()) if finite.size else float("nan")


def interval_coverage(
    y_true: np.ndarray, mean: np.ndarray, std: np.ndarray, *, level: float = 0.9
) -> float:
    """Share of ``y_true`` inside the central Gaussian interval ``mean ± z·std`` of ``level``.

    ``z`` is the standard normal quantile at ``(1 + level) / 2`` (1.645 for 0.9). All three
    arrays have one shape; entries where any of them is NaN are left out. A calibrated model
    covers about ``level`` of the values. NaN when no entry is left.
    """
    if not 0.0 < level < 1.0:
        raise InvalidParameterError(
            f"level must lie strictly between 0 and 1 (e.g. 0.9 for a 90 % interval); found {level}"
        )
    truth = np.asarray(y_true, dtype=np.float64)
    centre = np.asarray(mean, dtype=np.float64)
    spread = np.asarray(std, dtype=np.float64)
    if not truth.shape == centre.shape == spread.shape:
        raise InvalidParameterError(
            f"y_true, mean and std must have one shape; found {truth.shape}, {centre.shape} "
            f"and {spread.shape}: give a predicted mean and std for every true value"
        )
    if (spread < 0).any():
        raise InvalidParameterError(
            f"std must be >= 0; found a minimum of {np.nanmin(spread):.3g}: pass standard "
            "deviations, not log-variances"
        )
    keep = ~(np.isnan(truth) | np.isnan(centre) | np.isnan(spread))
    if not keep.any():
        return float("nan")
    z = float(norm.ppf(0.5 + level / 2.0))
    inside = np.abs(truth[keep] - centre[keep]) <= z * spread[keep]
    return float(inside.mean())


def _as_columns(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as a float64 (n, g) array; a 1-D array becomes one column."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        return array.reshape(-1, 1)
    if array.ndim != 2:
        raise InvalidParameterError(
            f"{name} must be a (spots, genes) array; found {array.ndim} dimensions "
            f"(shape {array.shape}): reshape it to one row per spot"
        )
    return array
