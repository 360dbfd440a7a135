"""Where two populations meet, on continuous abundances, with a null that keeps spatial structure.

For populations A and B with abundances ``a`` and ``b`` at locations ``i`` (bins, spots or
cells), and ``ā_i``, ``b̄_i`` their means over the neighbours within ``radius`` of ``i`` (itself
left out):

* the **interface score** at ``i`` is ``(a_i·b̄_i + b_i·ā_i) / 2 / (mean a · mean b)``: how much
  A-next-to-B contact sits at ``i``, in units of what evenly spread populations would give
  (1 = as if mixed at random, 0 = no contact);
* the **co-location ratio** of the pair is its mean over the locations: the statistic the
  high-resolution benchmark scores against the cells.

Two smooth fields drawn independently of each other still overlap by chance over large
patches, so shuffling labels or values between locations (which destroys each field's own
autocorrelation) calls them interacting. The null here is the toroidal shift (Lotwick &
Silverman 1982): the second field is moved as a whole by a random vector, wrapping round the
sample's bounding box, and the ratio recomputed where the moved field lands on tissue. Each field
keeps its own spatial structure; only their alignment is random. Shifts shorter than
``min_shift`` are skipped: they would keep most of a true contact and only cost power.

Shares are closed: they sum to one at every location, so where one population is abundant the
others are not, and two dominant populations "avoid" each other even when their cells are
placed independently. Moving B's shares alone breaks that constraint and the null forgets it:
on independent fields made into shares of three populations nearly every pair comes out
significant. On shares the null is therefore :class:`ClosedShift`: B's share is moved as before,
the other populations at each location fill what it leaves in their own proportions, so that
the composition sums to one again, and the ratio is recomputed (neighbour means included) on
these shares. Counts and other abundances
that are not shares keep the plain shift, :class:`PlainShift`; :func:`null_for` picks one.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from tmescope.analysis.shift_nulls import (
    SHARE_TOLERANCE,
    ClosedShift,
    PlainShift,
    ShiftFields,
    ShiftNull,
    are_shares,
    null_for,
)
from tmescope.errors import InvalidParameterError

__all__ = [  # the nulls live in shift_nulls; named here too, where pair_statistics takes them
    "DEFAULT_RADIUS_UM", "MIN_MEAN", "SHARE_TOLERANCE", "ClosedShift", "CohortPairs",
    "PairStatistics", "PlainShift", "ShiftFields", "ShiftNull", "are_shares",
    "colocation_ratios", "interface_map", "neighbour_weights", "null_for", "pair_statistics",
    "pairs_of", "pool_pairs",
]  # fmt: skip

DEFAULT_RADIUS_UM = 30.0  # a few cell diameters: contact, not co-residence in a region
MIN_MEAN = 0.01  # populations rarer than this on average are left out of pair statistics


@dataclass(frozen=True)
class PairStatistics:
    """Co-location of every pair of populations in one sample, against the toroidal-shift null.

    Matrices are (p, p) and symmetric; entries of a population too rare (mean < 1 %) are NaN.
    ``pvalue`` is two-sided: (1 + #{|null − mean| ≥ |ratio − mean|}) / (n_shifts + 1).
    ``null`` names the null drawn: ``"toroidal"`` (:class:`PlainShift`) or
    ``"toroidal-closed"`` (:class:`ClosedShift`, on shares).
    """

    names: tuple[str, ...]
    ratio: np.ndarray
    null_mean: np.ndarray
    null_std: np.ndarray
    zscore: np.ndarray
    pvalue: np.ndarray
    n_shifts: int
    radius: float  # in the coordinates' units
    n: int
    null: str = "toroidal"

    def pair(self, a: str, b: str) -> dict[str, float]:
        """One pair's figures by population name."""
        i, j = self.names.index(a), self.names.index(b)
        return {
            "ratio": float(self.ratio[i, j]),
            "null_mean": float(self.null_mean[i, j]),
            "zscore": float(self.zscore[i, j]),
            "pvalue": float(self.pvalue[i, j]),
        }


def neighbour_weights(coords: np.ndarray, radius: float) -> sp.csr_matrix:
    """Row-standardised weights of each location's neighbours within ``radius`` (self excluded);
    a location without neighbours has an empty row."""
    from tmescope.analysis.crosscorr import row_standardise

    pairs = cKDTree(coords).query_pairs(radius, output_type="ndarray")
    n = len(coords)
    rows = np.r_[pairs[:, 0], pairs[:, 1]]
    cols = np.r_[pairs[:, 1], pairs[:, 0]]
    return row_standardise(sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)))


