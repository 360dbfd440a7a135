"""Sub-spot bins: the plan over tissue, token pooling on hand-made token grids, the reduction."""

from __future__ import annotations

import numpy as np
import pytest

from tmescope.embed.subspot import (
    MAX_DIM,
    BinPlan,
    BinPooler,
    cover_centres,
    plan_bins,
    pool_weights,
    reduction_matrix,
    subspot_spec,
)
from tmescope.embed.tissue_mask import TissueMask
from tmescope.errors import InvalidParameterError


def token_grid(grid: int) -> np.ndarray:
    """``(grid, grid, 2)`` tokens whose features are their own (row, column)."""
    rows, cols = np.mgrid[0:grid, 0:grid]
    return np.stack([rows, cols], axis=-1).astype(np.float64)


def everywhere(width: int = 4000) -> TissueMask:
    return TissueMask.from_mask(np.ones((width, width), bool), scale=1.0)


def pooled(
    tokens: np.ndarray, offsets: np.ndarray, *, bin_px: float, patch_px: float
) -> np.ndarray:
    """Bins at ``offsets`` from one patch's centre, pooled from its ``tokens`` by the pooler."""
    plan = BinPlan(
        coords=np.asarray(offsets, np.float32) + 500.0,
        cells=np.zeros((len(offsets), 2), np.int32),
        owner=np.zeros(len(offsets), np.int64),
        bin_px=bin_px,
    )
    pooler = BinPooler(plan, np.array([[500.0, 500.0]]), patch_px=patch_px)
    return pooler.pool(slice(0, 1), tokens[None])


def test_a_bin_on_one_token_is_that_token() -> None:
    # A 112 px patch of 7 × 7 tokens of 16 px; bins of 16 px laid on the tokens exactly.
    grid, patch, size = 7, 112.0, 16.0
    centres = (np.arange(grid) + 0.5) * size - patch / 2  # token centres relative to the patch
    offsets = np.array([[centres[j], centres[i]] for i in range(grid) for j in range(grid)])
    np.testing.assert_allclose(
        pooled(token_grid(grid), offsets, bin_px=size, patch_px=patch),
        [[i, j] for i in range(grid) for j in range(grid)],
    )


def test_a_bin_across_tokens_is_their_area_weighted_mean() -> None:
    grid, patch = 4, 64.0  # tokens of 16 px
    # A 16 px bin centred on the corner of tokens (1, 1), (1, 2), (2, 1), (2, 2): a quarter each.
    tokens = token_grid(grid)
    np.testing.assert_allclose(
        pooled(tokens, np.array([[0.0, 0.0]]), bin_px=16.0, patch_px=patch), [[1.5, 1.5]]
    )
    # Shifted 4 px right: three quarters of its width over column 2.
    np.testing.assert_allclose(
        pooled(tokens, np.array([[4.0, 0.0]]), bin_px=16.0, patch_px=patch), [[1.5, 1.75]]
    )
    # A 32 px bin over the top-left quarter of the patch: the mean of four whole tokens.
    np.testing.assert_allclose(
        pooled(tokens, np.array([[-16.0, -16.0]]), bin_px=32.0, patch_px=patch), [[0.5, 0.5]]
    )
    # Half outside the patch: only the part inside counts.
    wx, _ = pool_weights(np.array([[-32.0, 24.0]]), bin_px=16.0, patch_px=patch, grid=grid)
    np.testing.assert_allclose(wx.sum(), 8.0)
    np.testing.assert_allclose(
        pooled(tokens, np.array([[-32.0, 24.0]]), bin_px=16.0, patch_px=patch), [[3.0, 0.0]]
    )


