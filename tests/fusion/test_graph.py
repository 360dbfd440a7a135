"""Spot graphs: Visium lattice rings, k nearest neighbours, spots → tiles, neighbour means."""

from __future__ import annotations

import numpy as np
import pytest

from tmescope.errors import InvalidParameterError
from tmescope.fusion.graph import (
    KNearest,
    SpotGraph,
    VisiumLattice,
    build_bipartite_graph,
    build_knn_graph,
    build_visium_graph,
    neighbour_mean,
)

PITCH = 100.0


def visium_lattice(n_rows: int, n_cols: int, *, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """Spot centres in µm: odd rows shifted half a pitch, rows sqrt(3)/2 pitch apart."""
    row, col = np.divmod(np.arange(n_rows * n_cols), n_cols)
    x = col * PITCH + (row % 2) * PITCH / 2
    y = row * PITCH * np.sqrt(3) / 2
    coords = np.column_stack([x, y])
    return coords + np.random.default_rng(seed).normal(0, jitter, coords.shape)


def interior(coords: np.ndarray, margin: float) -> np.ndarray:
    lo, hi = coords.min(axis=0) + margin, coords.max(axis=0) - margin
    return ((coords >= lo) & (coords <= hi)).all(axis=1)


def assert_well_formed(graph: SpotGraph, *, symmetric: bool) -> None:
    source, target = graph.edge_index
    assert graph.edge_index.dtype == np.int64 and graph.edge_index.shape == (2, graph.n_edges)
    assert graph.distance_um.dtype == np.float32 and graph.distance_um.shape == (graph.n_edges,)
    assert not np.any(source == target)
    order = np.lexsort((source, target))
    np.testing.assert_array_equal(order, np.arange(graph.n_edges))
    assert len({(s, t) for s, t in zip(source, target, strict=True)}) == graph.n_edges
    if symmetric:
        forward = set(zip(source.tolist(), target.tolist(), strict=True))
        assert forward == {(t, s) for s, t in forward}


def test_visium_graph_has_six_neighbours_inside_and_fewer_on_the_border() -> None:
    coords = visium_lattice(12, 14, jitter=2.0)
    graph = build_visium_graph(coords)
    assert_well_formed(graph, symmetric=True)
    inside = interior(coords, 1.5 * PITCH)
    assert inside.sum() > 30
    assert (graph.degree[inside] == 6).all()
    assert graph.degree.min() in (2, 3) and (graph.degree[~inside] < 6).any()
    np.testing.assert_allclose(graph.distance_um, PITCH, atol=15.0)


def test_visium_graph_second_ring_has_eighteen_neighbours() -> None:
    coords = visium_lattice(14, 14)
    graph = build_visium_graph(coords, rings=2)
    assert_well_formed(graph, symmetric=True)
    inside = interior(coords, 2.5 * PITCH)
    assert inside.sum() > 30
    assert (graph.degree[inside] == 18).all()
    assert graph.distance_um.max() == pytest.approx(200.0, abs=1e-3)


def test_visium_graph_distances_match_coordinates() -> None:
    coords = visium_lattice(5, 5, jitter=5.0, seed=3)
    graph = build_visium_graph(coords)
    source, target = graph.edge_index
    expected = np.linalg.norm(coords[source] - coords[target], axis=1)
    np.testing.assert_allclose(graph.distance_um, expected, rtol=1e-5)


def test_visium_graph_is_deterministic_under_permutation() -> None:
    coords = visium_lattice(6, 7, jitter=1.0)
    perm = np.random.default_rng(1).permutation(len(coords))
    graph = build_visium_graph(coords)
    shuffled = build_visium_graph(coords[perm])
    # Map the shuffled graph back to the original node numbers: the edge sets must agree.
    back = perm[shuffled.edge_index]
    assert set(map(tuple, back.T.tolist())) == set(map(tuple, graph.edge_index.T.tolist()))
    again = build_visium_graph(coords)
    np.testing.assert_array_equal(again.edge_index, graph.edge_index)


def test_visium_graph_refuses_a_radius_that_reaches_the_next_ring() -> None:
    coords = visium_lattice(3, 3)
    with pytest.raises(InvalidParameterError, match="tolerance below"):
        build_visium_graph(coords, rings=3, tolerance=0.25)
    assert build_visium_graph(coords, rings=3, tolerance=0.1).n_nodes == 9


@pytest.mark.parametrize(
    "coords",
    [np.zeros((0, 2)), np.zeros((4, 3)), np.array([[0.0, 1.0], [np.nan, 2.0]]), np.zeros(4)],
)
def test_builders_reject_bad_coordinates(coords: np.ndarray) -> None:
    with pytest.raises(InvalidParameterError, match="coords_um"):
        build_visium_graph(coords)
    with pytest.raises(InvalidParameterError, match="coords_um"):
        build_knn_graph(coords)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_knn_rejects_bad_k(k: int) -> None:
    with pytest.raises(InvalidParameterError, match="k must be an integer"):
        build_knn_graph(np.zeros((3, 2)), k=k)


def test_knn_graph_is_symmetric_with_degree_at_least_k() -> None:
    coords = np.random.default_rng(0).uniform(0, 500, (120, 2))
    graph = build_knn_graph(coords, k=5)
    assert_well_formed(graph, symmetric=True)
    assert (graph.degree >= 5).all()
    # Every point's 5 nearest others are among its neighbours.
    dist = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1)[:, :5]
    edges = set(zip(graph.edge_index[0].tolist(), graph.edge_index[1].tolist(), strict=True))
    assert all((j, i) in edges for i in range(120) for j in nearest[i])


