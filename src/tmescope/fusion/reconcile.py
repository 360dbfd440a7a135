"""Reconcile sub-spot compositions with what the spots measured.

Inside a spot's disc the image only *distributes* what was measured: the bins' compositions are
rescaled (iterative proportional fitting, Sinkhorn's algorithm) until their mean over the disc
(weighted by each bin's cell density when the model predicts one: a spot measured shares of
cells) equals the spot's measured composition exactly, while each bin stays as close as it can to a
composition (shares summing to one), and to the image's relative preferences between bins.
Between spots no measurement exists: there the image's compositions are corrected by the
neighbouring spots' corrections (their log ratios of measured to image aggregate), weighted by a
Gaussian of the distance and shrunk to no correction far from every spot, and scaled by a
strength the sample's own spots choose: how well the corrections of a spot's neighbours predict
what it measured (none, when the image's disc means already agree with the spots up to the
measurement's own noise).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from tmescope.errors import InvalidParameterError

SINKHORN_ITERATIONS = 100
SPREAD_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the grid fit_spread_strength chooses from
MIN_SPREAD_SPOTS = 20  # fewer measured spots than this: spread the corrections in full
_FLOOR = 1e-9  # keeps a share that the image rules out from blocking a measured one


def reconcile_discs(
    shares: np.ndarray,
    disc: np.ndarray,
    measured: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    iterations: int = SINKHORN_ITERATIONS,
) -> np.ndarray:
    """Bin compositions whose disc means equal the spots' measured compositions.

    ``shares`` ``(n_bins, P)`` are the image's compositions, ``disc`` ``(n_bins,)`` the spot
    whose disc holds each bin (-1: none), ``measured`` ``(n_spots, P)`` each spot's composition
    (a row of NaN: not measured, its bins are left as they are), ``weights`` ``(n_bins,)`` each
    bin's weight in its disc's mean (``None``: alike). The last step matches the
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
    weight = _bin_weights(weights, len(shares))[inside]
    size = np.bincount(local, weights=weight, minlength=len(spots))
    for step in range(iterations):
        if step:
            block /= block.sum(axis=1, keepdims=True)
        means = np.zeros_like(target)
        np.add.at(means, local, weight[:, None] * block)
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
    weights: np.ndarray | None = None,
    strength: float = 1.0,
) -> np.ndarray:
    """Image compositions of bins between spots, corrected by the spots around them.

    Each measured spot's correction is ``log(measured / mean of the image's shares over its
    disc)`` (weighted by ``weights``, as :func:`reconcile_discs`); a bin outside every disc
    takes the Gaussian-weighted mean of its neighbours' corrections, with weight one (no
    correction) added as a prior, so the correction fades to nothing a few ``sigma_px`` from
    every spot, times ``strength`` (:func:`fit_spread_strength`). Bins inside discs are
    returned unchanged (see :func:`reconcile_discs`).
    """
    shares = np.asarray(shares, dtype=np.float64)
    disc = np.asarray(disc, dtype=np.int64)
    usable, _, correction = _spot_corrections(shares, disc, measured, weights)
    between = np.flatnonzero(disc < 0)
    if not usable.any() or not between.size or strength == 0:
        return shares.copy()
    log_factor = _neighbour_mean(
        np.asarray(spot_xy, dtype=np.float64)[usable], correction,
        np.asarray(bin_xy, dtype=np.float64)[between], sigma_px=sigma_px,
    )  # fmt: skip
    out = shares.copy()
    corrected = np.maximum(shares[between], _FLOOR) * np.exp(strength * log_factor)
    out[between] = corrected / corrected.sum(axis=1, keepdims=True)
    return out


def fit_spread_strength(
    shares: np.ndarray,
    disc: np.ndarray,
    measured: np.ndarray,
    spot_xy: np.ndarray,
    *,
    sigma_px: float,
    weights: np.ndarray | None = None,
) -> float:
    """How much of the spots' corrections to spread between them, from the sample's own spots.

    The spread is a guess of a place's correction from the spots around it. Each measured spot
    is guessed so from the *other* spots (leave one out), for every strength of
    :data:`SPREAD_STRENGTHS`; the strength whose guesses best predict the spots' measured
    compositions (cross-entropy) is kept. Corrections that only carry the measurement's own
    noise (an image whose disc means already agree with the spots) do not predict a neighbour
    and choose 0; an image that errs smoothly over the tissue chooses 1. Fewer than
    :data:`MIN_SPREAD_SPOTS` usable spots: 1, the correction in full.
    """
    shares = np.asarray(shares, dtype=np.float64)
    usable, aggregate, correction = _spot_corrections(
        shares, np.asarray(disc, dtype=np.int64), measured, weights
    )
    if usable.sum() < MIN_SPREAD_SPOTS:
        return 1.0
    xy = np.asarray(spot_xy, dtype=np.float64)[usable]
    log_factor = _neighbour_mean(xy, correction, xy, sigma_px=sigma_px, leave_out_self=True)
    target = np.asarray(measured, dtype=np.float64)[usable]
    losses = []
    for strength in SPREAD_STRENGTHS:
        guess = np.maximum(aggregate, _FLOOR) * np.exp(strength * log_factor)
        guess /= guess.sum(axis=1, keepdims=True)
        losses.append(float(-(target * np.log(np.maximum(guess, 1e-8))).sum(axis=1).mean()))
    return float(SPREAD_STRENGTHS[int(np.argmin(losses))])


def _spot_corrections(
    shares: np.ndarray, disc: np.ndarray, measured: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which spots can correct (measured, with bins), their image disc means and their log
    corrections ``log(measured / disc mean)``, both ``(n_usable, P)``."""
    measured = np.asarray(measured, dtype=np.float64)
    n_spots = measured.shape[0]
    inside = disc >= 0
    weight = _bin_weights(weights, len(shares))
    sums = np.zeros((n_spots, shares.shape[1]))
    np.add.at(sums, disc[inside], weight[inside, None] * shares[inside])
    size = np.bincount(disc[inside], weights=weight[inside], minlength=n_spots)
    usable = np.isfinite(measured).all(axis=1) & (size > 0)
    aggregate = sums[usable] / size[usable, None]
    correction = np.log(np.maximum(measured[usable], 1e-4) / np.maximum(aggregate, 1e-4))
    return usable, aggregate, correction


def _neighbour_mean(
    spot_xy: np.ndarray,
    values: np.ndarray,
    points: np.ndarray,
    *,
    sigma_px: float,
    leave_out_self: bool = False,
) -> np.ndarray:
    """At each of ``points``, the Gaussian-weighted mean of the spots' ``values`` over its 12
    nearest spots, with a weight of one on zero as the prior (``leave_out_self``: the points
    are the spots, each left out of its own mean)."""
    skip = int(leave_out_self)
    k = min(12 + skip, len(spot_xy))
    distance, nearest = cKDTree(spot_xy).query(points, k=k)
    distance = distance.reshape(len(points), k)[:, skip:]
    nearest = nearest.reshape(len(points), k)[:, skip:]
    weight = np.exp(-0.5 * (distance / sigma_px) ** 2)  # (m, k)
    return np.einsum("mk,mkp->mp", weight, values[nearest]) / (1.0 + weight.sum(1))[:, None]


def _bin_weights(weights: np.ndarray | None, n_bins: int) -> np.ndarray:
    """``(n_bins,)`` float64 weights of the bins in their discs' means: ones when none given."""
    if weights is None:
        return np.ones(n_bins)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_bins,) or not (weights > 0).all():
        raise InvalidParameterError(
            f"weights must be ({n_bins},) positive values, one per bin; got {weights.shape}"
        )
    return weights
