"""Tests between groups of patients: exactness of the permutation p, Welch's t against scipy,
Benjamini–Hochberg, the bootstrap interval, calibration with no true difference, and the refusal
of designs that cannot be tested."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tmescope.analysis.patient_tests import (
    BinMoments,
    bh_qvalues,
    bootstrap_interval,
    check_groups,
    compare_two_groups,
    naive_bin_test,
    patient_means,
    permutation_p,
    welch,
)
from tmescope.errors import InvalidParameterError


def test_the_permutation_p_is_exact_on_a_tiny_planted_case() -> None:
    # 3 vs 3 fully separated: of the C(6, 3) = 20 relabellings, only the observed one and its
    # mirror are as extreme, so p = 2/20 exactly; 4 vs 4: 2/70.
    assert permutation_p(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])) == pytest.approx(0.1)
    assert permutation_p(np.arange(4.0), np.arange(4.0) + 10) == pytest.approx(2 / 70)
    # Brute force on a case with ties and overlap: count the relabellings by hand.
    a, b = np.array([0.3, 1.2, 0.3]), np.array([0.9, 2.0, 0.3, 1.1])
    pooled = np.r_[a, b]
    observed = abs(a.mean() - b.mean())
    import itertools

    extreme = 0
    for chosen in itertools.combinations(range(7), 3):
        rest = [i for i in range(7) if i not in chosen]
        extreme += abs(pooled[list(chosen)].mean() - pooled[rest].mean()) >= observed - 1e-12
    assert permutation_p(a, b) == pytest.approx(extreme / math.comb(7, 3))


def test_past_the_exact_limit_the_permutation_p_is_monte_carlo_and_seeded() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12) + 1.5  # C(24, 12) = 2.7 million
    p = permutation_p(a, b, seed=1)
    assert p == permutation_p(a, b, seed=1) and 1 / 10_000 <= p < 0.05


def test_welch_matches_scipy_and_reaches_small_p_with_four_patients_per_group() -> None:
    a, b = np.array([1.1, 1.3, 0.9, 1.2]), np.array([0.1, 0.3, -0.1, 0.2])
    t, df, p = welch(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)
    assert 3 <= df <= 6
    assert p < 1e-3 < 2 / 70  # what an exact permutation test could never give with 4 vs 4
    assert all(math.isnan(v) for v in welch(a[:1], b))


def test_bh_q_values_match_scipy_and_leave_untested_features_out() -> None:
    p = np.array([0.001, 0.04, 0.03, 0.5, np.nan, 0.2])
    q = bh_qvalues(p)
    assert np.isnan(q[4])
    finite = np.isfinite(p)
    assert np.allclose(q[finite], stats.false_discovery_control(p[finite]))


def test_the_bootstrap_interval_holds_the_effect_and_is_seeded() -> None:
    a, b = np.array([2.0, 2.5, 3.0, 2.2]), np.array([1.0, 0.8, 1.4, 1.1])
    low, high = bootstrap_interval(a, b, seed=3)
    assert low < a.mean() - b.mean() < high and low > 0
    assert (low, high) == bootstrap_interval(a, b, seed=3)


def test_welch_on_patients_is_calibrated_when_there_is_no_difference() -> None:
    # 6 vs 6 patients, no true difference, skewed values (log-normal, as log ratios need not be
    # normal): the share of p < 0.05 stays near 5 % over 2,000 cohorts.
    rng = np.random.default_rng(42)
    values = rng.lognormal(0.0, 0.6, (2000, 12))
    rejected = [welch(v[:6], v[6:])[2] < 0.05 for v in values]
    assert 0.025 <= np.mean(rejected) <= 0.07


def test_sections_of_one_patient_count_as_one_unit() -> None:
    patient_of = {"s1": "P1", "s2": "P1", "s3": "P2", "s4": "P3", "s5": "P4"}
    values = {"s1": 1.0, "s2": 3.0, "s3": 2.0, "s4": 0.0, "s5": float("nan")}
    assert patient_means(values, patient_of) == {"P1": 2.0, "P2": 2.0, "P3": 0.0}
    # A third copy of a section changes neither the units nor the test.
    more = {**values, "s1b": 1.0}
    assert len(patient_means(more, {**patient_of, "s1b": "P1"})) == 3
    one = compare_two_groups([2.0, 2.0], [0.0, 0.5])
    assert (one.n_a, one.n_b) == (2, 2)


def test_the_naive_bin_test_calls_a_tiny_difference_significant() -> None:
    # Two groups whose bins differ by 1 % of their spread: pooling 200,000 bins as if they
    # were independent tumours makes that "significant" — the pseudo-replication it shows.
    rng = np.random.default_rng(0)
    a = [BinMoments.of(rng.normal(1.00, 1.0, 100_000)) for _ in range(2)]
    b = [BinMoments.of(rng.normal(1.02, 1.0, 100_000)) for _ in range(2)]
    effect, p = naive_bin_test(a, b)
    assert effect == pytest.approx(-0.02, abs=0.01) and p < 1e-4


def test_designs_that_cannot_be_tested_are_refused_in_one_line() -> None:
    with pytest.raises(InvalidParameterError, match="one group"):
        check_groups({"P1": "A", "P2": "A"}, by="group", subject="patient")
    with pytest.raises(InvalidParameterError, match="single patient") as error:
        check_groups({"P1": "A", "P2": "A", "P3": "B"}, by="group", subject="patient")
    assert "\n" not in str(error.value) and "'B'" in str(error.value)
    assert check_groups({"P1": "B", "P2": "A", "P3": "B", "P4": "A"}, by="g", subject="p") == [
        "A", "B"]  # fmt: skip
