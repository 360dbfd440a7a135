"""Reconcile sub-spot compositions with what the spots measured.

Inside a spot's disc the image only *distributes* what was measured: the bins' compositions are
rescaled (iterative proportional fitting, Sinkhorn's algorithm) until their mean over the disc
equals the spot's measured composition exactly, while each bin stays as close as it can to a
composition (shares summing to one), and to the image's relative preferences between bins.
Between spots no measurement exists: there the image's compositions are corrected by the
neighbouring spots' corrections (their log ratios of measured to image aggregate), weighted by a
Gaussian of the distance and shrunk to no correction far from every spot.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from tmescope.errors import InvalidParameterError

SINKHORN_ITERATIONS = 100
_FLOOR = 1e-9  # keeps a share that the image rules out from blocking a measured one


def reconcile_discs(
    shares: np.ndarray,
    disc: np.ndarray,
    measured: np.ndarray,
    *,
    iterations: int = SINKHORN_ITERATIONS,
) -> np.ndarray:
    """Bin compositions whose disc means equal the spots' measured compositions.

    ``shares`` ``(n_bins, P)`` are the image's compositions, ``disc`` ``(n_bins,)`` the spot
    whose disc holds each bin (-1: none), ``measured`` ``(n_spots, P)`` each spot's composition
    (a row of NaN: not measured, its bins are left as they are). The last step matches the
    spots, so their aggregates hold exactly; bins then sum to one up to the convergence of the
    fit (to within 1e-3 for any composition the image does not rule out).
    """
    shares = np.asarray(shares, dtype=np.float64)
    disc = np.asarray(disc, dtype=np.int64)
    measured = np.asarray(measured, dtype=np.float64)
    if (
        shares.ndim != 2
        or disc.shape != (shares.shape[0],)
        or measured.shape[1:] != shares.shape[1:]
    ):
        raise InvalidParameterError(
            f"shares (n, P), disc (n,) and measured (n_spots, P) do not fit: {shares.shape}, "
            f"{disc.shape}, {measured.shape}"
        )
    out = shares.copy()
    usable = np.isfinite(measured).all(axis=1) & (np.nan_to_num(measured).sum(axis=1) > 0)
    inside = (disc >= 0) & usable[np.clip(disc, 0, None)]
    if not inside.any():
        return out
    spots, local = np.unique(disc[inside], return_inverse=True)
    block = np.maximum(out[inside], _FLOOR)
    target = measured[spots]
    size = np.bincount(local, minlength=len(spots)).astype(np.float64)
    for step in range(iterations):
        if step:
            block /= block.sum(axis=1, keepdims=True)
        means = np.zeros_like(target)
        np.add.at(means, local, block)
        means /= size[:, None]
        block *= (target / np.maximum(means, _FLOOR * _FLOOR))[local]
    out[inside] = block
    return out


def spread_corrections(
    shares: np.ndarray,
    bin_xy: np.ndarray,
    disc: np.ndarray,
    measured: np.ndarray,
    spot_xy: np.ndarray,
    *,
    sigma_px: float,
) -> np.ndarray:
    """Image compositions of bins between spots, corrected by the spots around them.

    Each measured spot's correction is ``log(measured / mean of the image's shares over its
    disc)``; a bin outside every disc takes the Gaussian-weighted mean of its neighbours'
    corrections, with weight one (no correction) added as a prior, so the correction fades to
    nothing a few ``sigma_px`` from every spot. Bins inside discs are returned unchanged (see
    :func:`reconcile_discs`).
    """
    shares = np.asarray(shares, dtype=np.float64)
    disc = np.asarray(disc, dtype=np.int64)
    measured = np.asarray(measured, dtype=np.float64)
    n_spots = measured.shape[0]
    inside = disc >= 0
    sums = np.zeros((n_spots, shares.shape[1]))
    np.add.at(sums, disc[inside], shares[inside])
    size = np.bincount(disc[inside], minlength=n_spots)
    usable = np.isfinite(measured).all(axis=1) & (size > 0)
    if not usable.any() or inside.all():
        return shares.copy()
    aggregate = sums[usable] / size[usable, None]
    correction = np.log(np.maximum(measured[usable], 1e-4) / np.maximum(aggregate, 1e-4))
    between = np.flatnonzero(~inside)
    tree = cKDTree(np.asarray(spot_xy, dtype=np.float64)[usable])
    k = min(12, int(usable.sum()))
    distance, nearest = tree.query(np.asarray(bin_xy, dtype=np.float64)[between], k=k)
    distance, nearest = distance.reshape(len(between), k), nearest.reshape(len(between), k)
    weight = np.exp(-0.5 * (distance / sigma_px) ** 2)  # (m, k)
    log_factor = (
        np.einsum("mk,mkp->mp", weight, correction[nearest]) / (1.0 + weight.sum(1))[:, None]
    )
    out = shares.copy()
    corrected = np.maximum(shares[between], _FLOOR) * np.exp(log_factor)
    out[between] = corrected / corrected.sum(axis=1, keepdims=True)
    return out
