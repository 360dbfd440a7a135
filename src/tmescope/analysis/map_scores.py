"""How close population maps come to cell-level truth: the figures of ``tmescope evaluate`` and
of ``benchmarks/highres.py``, one implementation for both.

- **truth per bin**: the share of each type among the cells inside the bin's square (a cell
  belongs to its nearest bin centre when it lies within half a bin of it; NaN: no cell);
- **maps**: Pearson per population between a map and that truth over the bins holding cells,
  averaged over the populations that vary and make up ≥ 1 % of the cells;
- **pairs**: the co-location ratio R(A, B) = mean_i A_i · (mean of B over i's neighbours within
  r) / (mean A · mean B), symmetrised, on the map and on the truth; the error is the median
  over pairs of |log(R / R_truth)|;
- **oracle spot map**: each bin takes the true composition of the cells in its nearest spot's
  disc, the best any spot-resolution method could paint.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

MIN_SHARE = 0.01  # populations rarer than this (mean share) are not scored: their r is noise


def bin_truth(xy: np.ndarray, cells: pd.DataFrame, types: list[str], bin_px: float) -> np.ndarray:
    """``(n, P)`` share of each type among the cells inside each bin's square (NaN: no cell).

    ``cells`` has ``x``, ``y`` (the bins' pixels) and ``cell_type``; types not in ``types`` count
    towards no share (they are not in the denominator either).
    """
    positions = cells[["x", "y"]].to_numpy(float)
    _, nearest = cKDTree(xy).query(positions, p=np.inf)
    inside = np.abs(positions - xy[nearest]).max(axis=1) <= bin_px / 2
    counts = np.zeros((len(xy), len(types)))
    code = pd.Categorical(cells["cell_type"].astype(str), categories=types).codes
    ok = inside & (code >= 0)
    np.add.at(counts, (nearest[ok], code[ok]), 1.0)
    total = counts.sum(axis=1, keepdims=True)
    return np.where(total > 0, counts / np.maximum(total, 1), np.nan)


def disc_truth(
    centres: np.ndarray, cells: pd.DataFrame, types: list[str], radius_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """The true composition of each spot (share of each type among the cells whose position lies
    in its disc) and its number of such cells; a spot with none gets NaN."""
    positions = cells[["x", "y"]].to_numpy(float)
    code = pd.Categorical(cells["cell_type"].astype(str), categories=types).codes
    # A hair past the radius: a cell exactly on the rim counts (it does in synth's truth), whatever
    # the rounding of the tree's distances.
    members = cKDTree(positions).query_ball_point(centres, r=radius_px * (1 + 1e-9))
    counts = np.zeros((len(centres), len(types)))
    for s, found in enumerate(members):
        kept = code[np.asarray(found, dtype=np.int64)]
        np.add.at(counts[s], kept[kept >= 0], 1.0)
    total = counts.sum(axis=1)
    shares = np.where(total[:, None] > 0, counts / np.maximum(total, 1)[:, None], np.nan)
    return shares, total


def per_population_pearson(est: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """Pearson of every scored population (see the module docstring) over bins with cells."""
    keep = np.isfinite(truth).all(axis=1)
    out = {}
    for k in range(truth.shape[1]):
        t, e = truth[keep, k], est[keep, k]
        if t.std() > 0 and e.std() > 0 and t.mean() >= MIN_SHARE:
            out[k] = float(np.corrcoef(e, t)[0, 1])
    return out


def mean_pearson(est: np.ndarray, truth: np.ndarray) -> float:
    """The mean of :func:`per_population_pearson` (NaN when no population is scored)."""
    values = list(per_population_pearson(est, truth).values())
    return float(np.mean(values)) if values else float("nan")


def pair_ratios(
    xy: np.ndarray, fields: np.ndarray, radius_px: float
) -> dict[tuple[int, int], float]:
    """R(A, B) = mean_i A_i · (mean of B over i's neighbours) / (mean A · mean B), symmetrised."""
    import scipy.sparse as sp

    pairs = cKDTree(xy).query_pairs(radius_px, output_type="ndarray")
    n = len(xy)
    rows, cols = np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]
    adjacency = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    lag = (adjacency @ fields) / np.maximum(degree, 1)[:, None]
    has = degree > 0
    mean = fields[has].mean(axis=0)
    out = {}
    for a, b in itertools.combinations(range(fields.shape[1]), 2):
        if mean[a] > MIN_SHARE and mean[b] > MIN_SHARE:
            ab = (fields[has, a] * lag[has, b]).mean() + (fields[has, b] * lag[has, a]).mean()
            out[(a, b)] = float(ab / 2 / (mean[a] * mean[b]))
    return out


def pair_log_error(
    pairs: dict[tuple[int, int], float], true_pairs: dict[tuple[int, int], float]
) -> float:
    """Median over the pairs both score of |log(R / R_truth)| (NaN: no pair in common)."""
    keys = sorted(set(pairs) & set(true_pairs))
    if not keys:
        return float("nan")
    errors = [abs(np.log(max(pairs[k], 1e-6) / max(true_pairs[k], 1e-6))) for k in keys]
    return float(np.median(errors))


def map_scores(
    xy: np.ndarray,
    est: np.ndarray,
    truth: np.ndarray,
    true_pairs: dict[tuple[int, int], float],
    radius_px: float,
) -> dict[str, float]:
    """A map's mean Pearson against the truth and the median |log(R / R_truth)| of its pairs
    (``xy``, ``est`` and ``truth`` restricted to the bins holding cells)."""
    error = pair_log_error(pair_ratios(xy, est, radius_px), true_pairs)
    return {"pearson": round(mean_pearson(est, truth), 4), "pair_log_error": round(error, 4)}


def nearest_painted(xy: np.ndarray, centres: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each bin takes the row of ``values`` of its nearest centre (a spot map painted)."""
    _, nearest = cKDTree(centres).query(xy)
    return values[nearest]


def gaussian_interpolated(
    xy: np.ndarray, centres: np.ndarray, values: np.ndarray, sigma_px: float, k: int = 12
) -> np.ndarray:
    """Each bin takes the Gaussian-weighted mean (σ ``sigma_px``) of its ``k`` nearest centres'
    rows of ``values`` (rows with NaN are left out)."""
    k = min(k, len(centres))
    distance, near = cKDTree(centres).query(xy, k=k)
    distance, near = distance.reshape(len(xy), k), near.reshape(len(xy), k)
    weight = np.exp(-0.5 * (distance / sigma_px) ** 2)
    weight = np.where(np.isfinite(values).all(axis=1)[near], weight, 0.0)
    out = np.einsum("nk,nkp->np", weight, np.nan_to_num(values[near]))
    return out / np.maximum(weight.sum(axis=1, keepdims=True), 1e-12)