def interface_map(
    coords: np.ndarray, abundances: np.ndarray, pair: tuple[int, int], radius: float
) -> np.ndarray:
    """The interface score of populations ``pair`` (column indices) at every location."""
    values = _abundances(abundances, len(coords))
    a, b = pair
    lag = neighbour_weights(np.asarray(coords, float), radius) @ values[:, [a, b]]
    scale = max(values[:, a].mean() * values[:, b].mean(), 1e-12)
    return (values[:, a] * lag[:, 1] + values[:, b] * lag[:, 0]) / 2.0 / scale


def pair_statistics(
    coords: np.ndarray,
    abundances: np.ndarray,
    names: Sequence[str],
    *,
    radius: float,
    n_shifts: int = 199,
    min_shift: float | None = None,
    seed: int = 0,
    null: ShiftNull | None = None,
) -> PairStatistics:
    """Co-location ratios of all pairs and their toroidal-shift null (``min_shift`` defaults to
    twice ``radius``; ``null`` to :func:`null_for` the abundances: closed on shares, plain
    otherwise)."""
    xy = np.asarray(coords, dtype=np.float64)
    values = _abundances(abundances, len(xy))
    label = tuple(str(n) for n in names)
    if len(label) != values.shape[1]:
        raise InvalidParameterError(
            f"{values.shape[1]} abundance columns but {len(label)} population names; give one "
            "name per column"
        )
    if not 10 <= n_shifts <= 100_000:
        raise InvalidParameterError(f"n_shifts must be from 10 to 100000; found {n_shifts}")
    if radius <= 0:
        raise InvalidParameterError(f"radius must be > 0; found {radius}")
    weights = neighbour_weights(xy, radius)
    lag = weights @ values
    has = np.diff(weights.indptr) > 0  # locations with a neighbour
    observed = _ratios(values, lag, has)
    strategy = null_for(values) if null is None else null
    fields = ShiftFields(values, weights, lag, has)
    shifts = _shifts(xy, has, radius, n_shifts, min_shift, seed)
    drawn = np.stack([strategy.shifted(fields, found, index) for found, index in shifts])
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a rare population's column is all NaN
        mean = np.nanmean(drawn, axis=0)
        std = np.nanstd(drawn, axis=0)
        z = np.where(std > 0, (observed - mean) / std, np.nan)
        extreme = np.abs(drawn - mean) >= np.abs(observed - mean)[None] - 1e-12
    p = (1.0 + extreme.sum(axis=0)) / (n_shifts + 1.0)
    rare = values[has].mean(axis=0) < MIN_MEAN
    for matrix in (observed, mean, std, z, p):
        matrix[rare, :] = np.nan
        matrix[:, rare] = np.nan
    return PairStatistics(
        label, observed, mean, std, z, p, n_shifts, float(radius), len(xy), null=strategy.name
    )


