"""The nulls of :func:`tmescope.analysis.interfaces.pair_statistics`: how one toroidal shift of a
population's field turns into null co-location ratios.

* :class:`PlainShift`: B's abundances and neighbour means move as a whole, A's stay; for counts
  or any abundances that are not closed;
* :class:`ClosedShift`: for shares, which sum to one in every location: B's share moves and the
  other populations fill what it leaves in their own proportions, so that the closure's own
  avoidance between abundant populations is in the null too (docs/subspot.md, "Shares are
  closed").

:func:`null_for` picks one from the abundances.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import scipy.sparse as sp

SHARE_TOLERANCE = 1e-3  # rows summing to 1 within this are shares (rows of zeros allowed)


def are_shares(abundances: np.ndarray, tolerance: float = SHARE_TOLERANCE) -> bool:
    """Whether every location's abundances with a positive total sum to 1 (within
    ``tolerance``): shares of cells, closed. Locations of all zeros are allowed."""
    totals = np.asarray(abundances, dtype=np.float64).sum(axis=1)
    occupied = totals > 0
    return bool(occupied.any() and np.all(np.abs(totals[occupied] - 1.0) <= tolerance))


def null_for(abundances: np.ndarray) -> ShiftNull:
    """The null that suits these abundances: :class:`ClosedShift` on shares, else
    :class:`PlainShift`."""
    return ClosedShift() if are_shares(abundances) else PlainShift()


@dataclass(frozen=True)
class ShiftFields:
    """What every shifted ratio needs of a sample: abundances (n, p), the neighbour weights,
    neighbour means (n, p) and which locations have a neighbour."""

    values: np.ndarray
    weights: sp.csr_matrix
    lag: np.ndarray
    has: np.ndarray

    @cached_property
    def weights_t(self) -> sp.csr_matrix:
        """The transposed weights, row-compressed (each location's share in its neighbours'
        means)."""
        return self.weights.T.tocsr()

    @cached_property
    def total(self) -> np.ndarray:
        return self.values.sum(axis=1)

    @cached_property
    def rest(self) -> np.ndarray:
        """(n, p): column b is what the populations other than b hold at each location."""
        return self.total[:, None] - self.values


class ShiftNull(Protocol):
    """How one toroidal shift turns into (p, p) null ratios: entry [a, b] (a ≤ b) has b moved.
    ``found`` marks the locations whose source (where the moved field comes from) lies on
    tissue, ``index`` is that source (meaningless elsewhere)."""

    @property
    def name(self) -> str:
        """What :class:`PairStatistics` records of the null."""
        ...

    def shifted(self, fields: ShiftFields, found: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The (p, p) ratios of one shift, symmetric."""
        ...


@dataclass(frozen=True)
class PlainShift:
    """B's abundances and neighbour means move as a whole; A's stay. For counts or any
    abundances that are not closed."""

    name: str = "toroidal"

    def shifted(self, fields: ShiftFields, found: np.ndarray, index: np.ndarray) -> np.ndarray:
        landed, v, g, moved, moved_lag = _moved_whole(fields, found, index)
        # The second population moves as a whole, its neighbour means with it: entry [a, b]
        # is the symmetrised ratio with b moved (both of its terms at the same shift, as in
        # the observed ratio; averaging [a, b] and [b, a] would mix two shifts and halve the
        # null's variance).
        cross = (v.T @ moved_lag + g.T @ moved) / 2.0 / landed.sum()
        # Both factors' means over the same landed locations: the ratio compares like with like.
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = cross / np.outer(v.mean(axis=0), moved.mean(axis=0))
        return np.triu(ratio) + np.triu(ratio, 1).T

    def diagonal(self, fields: ShiftFields, found: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Only the diagonal of :meth:`shifted`, each population against its moved self (with
        masks rather than gathers of the landed rows: cheaper when that is all one needs)."""
        has = fields.has
        landed = (found & has & has[index]).astype(np.float64)
        moved, moved_lag = fields.values[index], fields.lag[index]
        count = landed.sum()
        cross = landed @ (fields.values * moved_lag + fields.lag * moved) / 2.0 / count
        with np.errstate(invalid="ignore", divide="ignore"):
            return cross / ((landed @ fields.values) * (landed @ moved) / count**2)


def _moved_whole(
    fields: ShiftFields, found: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The plain shift's landed locations (on tissue, with neighbours there and at the source),
    the abundances and neighbour means there, and those moved from the sources."""
    has = fields.has
    landed = found & has
    landed[landed] &= has[index[landed]]
    values, lag, source = fields.values, fields.lag, index[landed]
    return landed, values[landed], lag[landed], values[source], lag[source]


@dataclass(frozen=True)
class ClosedShift:
    """B's share moves; at every location the other populations keep their proportions among
    themselves and fill what B leaves (each multiplied by ``(1 − b_moved_i) / (1 − b_i)``), so
    the composition still sums to one; the ratio of A and B, neighbour means over the landed
    neighbours included, is recomputed on these shares. The closure's own avoidance between
    abundant populations is thereby in the null too.

    A composition splits into B's share and the rest's composition among themselves, and for
    independent populations the two are (nearly) independent of each other, so moving B's
    share and keeping the rest's composition is the shift of one field, on shares. Locations of
    all zeros stay empty; where B held everything, the rest is given to no one. The diagonal (a
    population against a moved copy of itself, which one composition cannot hold) is the plain
    shift's."""

    name: str = "toroidal-closed"

    def shifted(self, fields: ShiftFields, found: np.ndarray, index: np.ndarray) -> np.ndarray:
        values, weights = fields.values, fields.weights
        reach = weights @ found.astype(np.float64)  # the weight of landed neighbours
        rows = found & (reach > 0)
        n = max(int(rows.sum()), 1)
        # Zero off the rows: a landed location without landed neighbours is nobody's neighbour.
        keep = rows & (fields.total > 0)
        moved = values[index] * keep[:, None]  # column b: b's moved share
        scale = np.divide(  # column b: what the other shares are multiplied by
            fields.total[:, None] - moved, fields.rest, out=np.zeros_like(values),
            where=keep[:, None] & (fields.rest > 1e-9),
        )  # fmt: skip
        per_row = np.divide(1.0, reach, out=np.zeros_like(reach), where=rows)
        # [a, b]: the mean over rows of a'_i · b̄'_i + b'_i · ā'_i, neighbour means over landed
        # neighbours; the second term folded onto the neighbours by the transposed weights, so
        # that every a comes out of one product, with the mean of a' beside it.
        lagged = per_row[:, None] * (weights @ moved)
        folded = fields.weights_t @ (per_row[:, None] * moved)
        sums = values.T @ np.hstack([scale * (lagged + folded), scale]) / n
        p = values.shape[1]
        cross, mean_a = sums[:, :p] / 2.0, sums[:, p:]  # mean_a[a, b]: mean of a' with b moved
        mean_b = moved.sum(axis=0) / n
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = cross / (mean_a * mean_b[None, :])
        np.fill_diagonal(ratio, PlainShift().diagonal(fields, found, index))
        return np.triu(ratio) + np.triu(ratio, 1).T
