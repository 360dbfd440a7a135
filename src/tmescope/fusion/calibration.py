"""How sharp the sub-spot head's compositions should be, fitted on the sample's own spots.

Weak supervision constrains only each spot's *mean* over its disc: any split of a spot's cells
between its bins that keeps the mean fits the training spots equally well, and a head that has
learnt to tell populations apart tends to split them more cleanly than tissue does (on a new
sample it is overconfident, as classifiers generally are: Guo et al. 2017). One temperature
``T`` divides every member's logits before the softmax (``T > 1`` mixes, ``T < 1`` sharpens);
it is chosen to best predict the *measured* compositions of the sample's spots from the
image's disc means, by cross-entropy over a fixed grid. This uses the sample's measurement,
which prediction already takes as input (reconciliation), and nothing else: no cell-level truth
and no other sample. The choice is recorded with the prediction.

On the synthetic cohort the held-out samples' spots choose ``T ≈ 1.5`` while the training
samples' own spots choose ``T ≈ 1`` (in-sample, the head is sharp by fitting them); see
docs/subspot.md for what it does to the maps and to the pair statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

TEMPERATURES = np.exp(np.linspace(np.log(0.5), np.log(4.0), 22))  # ~10 % apart, 0.5 to 4
MIN_SPOTS = 20  # fewer measured spots than this: keep T = 1 rather than fit noise


def tempered_shares(
    logits: Sequence[np.ndarray], temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread over members of ``softmax(logits / temperature)``, ``(n, P)`` each."""
    members = np.stack([_softmax(np.asarray(z, np.float64) / temperature) for z in logits])
    return members.mean(axis=0).astype(np.float32), members.std(axis=0).astype(np.float32)


def fit_temperature(
    logits: Sequence[np.ndarray],
    discs: sp.csr_matrix,
    measured: np.ndarray,
    *,
    density: np.ndarray | None = None,
) -> float:
    """The temperature of :data:`TEMPERATURES` whose disc means best predict ``measured``.

    ``discs`` is the ``(n_spots, n_bins)`` mean-over-disc operator, ``measured`` the spots'
    compositions (rows of NaN for spots without one), ``density`` the bins' relative cell
    density, which weighs each bin in its disc's mean as in training (``None``: alike). 1.0
    when fewer than :data:`MIN_SPOTS` spots have both a composition and bins.
    """
    operator = sp.csr_matrix(discs)
    if density is not None:  # the disc's weights times each bin's density, rows summing to one
        operator = operator @ sp.diags(np.asarray(density, dtype=np.float64))
        totals = np.asarray(operator.sum(axis=1)).ravel()
        operator = sp.csr_matrix(sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ operator)
    shares = np.asarray(measured, dtype=np.float64)
    usable = np.isfinite(shares).all(axis=1) & (np.diff(operator.indptr) > 0)
    if usable.sum() < MIN_SPOTS:
        return 1.0
    operator, shares = operator[usable], shares[usable]
    inside = np.unique(operator.indices)  # only bins in a disc bear on the fit
    operator = operator[:, inside]
    logits = [np.asarray(z)[inside] for z in logits]
    losses = []
    for temperature in TEMPERATURES:
        aggregate, _ = tempered_shares(logits, float(temperature))
        predicted = np.clip(operator @ aggregate.astype(np.float64), 1e-8, None)
        losses.append(float(-(shares * np.log(predicted)).sum(axis=1).mean()))
    return float(TEMPERATURES[int(np.argmin(losses))])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
