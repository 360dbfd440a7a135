"""Tests between two groups of patients, each patient one value: the unit of replication.

Sections of one patient are averaged first (:func:`patient_means`): two sections of a tumour
are not two tumours. Then, for the difference of the groups' means:

* **Welch's t** (unequal variances): the test whose p decides (``p``, and Benjamini–Hochberg
  ``q`` over the features tested together). Its p-values can be small with few patients
  (4 vs 4 reaches 1e-4 for a clear difference), and it is calibrated when patient values are
  roughly normal: our benchmark and tests check it on data with no true difference;
* the **exact permutation** p (``p_perm``): every relabelling of the patients when there are
  at most :data:`MAX_EXACT` (else a seeded Monte Carlo draw), reported beside it. It assumes
  nothing of the values' distribution, but its smallest value is 2 / C(n, k): 2/70 ≈ 0.029 for
  4 vs 4, so it alone could never pass Benjamini–Hochberg over dozens of pairs;
* a **bootstrap interval** of the difference, resampling patients within each group.

:func:`naive_bin_test` is the test *not* to use, kept for contrast: it treats every bin of every
section as an independent observation (pseudo-replication), from per-sample moments.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tmescope.errors import InvalidParameterError

MAX_EXACT = 50_000  # relabellings enumerated exactly; past that, Monte Carlo
MONTE_CARLO = 9_999
N_BOOTSTRAP = 2_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class GroupTest:
    """One feature's difference between groups ``a`` and ``b`` (effect = mean a − mean b)."""

    effect: float
    low: float  # bootstrap interval of the effect
    high: float
    t: float
    df: float
    p: float  # Welch's t, two-sided
    p_perm: float  # exact (or Monte Carlo) permutation, two-sided
    n_a: int  # patients with a value
    n_b: int
    mean_a: float
    mean_b: float


def patient_means(
    values: Mapping[str, float], patient_of: Mapping[str, str]
) -> dict[str, float]:
    """Each patient's mean over its sections' finite values (a patient without any: left out)."""
    sums: dict[str, list[float]] = {}
    for sample, value in values.items():
        if np.isfinite(value):
            sums.setdefault(patient_of[sample], []).append(float(value))
    return {patient: float(np.mean(v)) for patient, v in sums.items()}


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Welch's t, its Welch–Satterthwaite degrees of freedom and two-sided p (NaN when either
    group has fewer than two values, or neither varies)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    diff = a.mean() - b.mean()
    if se2 <= 0:
        return (math.nan, math.nan, math.nan) if diff == 0 else (math.copysign(math.inf, diff),
                                                                 math.nan, 0.0)  # fmt: skip
    t = diff / math.sqrt(se2)
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else math.nan
    return float(t), float(df), float(2 * stats.t.sf(abs(t), df))