def colocation_ratios(
    coords: np.ndarray, abundances: np.ndarray, *, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observed co-location ratio of every pair, without a null: (ratios (p, p), NaN for a
    population rarer than :data:`MIN_MEAN`; the neighbour means (n, p); which locations have a
    neighbour (n,)). What a comparison between samples needs of each."""
    xy = np.asarray(coords, dtype=np.float64)
    values = _abundances(abundances, len(xy))
    if radius <= 0:
        raise InvalidParameterError(f"radius must be > 0; found {radius}")
    weights = neighbour_weights(xy, radius)
    lag = weights @ values
    has = np.diff(weights.indptr) > 0
    ratio = _ratios(values, lag, has)
    rare = values[has].mean(axis=0) < MIN_MEAN if has.any() else np.ones(values.shape[1], bool)
    ratio[rare, :] = np.nan
    ratio[:, rare] = np.nan
    return ratio, lag, has


@dataclass(frozen=True)
class CohortPairs:
    """Pair statistics pooled over samples: mean and spread of log ratios, Stouffer z."""

    names: tuple[str, ...]
    mean_log_ratio: np.ndarray  # (p, p)
    std_log_ratio: np.ndarray
    stouffer_z: np.ndarray
    n_samples: np.ndarray  # samples in which both populations are common enough


def pool_pairs(samples: Sequence[PairStatistics]) -> CohortPairs:
    """Pool per-sample statistics (same populations in the same order)."""
    if not samples:
        raise InvalidParameterError("pool_pairs needs at least one sample's statistics")
    names = samples[0].names
    if any(s.names != names for s in samples):
        raise InvalidParameterError("every sample's statistics must name the same populations")
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pairs absent from every sample
        logs = np.log(np.stack([s.ratio for s in samples]))
        z = np.stack([s.zscore for s in samples])
        n = np.isfinite(z).sum(axis=0)
        return CohortPairs(
            names=names,
            mean_log_ratio=np.nanmean(logs, axis=0),
            std_log_ratio=np.nanstd(logs, axis=0),
            stouffer_z=np.where(n > 0, np.nansum(z, axis=0) / np.sqrt(np.maximum(n, 1)), np.nan),
            n_samples=n,
        )


def pairs_of(
    names: Sequence[str], wanted: Sequence[tuple[str, str]] | None
) -> list[tuple[int, int]]:
    """Column indices of the pairs asked for (every pair of two populations by default); an
    unknown name is an error that lists the known ones."""
    index = {n: i for i, n in enumerate(names)}
    if not wanted:
        return list(itertools.combinations(range(len(names)), 2))
    out = []
    for a, b in wanted:
        for name in (a, b):
            if name not in index:
                raise InvalidParameterError(
                    f"unknown population {name!r} in --pair {a},{b}; the populations are "
                    f"{', '.join(names)}"
                )
        out.append((index[a], index[b]))
    return out


def _ratios(values: np.ndarray, lag: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Symmetrised co-location ratio of every pair over the locations ``rows``."""
    v, g = values[rows], lag[rows]
    cross = v.T @ g / max(int(rows.sum()), 1)  # cross[a, b] = mean(a_i · b̄_i)
    mean = v.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cross + cross.T) / 2.0 / np.outer(mean, mean)


def _shifts(
    xy: np.ndarray,
    has: np.ndarray,
    radius: float,
    n_shifts: int,
    min_shift: float | None,
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Random toroidal shifts of the second factor: for each, which locations' sources lie on
    tissue and where (the nearest location within 0.75 spacings of the source)."""
    rng = np.random.default_rng(seed)
    low = xy.min(axis=0)
    span = np.maximum(xy.max(axis=0) - low, 1e-9)
    spacing = float(np.median(cKDTree(xy).query(xy, k=2)[0][:, 1]))
    span = span + spacing  # the torus closes one spacing past the last location
    tolerance = 0.75 * spacing
    tree = cKDTree(xy)
    shortest = 2.0 * radius if min_shift is None else float(min_shift)
    shortest = min(shortest, 0.25 * float(span.min()))  # small samples keep room to move
    made = 0
    while made < n_shifts:
        shift = rng.uniform(0.0, span)
        wrapped = np.minimum(shift, span - shift)  # the shift's length on the torus
        if np.hypot(*wrapped) < shortest:
            continue
        source = (xy - low - shift) % span + low  # where the moved field comes from
        distance, index = tree.query(source, distance_upper_bound=tolerance)
        found = np.isfinite(distance)
        index = np.where(found, index, 0)
        landed = found & has
        landed[landed] &= has[index[landed]]
        if landed.sum() < 10:
            continue
        made += 1
        yield found, index


def _abundances(abundances: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(abundances, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != n:
        raise InvalidParameterError(
            f"abundances must be (locations, populations) with {n} rows; found shape {values.shape}"
        )
    if not np.isfinite(values).all() or (values < 0).any():
        raise InvalidParameterError(
            "abundances must be finite and non-negative (shares or counts of cells); found "
            "NaN, inf or negative values"
        )
    return values
