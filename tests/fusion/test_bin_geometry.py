"""Context rings and spot discs on hand-made bin lattices."""

from __future__ import annotations

import numpy as np

from tmescope.fusion.bin_geometry import (
    context_operators,
    disc_areas,
    disc_of_bins,
    spot_discs,
    with_context,
)


def test_a_ring_mean_counts_the_bins_that_exist_and_the_bin_itself() -> None:
    cells = np.array([(c, r) for r in range(3) for c in range(3)])  # a 3 × 3 block
    (ring,) = context_operators(cells, rings=(1.5,))
    features = np.arange(9, dtype=np.float32)[:, None]
    means = ring @ features
    assert means[4, 0] == features.mean()  # the centre sees all nine
    np.testing.assert_allclose(means[0, 0], features[[0, 1, 3, 4]].mean())  # a corner sees four
    both = with_context(features, [ring])
    assert both.shape == (9, 2) and (both[:, 0] == features[:, 0]).all()


def test_a_disc_averages_the_bins_within_the_spot_radius() -> None:
    grid = np.array([(x, y) for y in range(0, 320, 32) for x in range(0, 320, 32)], float) + 16
    spots = np.array([[160.0, 160.0], [1000.0, 1000.0]])  # the second lies beyond every bin
    discs = spot_discs(grid, spots, radius_px=55.0)
    inside = np.hypot(*(grid - spots[0]).T) <= 55.0
    assert discs.shape == (2, len(grid)) and discs[0].nnz == inside.sum() > 0
    np.testing.assert_allclose(discs[0].toarray().ravel()[inside], 1.0 / inside.sum())
    assert discs[1].nnz == 0
    owner = disc_of_bins(discs)
    assert (owner[inside] == 0).all() and (owner[~inside] == -1).all()


def test_a_disc_weighs_each_bin_by_the_share_of_its_square_it_covers() -> None:
    side, radius = 32.0, 55.0
    grid = np.array([(x, y) for y in range(0, 320, 32) for x in range(0, 320, 32)], float) + 16
    spots = np.array([[160.0, 160.0], [1000.0, 1000.0]])
    areas = disc_areas(grid, spots, radius_px=radius, bin_px=side)
    assert areas.shape == (2, len(grid)) and areas[1].nnz == 0
    row = areas[0].toarray().ravel()
    np.testing.assert_allclose(row.sum(), 1.0)
    # The covered areas add up to the disc's (to the grid's resolution), bins whole inside the
    # disc weigh alike and most, bins the edge cuts less, and no bin out of reach weighs.
    covered = row / row.max() * side**2
    np.testing.assert_allclose(covered.sum(), np.pi * radius**2, rtol=0.03)
    corners = np.abs(grid - spots[0])[:, :, None] + np.array([-1, 1]) * side / 2
    whole = np.hypot(corners[:, 0, :].max(1), corners[:, 1, :].max(1)) <= radius
    assert whole.sum() > 0 and np.allclose(row[whole], row.max())
    nearest = np.hypot(np.maximum(corners[:, 0, 0], 0), np.maximum(corners[:, 1, 0], 0))
    assert (row[nearest > radius] == 0).all()
    cut = (row > 0) & ~whole
    assert cut.sum() > 0 and (row[cut] < row.max()).all()
    # Bins whose centre lies outside but whose square the disc reaches count too.
    assert (row[np.hypot(*(grid - spots[0]).T) > radius] > 0).any()


def test_a_square_holds_the_points_of_its_half_open_extent() -> None:
    from tmescope.fusion.bin_geometry import owner_discs, square_owner

    # 16 px squares of a grid anchored at 0; 8 px points: four in each square, none on an edge.
    squares = np.array([(x, y) for y in range(2) for x in range(3)], float) * 16 + 8
    points = np.array([(x, y) for y in range(6) for x in range(8)], float) * 8 + 4
    owner = square_owner(points, squares, side_px=16.0)
    expected = np.where(points[:, 0] < 48, (points[:, 1] // 16) * 3 + points[:, 0] // 16, -1)
    expected[points[:, 1] >= 32] = -1
    np.testing.assert_array_equal(owner, expected.astype(np.int64))
    assert (np.bincount(owner[owner >= 0]) == 4).all()
    # A point on a shared edge or corner belongs to the square right of and below it only.
    edges = np.array([[16.0, 8.0], [16.0, 16.0], [0.0, 0.0], [48.0, 8.0]])
    np.testing.assert_array_equal(square_owner(edges, squares, side_px=16.0), [1, 4, 0, -1])
    discs = owner_discs(owner, len(squares))
    assert discs.shape == (6, len(points))
    np.testing.assert_allclose(discs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(disc_of_bins(discs), owner)
