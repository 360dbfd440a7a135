"""Where sub-spot bins lie relative to each other and to the spots: context rings and spot discs.

Bins sit on a square lattice (their ``(column, row)`` cells in the store). A bin's *context* is
the mean feature over the bins of a ring of lattice distances around it, so a head sees the
tissue around a bin as well as the bin. A spot's *disc* holds the bins whose centre lies within
the spot's radius: the bins whose aggregate the spot measured. The spot measured the cells under
its disc, so for training a bin that the disc's edge cuts counts by the share of its square
inside the disc (:func:`disc_areas`), whether its centre is inside or not. A Visium HD bin is a
square, not a disc: it holds the bins whose centre lies in its square (:func:`square_owner`),
and a measured bin finer than the sub-spot bins lies in the one whose square holds its centre.
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


AREA_SAMPLES = 10  # points per side of a square's grid when measuring its area inside a disc


def disc_areas(
    bin_xy: np.ndarray, spot_xy: np.ndarray, *, radius_px: float, bin_px: float
) -> sp.csr_matrix:
    """``(n_spots, n_bins)`` weighted mean-over-disc operator: row ``s`` weighs every bin whose
    square (side ``bin_px``) the disc of spot ``s`` covers in part by the share of the square it
    covers (measured on a grid of :data:`AREA_SAMPLES` ² points), rows summing to one. A spot
    whose disc covers no bin has an empty row."""
    bin_xy = np.asarray(bin_xy, dtype=np.float64).reshape(-1, 2)
    spot_xy = np.asarray(spot_xy, dtype=np.float64).reshape(-1, 2)
    if not len(bin_xy) or not len(spot_xy):
        return sp.csr_matrix((len(spot_xy), len(bin_xy)))
    reach = radius_px + bin_px / np.sqrt(2.0)  # any square the disc touches has its centre here
    members = cKDTree(bin_xy).query_ball_point(spot_xy, r=reach)
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    rows = np.repeat(np.arange(len(members)), sizes)
    cols = np.fromiter((b for m in members for b in m), dtype=np.int64, count=int(sizes.sum()))
    steps = ((np.arange(AREA_SAMPLES) + 0.5) / AREA_SAMPLES - 0.5) * bin_px
    grid = np.stack(np.meshgrid(steps, steps), axis=-1).reshape(-1, 2)  # (k², 2) offsets
    area = np.empty(len(cols))
    for begin in range(0, len(cols), 16_384):  # (block, k², 2) points: ~26 MB at a time
        part = slice(begin, begin + 16_384)
        points = bin_xy[cols[part], None, :] + grid[None]
        inside = np.linalg.norm(points - spot_xy[rows[part], None, :], axis=2) <= radius_px
        area[part] = inside.mean(axis=1)
    keep = area > 0
    covered = sp.csr_matrix((area[keep], (rows[keep], cols[keep])), shape=(len(spot_xy), len(bin_xy)))
    totals = np.asarray(covered.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ covered)


def disc_of_bins(discs: sp.csr_matrix) -> np.ndarray:
    """``(n_bins,)`` int64: the spot whose disc holds each bin, -1 where none does (between
    spots). Discs of one Visium array never overlap (55 µm spots 100 µm apart)."""
    owner = np.full(discs.shape[1], -1, dtype=np.int64)
    coo = discs.tocoo()
    owner[coo.col] = coo.row
    return owner


def square_owner(points: np.ndarray, squares: np.ndarray, *, side_px: float) -> np.ndarray:
    """``(n_points,)`` int64: the square (centre ``squares[i]``, side ``side_px``, sides along
    the pixel axes) whose half-open extent ``[c - side/2, c + side/2)`` holds each point, -1
    where none does. Squares of one grid do not overlap, so a point has at most one."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    squares = np.asarray(squares, dtype=np.float64).reshape(-1, 2)
    owner = np.full(len(points), -1, dtype=np.int64)
    if not len(points) or not len(squares):
        return owner
    half = side_px / 2
    k = min(4, len(squares))  # a point on a shared edge or corner is as near to up to four
    distance, nearest = cKDTree(squares).query(points, k=k, p=np.inf)
    distance, nearest = distance.reshape(len(points), k), nearest.reshape(len(points), k)
    for j in reversed(range(k)):  # the nearest holding square wins: it is written last
        near = np.isfinite(distance[:, j]) & (distance[:, j] <= half)
        offset = points[near] - squares[nearest[near, j]]
        inside = np.all((offset >= -half) & (offset < half), axis=1)
        rows = np.flatnonzero(near)[inside]
        owner[rows] = nearest[rows, j]
    return owner


def owner_discs(owner: np.ndarray, n_spots: int) -> sp.csr_matrix:
    """``(n_spots, n_bins)`` mean-over-disc operator of bins whose spot is ``owner`` (-1: none),
    the inverse of :func:`disc_of_bins`."""
    owner = np.asarray(owner, dtype=np.int64)
    bins = np.flatnonzero(owner >= 0)
    sizes = np.bincount(owner[bins], minlength=n_spots)
    weights = 1.0 / sizes[owner[bins]]
    return sp.csr_matrix((weights, (owner[bins], bins)), shape=(n_spots, len(owner)))