def permutation_p(a: np.ndarray, b: np.ndarray, *, seed: int = 0) -> float:
    """Two-sided p of the difference of means under relabelling of the patients: exact over
    every relabelling when there are at most :data:`MAX_EXACT`, else ``MONTE_CARLO`` seeded
    draws (the observed labelling counted once)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = np.r_[a, b]
    n, k = len(pooled), len(a)
    if k == 0 or k == n:
        return math.nan
    observed = abs(a.mean() - b.mean())
    total = pooled.sum()
    tolerance = 1e-12 * max(1.0, float(np.abs(pooled).max()))
    if math.comb(n, k) <= MAX_EXACT:
        chosen = np.array(list(itertools.combinations(range(n), k)))  # (C(n, k), k)
        sum_a = pooled[chosen].sum(axis=1)
        extreme = np.abs(sum_a / k - (total - sum_a) / (n - k)) >= observed - tolerance
        return float(extreme.mean())
    rng = np.random.default_rng(seed)
    draws = np.argsort(rng.random((MONTE_CARLO, n)), axis=1)[:, :k]
    sum_a = pooled[draws].sum(axis=1)
    extreme = np.abs(sum_a / k - (total - sum_a) / (n - k)) >= observed - tolerance
    return float((1 + extreme.sum()) / (MONTE_CARLO + 1))


def bootstrap_interval(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval (:data:`CONFIDENCE`) of mean a − mean b, patients resampled with
    replacement within each group."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1)
    db = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(da - db, [tail, 100 - tail])
    return float(low), float(high)


def compare_two_groups(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> GroupTest:
    """Welch's t, the permutation p and the bootstrap interval of one feature's patient values."""
    va, vb = np.asarray(a, float), np.asarray(b, float)
    t, df, p = welch(va, vb)
    low, high = bootstrap_interval(va, vb, seed=seed)
    mean_a = float(va.mean()) if len(va) else math.nan
    mean_b = float(vb.mean()) if len(vb) else math.nan
    return GroupTest(
        effect=mean_a - mean_b, low=low, high=high, t=t, df=df, p=p,
        p_perm=permutation_p(va, vb, seed=seed), n_a=len(va), n_b=len(vb),
        mean_a=mean_a, mean_b=mean_b,
    )  # fmt: skip


def bh_qvalues(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg q-values; NaN p-values (features not tested) stay NaN and do not count
    among the tests."""
    p = np.asarray(pvalues, float)
    q = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    if tested.size == 0:
        return q
    order = tested[np.argsort(p[tested], kind="stable")]
    ranked = p[order] * tested.size / np.arange(1, tested.size + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


@dataclass(frozen=True)
class BinMoments:
    """One sample's per-bin values of a feature as count, sum and sum of squares: enough to
    pool bins over sections without holding them."""

    n: int
    total: float
    squares: float

    @classmethod
    def of(cls, values: np.ndarray) -> BinMoments:
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        return cls(int(v.size), float(v.sum()), float((v * v).sum()))


def naive_bin_test(a: Sequence[BinMoments], b: Sequence[BinMoments]) -> tuple[float, float]:
    """The pseudo-replicated test, for contrast only: Welch's t between all bins of group a's
    sections and all bins of group b's, as if every bin were an independent tumour. Returns
    (difference of bin means, p). Never use it to decide: see the module docstring."""
    from scipy import stats

    def pooled(parts: Sequence[BinMoments]) -> tuple[int, float, float]:
        n = sum(m.n for m in parts)
        if n < 2:
            return n, math.nan, math.nan
        mean = sum(m.total for m in parts) / n
        var = max(sum(m.squares for m in parts) - n * mean * mean, 0.0) / (n - 1)
        return n, mean, var

    (na, ma, va), (nb, mb, vb) = pooled(a), pooled(b)
    if not (na >= 2 and nb >= 2) or va + vb <= 0:
        return ma - mb, math.nan
    se2 = va / na + vb / nb
    t = (ma - mb) / math.sqrt(se2)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    return float(ma - mb), float(2 * stats.t.sf(abs(t), df))


def check_groups(group_of: Mapping[str, str], *, by: str, subject: str) -> list[str]:
    """The groups (sorted), refusing a grouping with fewer than two groups or a group with fewer
    than two patients: patients are the units, and one patient is no replicate."""
    members: dict[str, int] = {}
    for group in group_of.values():
        members[group] = members.get(group, 0) + 1
    if len(members) < 2:
        found = next(iter(members), "nothing")
        raise InvalidParameterError(
            f"--by {by}: every {subject} is in one group ({found!r}); a comparison needs two or "
            f"more groups: choose another column, or give a sample sheet with --samplesheet"
        )
    thin = sorted(g for g, n in members.items() if n < 2)
    if thin:
        raise InvalidParameterError(
            f"--by {by}: group(s) {', '.join(map(repr, thin))} hold a single {subject}; patients "
            f"are the units of the comparison, so each group needs at least two (groups: "
            + ", ".join(f"{g} {n}" for g, n in sorted(members.items()))
            + f" {subject}s); merge groups or leave those samples out"
        )
    return sorted(members)
