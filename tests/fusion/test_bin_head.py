"""The weakly supervised sub-spot head on a planted case: bins recovered from spot aggregates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError
from tmescope.fusion.bin_head import (
    BinHeadConfig,
    WeakSample,
    fit_bin_heads,
    predict_shares,
    standardise_per_sample,
)

PER_DISC = 9


def planted(seed: int, n_spots: int = 150) -> tuple[WeakSample, np.ndarray]:
    """Bins of three pure types, their type readable from their features; only spot means
    (over discs of nine bins of random types) are given."""
    rng = np.random.default_rng(seed)
    n = n_spots * PER_DISC
    kind = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    x = centres[kind] + rng.normal(scale=0.5, size=(n, 4))
    truth = np.eye(3)[kind]
    discs = sp.csr_matrix(
        (np.full(n, 1.0 / PER_DISC), (np.repeat(np.arange(n_spots), PER_DISC), np.arange(n))),
        shape=(n_spots, n),
    )
    sample = WeakSample(x=standardise_per_sample(x), discs=discs, shares=discs @ truth)
    return sample, kind


def test_bins_are_recovered_from_their_spot_aggregates_alone() -> None:
    train, _ = planted(0)
    config = BinHeadConfig(hidden=16, dropout=0.0, steps=300, n_members=2, lr=1e-2)
    heads = fit_bin_heads([train], config=config, seed=1)
    test, kind = planted(1)
    mean, std = predict_shares(heads, test.x)
    assert mean.shape == std.shape == (len(kind), 3)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-5)
    assert (mean.argmax(axis=1) == kind).mean() > 0.9  # no bin was ever labelled
    assert (std >= 0).all() and std.max() > 0  # members differ


def test_spots_without_a_composition_are_left_out_and_bad_settings_refused() -> None:
    sample, _ = planted(0, n_spots=20)
    shares = sample.shares.copy()
    shares[:] = np.nan
    with pytest.raises(InvalidParameterError, match="no spot with a composition"):
        fit_bin_heads([WeakSample(sample.x, sample.discs, shares)])
    with pytest.raises(InvalidParameterError, match="steps"):
        BinHeadConfig(steps=0)
    with pytest.raises(InvalidParameterError, match="discs must be"):
        WeakSample(sample.x[:5], sample.discs, sample.shares)


def test_traces_below_the_floor_are_dropped_and_rows_stay_compositions() -> None:
    from tmescope.fusion.subspot_data import without_traces

    shares = np.array([[0.5, 0.47, 0.03], [0.04, 0.03, 0.02], [np.nan, np.nan, np.nan]])
    out = without_traces(shares, floor=0.05)
    np.testing.assert_allclose(out[0], [0.5 / 0.97, 0.47 / 0.97, 0.0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [1.0, 0.0, 0.0])  # all below: the largest stays
    assert np.isnan(out[2]).all()
