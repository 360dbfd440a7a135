"""Reconciliation: measured spot aggregates kept exactly, bins between spots nudged by them."""

from __future__ import annotations

import numpy as np

from tmescope.fusion.reconcile import fit_spread_strength, reconcile_discs, spread_corrections


def random_compositions(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    return rng.dirichlet(np.full(p, 0.7), size=n)


def test_disc_means_equal_the_measured_compositions_exactly() -> None:
    rng = np.random.default_rng(3)
    n_spots, per_disc, p = 40, 9, 5
    disc = np.r_[np.repeat(np.arange(n_spots), per_disc), np.full(30, -1)]  # 30 bins between
    shares = random_compositions(rng, disc.size, p)
    measured = random_compositions(rng, n_spots, p)
    measured[7] = np.nan  # a spot without an estimate
    out = reconcile_discs(shares, disc, measured)
    for s in range(n_spots):
        if s != 7:
            np.testing.assert_allclose(out[disc == s].mean(axis=0), measured[s], atol=1e-12)
    np.testing.assert_allclose(out[disc >= 0].sum(axis=1), 1.0, atol=1e-3)  # still compositions
    np.testing.assert_array_equal(out[disc == 7], shares[disc == 7])
    np.testing.assert_array_equal(out[disc == -1], shares[disc == -1])


def test_weighted_disc_means_equal_the_measured_compositions() -> None:
    # Bins holding more cells weigh more in what their spot measured: the weighted mean holds.
    rng = np.random.default_rng(4)
    n_spots, per_disc, p = 30, 9, 4
    disc = np.r_[np.repeat(np.arange(n_spots), per_disc), np.full(20, -1)]
    shares = random_compositions(rng, disc.size, p)
    measured = random_compositions(rng, n_spots, p)
    density = rng.lognormal(0.0, 1.0, disc.size)
    out = reconcile_discs(shares, disc, measured, weights=density)
    for s in range(n_spots):
        w = density[disc == s]
        np.testing.assert_allclose(w @ out[disc == s] / w.sum(), measured[s], atol=1e-12)
    plain = reconcile_discs(shares, disc, measured)
    assert not np.allclose(plain[disc >= 0], out[disc >= 0])
    # Equal weights are no weights.
    same = reconcile_discs(shares, disc, measured, weights=np.full(disc.size, 3.0))
    np.testing.assert_allclose(same, plain, atol=1e-12)


def test_the_image_decides_where_in_the_disc_a_measured_type_goes() -> None:
    # Two bins, the image sure that bin 0 is tumour and bin 1 is not: a 50/50 spot keeps that.
    shares = np.array([[0.9, 0.1], [0.2, 0.8]])
    out = reconcile_discs(shares, np.array([0, 0]), np.array([[0.5, 0.5]]))
    assert out[0, 0] > 0.8 and out[1, 1] > 0.8
    np.testing.assert_allclose(out.mean(axis=0), [0.5, 0.5], atol=1e-12)


def test_bins_between_spots_follow_nearby_corrections_and_fade_far_away() -> None:
    # A spot whose disc the image calls 20 % tumour while it measured 80 %.
    shares = np.tile([0.2, 0.8], (4, 1))
    xy = np.array([[0.0, 0.0], [10.0, 0.0], [60.0, 0.0], [5000.0, 0.0]])
    disc = np.array([0, 0, -1, -1])
    out = spread_corrections(
        shares, xy, disc, np.array([[0.8, 0.2]]), np.array([[5.0, 0.0]]), sigma_px=50.0
    )
    np.testing.assert_array_equal(out[:2], shares[:2])  # inside: reconcile_discs' business
    assert out[2, 0] > shares[2, 0] + 0.1  # near: pulled towards the spot's measurement
    np.testing.assert_allclose(out[3], shares[3], atol=1e-9)  # far: the image alone
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def lattice_sample(
    rng: np.random.Generator, smooth_error: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Spots on a 100 px lattice, one bin per disc at its centre; the image's disc means err
    from what the spots measured either by a smooth field over the tissue or by noise alone."""
    spot_xy = np.array([(x, y) for y in range(0, 1500, 100) for x in range(0, 1500, 100)], float)
    p = 3
    measured = random_compositions(rng, len(spot_xy), p)
    if smooth_error:  # the image misses type 0 on the left of the tissue, less to the right
        bias = np.exp(-2.0 * (1 - spot_xy[:, 0] / 1500))[:, None] * np.array([[0.2, 1, 1]])
        image = measured * bias
    else:  # it agrees up to noise of each spot's own
        image = measured * rng.lognormal(0.0, 0.3, measured.shape)
    image /= image.sum(axis=1, keepdims=True)
    return image, np.arange(len(spot_xy)), measured, spot_xy


def test_the_spots_choose_how_far_their_corrections_reach() -> None:
    rng = np.random.default_rng(5)
    image, disc, measured, spot_xy = lattice_sample(rng, smooth_error=True)
    assert fit_spread_strength(image, disc, measured, spot_xy, sigma_px=50.0) == 1.0
    image, disc, measured, spot_xy = lattice_sample(rng, smooth_error=False)
    assert fit_spread_strength(image, disc, measured, spot_xy, sigma_px=50.0) <= 0.25
    # Too few spots to tell: the correction in full. Strength 0 leaves the bins as they are.
    assert fit_spread_strength(image[:5], disc[:5], measured[:5], spot_xy[:5], sigma_px=50.0) == 1.0
    between = np.array([[50.0, 50.0]])
    shares = np.r_[image, [[0.2, 0.3, 0.5]]]
    owner = np.r_[disc, -1]
    xy = np.r_[spot_xy, between]
    none = spread_corrections(shares, xy, owner, measured, spot_xy, sigma_px=50.0, strength=0.0)
    np.testing.assert_array_equal(none, shares)
    full = spread_corrections(shares, xy, owner, measured, spot_xy, sigma_px=50.0)
    half = spread_corrections(shares, xy, owner, measured, spot_xy, sigma_px=50.0, strength=0.5)
    assert not np.allclose(full[-1], shares[-1]) and not np.allclose(half[-1], full[-1])
