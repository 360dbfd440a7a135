"""Co-occurrence of categorical TME labels as a function of distance, per sample and pooled.

squidpy's co-occurrence counts, for every spot, the other spots within a distance ``d`` (a disk,
cumulative over ``d``, not an annulus) and compares the label mix around category ``i`` with
the mix around all spots. Samples are aligned on a shared category axis like
:mod:`tmescope.analysis.enrichment`: a category absent from a sample is NaN there, not zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tmescope.analysis.labels import labelled_spots
from tmescope.errors import InvalidParameterError

_LABEL_KEY = "label"
# 0, 50, …, 500 µm: from under one Visium pitch (100 µm) to a few spot diameters of context.
DEFAULT_EDGES_UM: tuple[float, ...] = tuple(float(d) for d in range(0, 501, 50))


@dataclass(frozen=True)
class CooccurrenceResult:
    """Co-occurrence ratios of one sample on a fixed category axis.

    ``ratio[i, j, r]`` is P(a spot within ``distances_um[r]`` of an ``i`` spot is ``j``) divided
    by P(a spot within ``distances_um[r]`` of any spot is ``j``): above 1, ``j`` gathers around
    ``i``. ``distances_um`` are the *upper* edges of the intervals given (``d``); each ratio
    counts every pair closer than or at ``d``, so values at large ``d`` include short ranges.
    Rows and columns of categories absent from the sample, or with no spot pair that close, are NaN.
    """

    categories: tuple[str, ...]
    distances_um: np.ndarray  # (d,) upper interval edges in µm
    ratio: np.ndarray  # (c, c, d)
    sample_id: str | None = None


def co_occurrence(
    coords_um: np.ndarray,
    labels: Sequence[str],
    *,
    distances_um: Sequence[float] | None = None,
    categories: Sequence[str] | None = None,
    sample_id: str | None = None,
) -> CooccurrenceResult:
    """Co-occurrence ratios of one sample (see :class:`CooccurrenceResult`) with squidpy.

    ``coords_um`` is ``(n, 2)`` in micrometres (squidpy works in the units of the coordinates).
    ``distances_um`` are increasing interval edges, by default 0, 50, …, 500 µm; the first is
    only a lower bound of the axis, ratios are reported at the others. ``categories`` fixes the
    category axis so that arrays of different samples align; default: this sample's sorted labels.
    Cost is O(n²) in time: fine for a Visium slide (≤ 5,000 spots).
    """
    edges = _check_edges(DEFAULT_EDGES_UM if distances_um is None else distances_um)
    spots = labelled_spots(
        coords_um, labels, categories=categories, sample_id=sample_id, what="co-occurrence needs"
    )
    coords, labels_arr, cats, present = spots.coords, spots.labels, spots.categories, spots.present
    occ = _squidpy_cooccurrence(coords, labels_arr, present, edges)  # (p, p, d)
    # squidpy writes 0 where a category has no neighbour within d; that is undefined, not depleted.
    has_pairs = _has_neighbours(coords, labels_arr, present, edges[1:])  # (p, d)
    occ[~has_pairs[:, None, :] | ~has_pairs[None, :, :]] = np.nan
    idx = spots.positions()
    ratio = np.full((len(cats), len(cats), len(edges) - 1), np.nan)
    ratio[np.ix_(idx, idx)] = occ
    return CooccurrenceResult(
        categories=cats, distances_um=edges[1:].copy(), ratio=ratio, sample_id=sample_id
    )


def pool_cooccurrence(results: Sequence[CooccurrenceResult]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread (``nanmean``, ``nanstd`` ddof 0) over samples, each ``(c, c, d)``.

    A pair undefined in every sample stays NaN in both.
    """
    if len(results) == 0:
        raise InvalidParameterError(
            "pool_cooccurrence needs at least one CooccurrenceResult; found none. "
            "Run co_occurrence per sample first."
        )
    first = results[0]
    for res in results[1:]:
        if res.categories != first.categories or not np.array_equal(
            res.distances_um, first.distances_um
        ):
            raise InvalidParameterError(
                f"all results must share categories and distances; found {first.categories} at "
                f"{first.distances_um.tolist()} µm and {res.categories} at "
                f"{res.distances_um.tolist()} µm (sample {res.sample_id!r}). "
                "Pass the same categories= and distances_um= to co_occurrence."
            )
    stack = np.stack([res.ratio for res in results])  # (k, c, c, d)
    defined = np.isfinite(stack)
    n = defined.sum(axis=0)
    s0 = np.where(defined, stack, 0.0)
    # By hand rather than np.nanmean: no RuntimeWarning for pairs that no sample defines.
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s0.sum(axis=0) / n, np.nan)
        sq_dev = np.where(defined, (s0 - mean) ** 2, 0.0)
        std = np.where(n > 0, np.sqrt(sq_dev.sum(axis=0) / n), np.nan)
    return mean, std


def _check_edges(distances_um: Sequence[float]) -> np.ndarray:
    edges = np.asarray(distances_um, dtype=np.float64).ravel()
    if (
        edges.size < 2
        or not np.all(np.isfinite(edges))
        or edges[0] < 0
        or np.any(np.diff(edges) <= 0)
    ):
        raise InvalidParameterError(
            "distances_um must be >= 2 finite, non-negative, strictly increasing edges in µm; "
            f"found {edges.tolist()}. Pass e.g. [0, 50, 100, 200, 400]."
        )
    return edges


def _has_neighbours(
    coords: np.ndarray, labels: np.ndarray, present: Sequence[str], radii: np.ndarray
) -> np.ndarray:
    """``(p, d)`` whether some spot of each category has another spot within each radius."""
    from scipy.spatial import cKDTree

    tree = cKDTree(coords)
    out = np.zeros((len(present), radii.size), dtype=bool)
    for k, cat in enumerate(present):
        sub = cKDTree(coords[labels == cat])
        # count_neighbors includes each spot paired with itself (distance 0): subtract those.
        counts = np.asarray(sub.count_neighbors(tree, radii), dtype=np.int64)
        out[k] = counts - sub.n > 0
    return out


def _squidpy_cooccurrence(
    coords: np.ndarray, labels: np.ndarray, present: Sequence[str], edges: np.ndarray
) -> np.ndarray:
    """squidpy on the present categories; returns ``(p, p, d)`` as ``ratio[i, j]`` (i centre)."""
    import anndata as ad
    import pandas as pd
    import squidpy as sq

    adata = ad.AnnData(
        obs=pd.DataFrame(
            {_LABEL_KEY: pd.Categorical(labels, categories=present)},
            index=[str(i) for i in range(len(labels))],
        )
    )
    adata.obsm["spatial"] = coords
    # squidpy 1.8 deprecates n_jobs/show_progress_bar (numba now), so they are not passed.
    result = sq.gr.co_occurrence(
        adata, cluster_key=_LABEL_KEY, spatial_key="spatial", interval=edges.copy(), copy=True
    )
    if result is None:  # pragma: no cover - copy=True always returns
        raise RuntimeError("squidpy.gr.co_occurrence returned None despite copy=True")
    occ = np.asarray(result[0], dtype=np.float64)
    # squidpy's occ[j, i, r] is P(j near i) / P(j): swap so that the centre category comes first.
    return np.ascontiguousarray(occ.transpose(1, 0, 2))
