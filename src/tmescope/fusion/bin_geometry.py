"""Where sub-spot bins lie relative to each other and to the spots: context rings and spot discs.

Bins sit on a square lattice (their ``(column, row)`` cells in the store). A bin's *context* is
the mean feature over the bins of a ring of lattice distances around it, so a head sees the
tissue around a bin as well as the bin. A spot's *disc* holds the bins whose centre lies within
the spot's radius: the bins whose aggregate the spot measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

DEFAULT_RINGS = (1.5, 3.5)  # lattice radii of the context means: 3 × 3 and 7 × 7 neighbourhoods


def context_operators(
    cells: np.ndarray, rings: Sequence[float] = DEFAULT_RINGS
) -> list[sp.csr_matrix]:
    """Per ring radius ``r``, the ``(n, n)`` row-normalised mean over bins within ``r`` cells.

    ``cells`` are ``(n, 2)`` integer lattice positions; a bin counts itself. Missing lattice
    neighbours (glass, the tissue's edge) are left out of the mean, not taken as zeros.
    """
    points = np.asarray(cells, dtype=np.float64)
    tree = cKDTree(points)
    operators = []
    for radius in rings:
        pairs = tree.query_pairs(radius, output_type="ndarray")
        n = len(points)
        rows = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
        cols = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
        adjacency = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        degree = np.asarray(adjacency.sum(axis=1)).ravel()
        operators.append(sp.diags(1.0 / degree) @ adjacency)
    return [op.tocsr().astype(np.float32) for op in operators]


def with_context(features: np.ndarray, operators: Sequence[sp.csr_matrix]) -> np.ndarray:
    """``(n, k × (1 + len(operators)))`` float32: each bin's features, then its ring means."""
    x = np.asarray(features, dtype=np.float32)
    return np.hstack([x, *(op @ x for op in operators)]).astype(np.float32)


def spot_discs(bin_xy: np.ndarray, spot_xy: np.ndarray, *, radius_px: float) -> sp.csr_matrix:
    """``(n_spots, n_bins)`` mean-over-disc operator: row ``s`` averages the bins whose centre
    lies within ``radius_px`` of spot ``s``. A spot with no bin in its disc has an empty row."""
    tree = cKDTree(np.asarray(bin_xy, dtype=np.float64))
    members = tree.query_ball_point(np.asarray(spot_xy, dtype=np.float64), r=radius_px)
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    rows = np.repeat(np.arange(len(members)), sizes)
    cols = np.fromiter((b for m in members for b in m), dtype=np.int64, count=int(sizes.sum()))
    weights = np.repeat(1.0 / np.maximum(sizes, 1), sizes)
    return sp.csr_matrix((weights, (rows, cols)), shape=(len(members), len(bin_xy)))


def disc_of_bins(discs: sp.csr_matrix) -> np.ndarray:
    """``(n_bins,)`` int64: the spot whose disc holds each bin, -1 where none does (between
    spots). Discs of one Visium array never overlap (55 µm spots 100 µm apart)."""
    owner = np.full(discs.shape[1], -1, dtype=np.int64)
    coo = discs.tocoo()
    owner[coo.col] = coo.row
    return owner
