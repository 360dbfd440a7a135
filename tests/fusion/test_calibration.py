"""The temperature fitted on a sample's spots: planted overconfidence is found and undone."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tmescope.fusion.calibration import TEMPERATURES, fit_temperature, tempered_shares


def _discs(n_spots: int, per_spot: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(n_spots), per_spot)
    cols = np.arange(n_spots * per_spot)
    return sp.csr_matrix((np.full(cols.size, 1.0 / per_spot), (rows, cols)))


@pytest.mark.parametrize("truth", [0.7, 1.0, 2.0])
def test_the_temperature_behind_the_spots_is_recovered(truth: float) -> None:
    """Members' logits are sharper (or softer) than the tissue: the spots measure the means of
    softmax(logits / truth), and the fit finds ``truth`` within a step of its grid."""
    rng = np.random.default_rng(0)
    discs = _discs(300, 12)
    # Bins of a spot share a spot-level tendency, so spot means are not all alike.
    spot_bias = np.repeat(rng.normal(0, 1.5, (300, 4)), 12, axis=0)
    logits = [spot_bias + rng.normal(0, 2.0, (3600, 4)) + rng.normal(0, 0.1, (3600, 4))
              for _ in range(3)]  # fmt: skip
    true_bins, _ = tempered_shares(logits, truth)
    measured = discs @ true_bins.astype(np.float64)
    fitted = fit_temperature(logits, discs, measured)
    step = TEMPERATURES[1] / TEMPERATURES[0]
    assert truth / step**1.5 <= fitted <= truth * step**1.5


def test_too_few_spots_keep_the_head_as_trained() -> None:
    rng = np.random.default_rng(1)
    logits = [rng.normal(size=(60, 3))]
    measured = np.full((5, 3), np.nan)
    measured[:3] = 1 / 3
    assert fit_temperature(logits, _discs(5, 12), measured) == 1.0


def test_tempered_shares_are_compositions_and_mix_with_temperature() -> None:
    logits = [np.array([[3.0, 0.0, -1.0]]), np.array([[2.0, 1.0, 0.0]])]
    sharp, spread = tempered_shares(logits, 0.5)
    soft, _ = tempered_shares(logits, 4.0)
    np.testing.assert_allclose(sharp.sum(axis=1), 1.0, rtol=1e-6)
    assert sharp[0, 0] > soft[0, 0] > 1 / 3 and (spread >= 0).all()
