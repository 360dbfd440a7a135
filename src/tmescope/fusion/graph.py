"""Spot graphs in micrometres: Visium lattice rings, k nearest neighbours, spots → tiles.

Every builder returns a :class:`SpotGraph` of numpy arrays (no torch here): ``edge_index`` in the
PyG convention, row 0 the source and row 1 the target of each message, sorted by target then
source so that the same coordinates always give the same graph. The head turns it into tensors.

The strategy classes :class:`VisiumLattice` and :class:`KNearest` hold a builder's settings so
that callers pick a graph per platform (Visium spots, Visium HD bins) without a mode switch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from tmescope.errors import InvalidParameterError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SpotGraph:
    """Directed edges between ``n_nodes`` nodes, with their lengths in micrometres."""

    edge_index: np.ndarray  # (2, E) int64: row 0 source, row 1 target
    distance_um: np.ndarray  # (E,) float32
    n_nodes: int

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def degree(self) -> np.ndarray:
        """``(n_nodes,)`` int64: how many edges point at each node (its in-degree)."""
        return np.bincount(self.edge_index[1], minlength=self.n_nodes).astype(np.int64)

    def adjacency(self) -> sp.csr_matrix:
        """``(n_nodes, n_nodes)`` float32 CSR with ``A[target, source] = 1`` for every edge."""
        ones = np.ones(self.n_edges, dtype=np.float32)
        source, target = self.edge_index
        return sp.csr_matrix((ones, (target, source)), shape=(self.n_nodes, self.n_nodes))


class GraphBuilder(Protocol):
    """Anything that turns ``(n, 2)`` coordinates in µm into a :class:`SpotGraph`."""

    def build(self, coords_um: np.ndarray) -> SpotGraph: ...


@dataclass(frozen=True)
class VisiumLattice:
    """Rings of the hexagonal Visium lattice: see :func:`build_visium_graph`."""

    pitch_um: float = 100.0
    rings: int = 1
    tolerance: float = 0.25

    def build(self, coords_um: np.ndarray) -> SpotGraph:
        return build_visium_graph(
            coords_um, pitch_um=self.pitch_um, rings=self.rings, tolerance=self.tolerance
        )


@dataclass(frozen=True)
class KNearest:
    """Symmetric k nearest neighbours, for Visium HD bins and dense grids: see :func:`build_knn_graph`."""

    k: int = 6
    max_distance_um: float | None = None

    def build(self, coords_um: np.ndarray) -> SpotGraph:
        return build_knn_graph(coords_um, k=self.k, max_distance_um=self.max_distance_um)


def build_visium_graph(
    coords_um: np.ndarray, *, pitch_um: float = 100.0, rings: int = 1, tolerance: float = 0.25
) -> SpotGraph:
    """Join every spot to the spots within ``rings`` lattice rings of it (both directions).

    The radius is ``rings * pitch_um * (1 + tolerance)``: inside a full lattice a spot has 6
    neighbours with ``rings=1`` and 18 with ``rings=2``; border spots have fewer.
    """
    coords = _check_coords(coords_um, "coords_um")
    _check_positive(pitch_um, "pitch_um")
    _check_count(rings, "rings")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise InvalidParameterError(
            f"tolerance must be a finite fraction >= 0, found {tolerance!r}; 0.25 absorbs the usual jitter"
        )
    radius = rings * pitch_um * (1 + tolerance)
    # The nearest spots of the next ring lie at (rings + 1) * pitch * sqrt(3) / 2.
    next_ring = (rings + 1) * pitch_um * math.sqrt(3) / 2
    if radius >= next_ring:
        limit = next_ring / (rings * pitch_um) - 1
        raise InvalidParameterError(
            f"rings={rings} with tolerance={tolerance} reaches {radius:.0f} µm, past the nearest "
            f"spots of ring {rings + 1} at {next_ring:.0f} µm; use a tolerance below {limit:.3f}"
        )
    pairs = cKDTree(coords).query_pairs(radius, output_type="ndarray")  # (m, 2), i < j
    source = np.concatenate([pairs[:, 0], pairs[:, 1]])
    target = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return _assemble(coords, source, target)


def build_knn_graph(
    coords_um: np.ndarray, *, k: int = 6, max_distance_um: float | None = None
) -> SpotGraph:
    """Join every point to its ``k`` nearest others, in both directions (so degree >= k).

    Neighbours further than ``max_distance_um`` are left out, so isolated points may have fewer.
    With ``n <= k`` points every point joins all the others.
    """
    coords = _check_coords(coords_um, "coords_um")
    _check_count(k, "k")
    neighbour, owner = _nearest(
        coords, coords, k=k, max_distance_um=max_distance_um, skip_self=True
    )
    source = np.concatenate([neighbour, owner])
    target = np.concatenate([owner, neighbour])
    return _assemble(coords, source, target)


def build_bipartite_graph(
    source_um: np.ndarray,
    target_um: np.ndarray,
    *,
    k: int = 6,
    max_distance_um: float | None = None,
) -> SpotGraph:
    """Edges from the ``k`` nearest sources to each target (spots → tiles of a dense grid).

    Nodes are ``[sources, targets]``: target ``j`` is node ``len(source_um) + j``. Edges only go
    source → target, so targets learn from the spots around them and never the reverse.
    """
    sources = _check_coords(source_um, "source_um")
    targets = _check_coords(target_um, "target_um")
    _check_count(k, "k")
    nearest, owner = _nearest(
        sources, targets, k=k, max_distance_um=max_distance_um, skip_self=False
    )
    n_source = len(sources)
    points = np.concatenate([sources, targets])
    return _assemble(points, nearest, owner + n_source)


def neighbour_mean(
    values: np.ndarray, graph: SpotGraph, *, include_self: bool = True
) -> np.ndarray:
    """``(n_nodes, d)`` mean of ``values`` over each node's in-neighbours (and itself).

    Without ``include_self`` a node with no neighbours gets a row of NaN: it has no mean.
    """
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[0] != graph.n_nodes:
        raise InvalidParameterError(
            f"values must be (n_nodes, d) = ({graph.n_nodes}, d), found shape {array.shape}; "
            "pass one row per graph node"
        )
    weights = graph.adjacency()
    if include_self:
        weights = weights + sp.identity(graph.n_nodes, dtype=np.float32, format="csr")
    count = np.asarray(weights.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        scale = np.where(count > 0, 1.0 / count, np.nan)
    dtype = np.result_type(array.dtype, np.float32)
    summed = np.asarray(weights @ array.astype(dtype, copy=False))
    return (summed * scale[:, None]).astype(dtype, copy=False)


def _nearest(
    points: np.ndarray,
    queries: np.ndarray,
    *,
    k: int,
    max_distance_um: float | None,
    skip_self: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``(neighbour, query)`` index pairs: up to ``k`` nearest ``points`` of each query."""
    if max_distance_um is not None:
        _check_positive(max_distance_um, "max_distance_um")
    bound = np.inf if max_distance_um is None else max_distance_um
    # One extra in case the query itself comes back; never more than the tree holds.
    n_ask = min(k + int(skip_self), len(points))
    distance, index = cKDTree(points).query(queries, k=n_ask, distance_upper_bound=bound)
    index = index.reshape(len(queries), n_ask)
    owner = np.broadcast_to(np.arange(len(queries))[:, None], index.shape)
    valid = np.isfinite(distance.reshape(index.shape))  # misses come back as inf, index n
    if skip_self:
        valid &= index != owner
    # Duplicate points can push the query itself out of the answer: keep at most k per row.
    valid &= np.cumsum(valid, axis=1) <= k
    return index[valid].astype(np.int64), owner[valid].astype(np.int64)


def _assemble(points: np.ndarray, source: np.ndarray, target: np.ndarray) -> SpotGraph:
    """Deduplicate, drop self loops and sort edges by target then source."""
    n_nodes = len(points)
    source = source.astype(np.int64, copy=False)
    target = target.astype(np.int64, copy=False)
    keep = source != target
    # n_nodes ** 2 fits int64 for any graph that fits in memory.
    key = np.unique(target[keep] * n_nodes + source[keep])
    target, source = np.divmod(key, n_nodes)
    gap = points[source] - points[target]
    distance = np.hypot(gap[:, 0], gap[:, 1]).astype(np.float32)
    return SpotGraph(np.stack([source, target]), distance, n_nodes)


def _check_coords(coords: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(coords, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1:
        raise InvalidParameterError(
            f"{name} must be an (n, 2) array of x, y in µm with n >= 1, found shape {array.shape}"
        )
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise InvalidParameterError(
            f"{name} must be finite, found {bad} rows with NaN or inf; drop those points first"
        )
    return array


def _check_positive(value: float, name: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InvalidParameterError(f"{name} must be a finite number of µm > 0, found {value!r}")


def _check_count(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidParameterError(f"{name} must be an integer >= 1, found {value!r}")