def test_bins_cover_the_tissue_under_and_between_patches_each_once() -> None:
    # Two overlapping 112 px patches side by side, tissue everywhere.
    centres = np.array([[200.0, 200.0], [300.0, 200.0]])
    plan = plan_bins(centres, patch_px=112.0, bin_px=16.0, tissue=everywhere())
    union_x = (144.0, 356.0)  # the two squares' union
    assert ((plan.coords[:, 0] > union_x[0]) & (plan.coords[:, 0] < union_x[1])).all()
    assert len({tuple(c) for c in plan.cells.tolist()}) == len(plan)  # no bin twice
    # Every bin lies on the lattice anchored at (0, 0) and belongs to the nearer patch.
    np.testing.assert_allclose((plan.coords - 8.0) % 16.0, 0.0)
    nearer = np.abs(plan.coords[:, 0] - 300.0) < np.abs(plan.coords[:, 0] - 200.0)
    np.testing.assert_array_equal(plan.owner, nearer.astype(int))
    assert (np.diff(plan.owner) >= 0).all()
    # Bins of row chunk c (one patch a chunk here) sit between their offsets.
    offsets = plan.chunk_offsets(n_rows=2, chunk_rows=1)
    assert offsets[0] == 0 and offsets[-1] == len(plan)
    assert (plan.owner[offsets[1] :] == 1).all() and (plan.owner[: offsets[1]] == 0).all()


def test_glass_has_no_bins() -> None:
    mask = np.zeros((1000, 1000), bool)
    mask[:, :250] = True  # tissue on the left only
    plan = plan_bins(
        np.array([[250.0, 250.0]]), patch_px=112.0, bin_px=16.0,
        tissue=TissueMask.from_mask(mask, scale=1.0),
    )  # fmt: skip
    assert len(plan) > 0 and (plan.coords[:, 0] < 250.0).all()


def test_cover_patches_give_every_tissue_bin_of_the_region_a_patch() -> None:
    # Tissue is an L: a band the spots cover, and an arm off to the right that no spot reaches.
    mask = np.zeros((1000, 1000), bool)
    mask[100:300, 100:900] = True  # the arm
    mask[100:900, 100:300] = True  # under the spots
    tissue = TissueMask.from_mask(mask, scale=1.0)
    spots = np.array([[x, y] for x in (150.0, 250.0) for y in range(150, 900, 100)])
    region = (0.0, 0.0, 1000.0, 1000.0)
    covers = cover_centres(spots, patch_px=112.0, bin_px=16.0, tissue=tissue, region=region)
    assert len(covers) and (covers[:, 0] > 250).all()  # only where the spots' patches end
    assert len(np.unique(covers, axis=0)) == len(covers)
    every = np.vstack([spots, covers])
    again = cover_centres(every, patch_px=112.0, bin_px=16.0, tissue=tissue, region=region)
    assert again.shape == (0, 2)  # nothing is left uncovered
    bins = plan_bins(every, patch_px=112.0, bin_px=16.0, tissue=tissue)
    # Every 16 px bin of the L with at least half its square on tissue, counted on the mask here.
    shares = mask[:992, :992].reshape(62, 16, 62, 16).mean(axis=(1, 3))
    assert len(bins) == int((shares >= 0.5).sum())
    # Outside the region nothing is covered, however much tissue lies there.
    corner = cover_centres(
        spots, patch_px=112.0, bin_px=16.0, tissue=tissue, region=(0, 0, 250, 250)
    )
    assert corner.shape == (0, 2)


def test_a_bin_finer_than_the_tokens_is_refused_naming_their_size() -> None:
    with pytest.raises(InvalidParameterError, match="finer than this encoder's tokens \\(16 µm"):
        subspot_spec(bin_um=8.0, patch_um=112.0, grid=7, token_dim=192)
    spec = subspot_spec(bin_um=16.0, patch_um=112.0, grid=7, token_dim=192)
    assert spec.dim == 192 and spec.reduction == "none" and reduction_matrix(spec) is None


def test_wide_tokens_are_reduced_by_a_fixed_orthonormal_projection() -> None:
    spec = subspot_spec(bin_um=16.0, patch_um=224.0, grid=14, token_dim=1024)
    assert spec.dim == MAX_DIM and spec.reduction == "random-orthogonal"
    q = reduction_matrix(spec)
    assert q is not None and q.shape == (1024, MAX_DIM)
    np.testing.assert_allclose(q.T @ q, np.eye(MAX_DIM), atol=1e-5)
    np.testing.assert_array_equal(q, reduction_matrix(spec))  # fixed: the store's fingerprint