def test_knn_graph_respects_max_distance_and_small_inputs() -> None:
    coords = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [1000.0, 0.0]])
    graph = build_knn_graph(coords, k=2, max_distance_um=50.0)
    assert graph.degree.tolist() == [2, 2, 2, 0]
    assert graph.distance_um.max() <= 50.0
    assert build_knn_graph(coords[:1], k=3).n_edges == 0
    assert (build_knn_graph(coords, k=10).degree == 3).all()


def test_knn_graph_handles_duplicate_points() -> None:
    coords = np.array([[0.0, 0.0]] * 4 + [[5.0, 0.0]])
    graph = build_knn_graph(coords, k=2)
    assert_well_formed(graph, symmetric=True)
    assert (graph.degree >= 2).all()


def test_bipartite_edges_go_from_sources_to_targets_only() -> None:
    spots = visium_lattice(6, 6)
    tiles = np.random.default_rng(2).uniform(0, 500, (40, 2))
    graph = build_bipartite_graph(spots, tiles, k=3)
    assert_well_formed(graph, symmetric=False)
    n_spots = len(spots)
    source, target = graph.edge_index
    assert graph.n_nodes == n_spots + len(tiles)
    assert (source < n_spots).all() and (target >= n_spots).all()
    assert (graph.degree[n_spots:] == 3).all() and (graph.degree[:n_spots] == 0).all()
    # Each tile's sources are its 3 nearest spots.
    dist = np.linalg.norm(tiles[:, None] - spots[None], axis=2)
    for j in (0, 17, 39):
        mine = np.sort(source[target == n_spots + j])
        np.testing.assert_array_equal(mine, np.sort(np.argsort(dist[j])[:3]))
        np.testing.assert_allclose(
            np.sort(graph.distance_um[target == n_spots + j]), np.sort(dist[j])[:3], rtol=1e-5
        )


def test_bipartite_max_distance_leaves_far_tiles_alone() -> None:
    spots = np.array([[0.0, 0.0], [100.0, 0.0]])
    tiles = np.array([[50.0, 0.0], [5000.0, 0.0]])
    graph = build_bipartite_graph(spots, tiles, k=6, max_distance_um=200.0)
    assert graph.degree.tolist() == [0, 0, 2, 0]
    with pytest.raises(InvalidParameterError, match="max_distance_um"):
        build_bipartite_graph(spots, tiles, max_distance_um=-1.0)


def test_strategies_build_the_same_graphs_as_the_functions() -> None:
    coords = visium_lattice(5, 5)
    a = VisiumLattice(rings=2).build(coords)
    b = build_visium_graph(coords, rings=2)
    np.testing.assert_array_equal(a.edge_index, b.edge_index)
    c = KNearest(k=4).build(coords)
    np.testing.assert_array_equal(c.edge_index, build_knn_graph(coords, k=4).edge_index)


@pytest.mark.parametrize("include_self", [True, False])
def test_neighbour_mean_matches_a_loop(include_self: bool) -> None:
    rng = np.random.default_rng(4)
    coords = rng.uniform(0, 300, (30, 2))
    coords[-1] = [5000.0, 5000.0]  # isolated under the distance cap
    graph = build_knn_graph(coords, k=3, max_distance_um=150.0)
    values = rng.normal(size=(30, 4))
    result = neighbour_mean(values, graph, include_self=include_self)
    source, target = graph.edge_index
    for i in range(30):
        rows = list(source[target == i]) + ([i] if include_self else [])
        expected = values[rows].mean(axis=0) if rows else np.full(4, np.nan)
        np.testing.assert_allclose(result[i], expected, rtol=1e-6)
    assert result.dtype == np.float64


def test_neighbour_mean_rejects_misshapen_values() -> None:
    graph = build_knn_graph(np.random.default_rng(0).uniform(size=(5, 2)), k=2)
    with pytest.raises(InvalidParameterError, match=r"\(n_nodes, d\)"):
        neighbour_mean(np.zeros((4, 2)), graph)
