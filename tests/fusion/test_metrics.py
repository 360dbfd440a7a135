"""Pearson per gene against scipy, NaN for constant genes without warnings, interval coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import norm, pearsonr

from tmescope.errors import InvalidParameterError
from tmescope.fusion.metrics import interval_coverage, mean_pearson, pearson_per_gene


def test_pearson_per_gene_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(200, 6)).astype(np.float32)
    pred = (truth * rng.uniform(-1, 1, 6) + rng.normal(size=(200, 6))).astype(np.float32)
    expected = [pearsonr(truth[:, j], pred[:, j]).statistic for j in range(6)]
    r = pearson_per_gene(truth, pred)
    assert r.dtype == np.float64 and r.shape == (6,)
    np.testing.assert_allclose(r, expected, rtol=1e-6, atol=1e-9)


def test_constant_gene_is_nan_without_warning() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(50, 3))
    pred = rng.normal(size=(50, 3))
    truth[:, 0] = 0.1  # centring 0.1s in floating point leaves residues: still constant
    pred[:, 2] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = pearson_per_gene(truth, pred)
    assert np.isnan(r[0]) and np.isnan(r[2])
    assert r[1] == pytest.approx(pearsonr(truth[:, 1], pred[:, 1]).statistic)


def test_perfect_correlation_stays_within_one() -> None:
    x = np.linspace(0, 1, 1000) ** 3
    r = pearson_per_gene(x, 3 * x + 2)
    assert r.shape == (1,) and -1.0 <= r[0] <= 1.0 and r[0] == pytest.approx(1.0)
    assert pearson_per_gene(x, -x)[0] == pytest.approx(-1.0)


def test_pearson_needs_matching_shapes() -> None:
    with pytest.raises(InvalidParameterError, match=r"same shape.*\(10, 2\).*\(10, 3\)"):
        pearson_per_gene(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(InvalidParameterError, match="3 dimensions"):
        pearson_per_gene(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_fewer_than_two_spots_give_nan() -> None:
    assert np.isnan(pearson_per_gene(np.ones((1, 4)), np.ones((1, 4)))).all()


def test_mean_pearson_ignores_nan_genes() -> None:
    assert mean_pearson(np.array([0.2, np.nan, 0.4])) == pytest.approx(0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(mean_pearson(np.array([np.nan, np.nan])))
        assert np.isnan(mean_pearson(np.array([])))


def test_interval_coverage_counts_values_inside() -> None:
    # z(0.9) = 1.645: 0 and 1 lie inside 0 ± 1.645, 2 and -3 do not
    y = np.array([0.0, 1.0, 2.0, -3.0])
    assert interval_coverage(y, np.zeros(4), np.ones(4), level=0.9) == pytest.approx(0.5)
    # a wider interval (99 %: z = 2.576) takes in 2 as well
    assert interval_coverage(y, np.zeros(4), np.ones(4), level=0.99) == pytest.approx(0.75)


def test_interval_coverage_is_level_for_calibrated_gaussians() -> None:
    rng = np.random.default_rng(2)
    mean = rng.normal(size=(20000, 3))
    std = rng.uniform(0.5, 2.0, size=(20000, 3))
    y = mean + std * rng.normal(size=mean.shape)
    for level in (0.5, 0.9):
        assert interval_coverage(y, mean, std, level=level) == pytest.approx(level, abs=0.01)
    # an over-confident model (std halved) covers less than promised
    half = interval_coverage(y, mean, std / 2, level=0.9)
    assert half == pytest.approx(2 * norm.cdf(norm.ppf(0.95) / 2) - 1, abs=0.01)


def test_interval_coverage_leaves_out_nan() -> None:
    y = np.array([0.0, np.nan, 5.0])
    assert interval_coverage(y, np.zeros(3), np.ones(3)) == pytest.approx(0.5)
    assert np.isnan(interval_coverage(np.array([np.nan]), np.zeros(1), np.ones(1)))


@pytest.mark.parametrize("level", [0.0, 1.0, 90.0, -0.1])
def test_interval_coverage_rejects_bad_level(level: float) -> None:
    with pytest.raises(InvalidParameterError, match="between 0 and 1"):
        interval_coverage(np.zeros(2), np.zeros(2), np.ones(2), level=level)


def test_interval_coverage_rejects_bad_std_and_shapes() -> None:
    with pytest.raises(InvalidParameterError, match="std must be >= 0"):
        interval_coverage(np.zeros(2), np.zeros(2), np.array([1.0, -1.0]))
    with pytest.raises(InvalidParameterError, match="one shape"):
        interval_coverage(np.zeros(2), np.zeros(3), np.ones(2))
