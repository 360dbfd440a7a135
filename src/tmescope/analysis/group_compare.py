"""What differs between groups of tumours, with patients as the units.

Input: one :class:`~tmescope.analysis.sample_summary.SampleSummary` per section and each
section's metadata (its group in column ``by``, its patient in column ``subject``). For every
contrast of two groups (one when the column has two groups; every pair of groups otherwise):

* **pairs**: each pair of populations' log co-location ratio, averaged over a patient's sections,
  compared between the groups' patients (:mod:`tmescope.analysis.patient_tests`: Welch's t,
  the exact permutation p beside it, a bootstrap interval over patients; Benjamini–Hochberg q
  over the pairs of all contrasts), with the naive bin-level test beside it for contrast;
* **abundances**: each population's centred log-ratio of mean shares, the same way;
* **samples**: each section's group, patient and immune phenotype call.

The maps' own errors are not in these p-values: a patient's value is taken as measured. They
enter only as noise between patients, which the test sees (see docs/compare.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tmescope.analysis.patient_tests import (
    BinMoments,
    GroupTest,
    bh_qvalues,
    check_groups,
    compare_two_groups,
    naive_bin_test,
    patient_means,
)
from tmescope.analysis.sample_summary import SampleSummary
from tmescope.errors import InvalidParameterError

SHARE_FLOOR = 1e-3  # mean shares are floored here before their centred log-ratio
SIGNIFICANT_Q = 0.05
NAIVE_LABEL = (
    "naive: every bin of every section as an independent observation (pseudo-replication); "
    "shown for contrast, never used to decide"
)


@dataclass(frozen=True)
class GroupComparison:
    """The comparison's tables (rows are plain dicts, ready for JSON and CSV)."""

    by: str
    subject: str
    groups: tuple[str, ...]
    populations: tuple[str, ...]
    pairs: list[dict[str, Any]]  # tested pairs, smallest q first
    untested: list[dict[str, Any]]  # pairs too rare in a group's patients to test
    abundances: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    patient_values: dict[str, dict[str, Any]] = field(default_factory=dict)  # "a|b" → per patient
    radius_um: float = math.nan

    def significant(self, q: float = SIGNIFICANT_Q) -> list[dict[str, Any]]:
        return [p for p in self.pairs if p["q"] < q]

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "subject": self.subject,
            "groups": list(self.groups),
            "populations": list(self.populations),
            "radius_um": self.radius_um,
            "test": "Welch's t on patient-level mean log co-location ratios (sections averaged "
            "within a patient); q: Benjamini-Hochberg over pairs; p_perm: exact permutation of "
            "patients' group labels; interval: bootstrap over patients (95 %)",
            "naive_test": NAIVE_LABEL,
            "pairs": self.pairs,
            "untested": self.untested,
            "abundances": self.abundances,
            "samples": self.samples,
        }


def compare_groups(
    summaries: Sequence[SampleSummary],
    metadata: Mapping[str, Mapping[str, str]],
    *,
    by: str,
    subject: str = "patient",
    seed: int = 0,
) -> GroupComparison:
    """Compare the groups of column ``by`` with the patients of column ``subject`` as units
    (``subject="sample"``: each section is its own patient). ``metadata`` maps each summary's
    sample id to its columns."""
    if not summaries:
        raise InvalidParameterError("a comparison needs the summaries of some samples; got none")
    populations = summaries[0].populations
    if any(s.populations != populations for s in summaries):
        raise InvalidParameterError("every sample must have the same populations, in one order")
    if len({s.radius_um for s in summaries}) > 1:
        raise InvalidParameterError("every sample must be summarised at the same radius")
    design = check_design([s.sample_id for s in summaries], metadata, by=by, subject=subject)
    group_of, patient_of = design.group_of, design.patient_of
    patient_group, groups = design.patient_group, design.groups
    used = [s for s in summaries if s.sample_id in group_of]
    contrasts = list(itertools.combinations(groups, 2))
    pairs, untested, per_patient = _pair_rows(
        used, contrasts, group_of, patient_of, patient_group, seed
    )
    abundances = _abundance_rows(
        used, contrasts, group_of, patient_of, patient_group, seed
    )
    samples = [_sample_row(s, patient_of[s.sample_id], group_of[s.sample_id]) for s in used]
    return GroupComparison(
        by=by, subject=subject, groups=tuple(groups), populations=populations, pairs=pairs,
        untested=untested, abundances=abundances, samples=samples, patient_values=per_patient,
        radius_um=float(summaries[0].radius_um),
    )  # fmt: skip


@dataclass(frozen=True)
class Design:
    """Who is compared with whom: each sample's group and patient, each patient's group."""

    group_of: dict[str, str]  # sample → group (samples with an empty group left out)
    patient_of: dict[str, str]  # sample → patient
    patient_group: dict[str, str]  # patient → group
    groups: list[str]  # sorted


def check_design(
    samples: Sequence[str],
    metadata: Mapping[str, Mapping[str, str]],
    *,
    by: str,
    subject: str = "patient",
) -> Design:
    """The design of a comparison of ``samples`` by column ``by``, patients in ``subject``;
    refused in one line when a column is missing, a patient sits in two groups, there is one
    group, or a group has one patient. Cheap: check it before computing anything."""
    group_of, patient_of = _labels(samples, metadata, by=by, subject=subject)
    patient_group: dict[str, str] = {}
    for sample, patient in patient_of.items():
        if patient_group.setdefault(patient, group_of[sample]) != group_of[sample]:
            raise InvalidParameterError(
                f"{subject} {patient!r} has sections in two groups of --by {by} "
                f"({patient_group[patient]!r} and {group_of[sample]!r}): patients are the units, "
                "so each must sit in one group (paired designs, before/after in one patient, "
                "are not supported yet)"
            )
    groups = check_groups(patient_group, by=by, subject=subject)
    return Design(group_of, patient_of, patient_group, groups)


def _sample_row(summary: SampleSummary, patient: str, group: str) -> dict[str, Any]:
    """A section's row: its unit (``patient``, whatever the subject column is called), group,
    size, and its immune phenotype with the scores that decided it (``phenotype_*``)."""
    row: dict[str, Any] = {"sample": summary.sample_id, "patient": patient, "group": group,
                           "n": summary.n, "phenotype": None}  # fmt: skip
    if summary.phenotype is not None:
        for key, value in summary.phenotype.to_json().items():
            row["phenotype" if key == "phenotype" else f"phenotype_{key}"] = value
    return row


def _labels(
    samples: Sequence[str],
    metadata: Mapping[str, Mapping[str, str]],
    *,
    by: str,
    subject: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """Each sample's group and patient; samples with an empty group are left out."""
    columns = sorted({c for s in samples for c in metadata.get(s, {})})
    for name, flag in ((by, "--by"), (subject, "--subject")):
        if name == "sample" and flag == "--subject":
            continue
        lacking = [s for s in samples if name not in metadata.get(s, {})]
        if lacking:
            raise InvalidParameterError(
                f"{flag} {name}: no such column for sample(s) {', '.join(lacking[:5])}"
                f"{' …' if len(lacking) > 5 else ''}; the samples' columns are "
                f"{', '.join(columns) or 'none'} (give them with --samplesheet)"
                + ("; with one section per patient, --subject sample" if flag == "--subject"
                   else "")
            )  # fmt: skip
    group_of = {s: str(metadata[s][by]).strip() for s in samples}
    group_of = {k: v for k, v in group_of.items() if v}
    patient_of = {
        k: (k if subject == "sample" else str(metadata[k][subject]).strip() or k) for k in group_of
    }
    return group_of, patient_of


def _pair_rows(
    summaries: Sequence[SampleSummary],
    contrasts: Sequence[tuple[str, str]],
    group_of: Mapping[str, str],
    patient_of: Mapping[str, str],
    patient_group: Mapping[str, str],
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    names = summaries[0].populations
    rows, untested, per_patient = [], [], {}
    for i, j in itertools.combinations(range(len(names)), 2):
        values = {s.sample_id: float(s.log_ratio[i, j]) for s in summaries}
        means = patient_means(values, patient_of)
        per_patient[f"{names[i]}|{names[j]}"] = {
            "patients": {p: {"value": v, "group": patient_group[p]}
                         for p, v in means.items()},
            "sections": {k: {"value": v, "patient": patient_of[k], "group": group_of[k]}
                         for k, v in values.items() if np.isfinite(v)},
        }  # fmt: skip
        for g1, g2 in contrasts:
            a = [v for p, v in means.items() if patient_group[p] == g1]
            b = [v for p, v in means.items() if patient_group[p] == g2]
            base = {"a": names[i], "b": names[j], "groups": [g1, g2]}
            if len(a) < 2 or len(b) < 2:
                untested.append({**base, "why": f"fewer than two patients per group with both "
                                 f"populations common enough ({g1}: {len(a)}, {g2}: {len(b)})"})
                continue  # fmt: skip
            test = compare_two_groups(a, b, seed=seed)
            naive_effect, naive_p = naive_bin_test(
                _moments(summaries, (i, j), group_of, g1), _moments(summaries, (i, j), group_of, g2)
            )
            rows.append({**base, **_test_fields(test, g1, g2),
                         "mean_log_ratio": {g1: _num(test.mean_a), g2: _num(test.mean_b)},
                         "naive_effect": _num(naive_effect), "naive_p": _num(naive_p)})  # fmt: skip
    _add_q(rows)
    return sorted(rows, key=lambda r: (r["q"], r["p"])), untested, per_patient


def _moments(
    summaries: Sequence[SampleSummary],
    pair: tuple[int, int],
    group_of: Mapping[str, str],
    group: str,
) -> list[BinMoments]:
    """The per-bin moments of ``pair`` in every section of ``group`` (the naive test's bins)."""
    return [s.moments[pair] for s in summaries
            if pair in s.moments and group_of[s.sample_id] == group]  # fmt: skip


def _abundance_rows(
    summaries: Sequence[SampleSummary],
    contrasts: Sequence[tuple[str, str]],
    group_of: Mapping[str, str],
    patient_of: Mapping[str, str],
    patient_group: Mapping[str, str],
    seed: int,
) -> list[dict[str, Any]]:
    names = summaries[0].populations
    shares = np.stack([s.mean_share for s in summaries])  # (samples, P)
    shares = shares / np.maximum(shares.sum(axis=1, keepdims=True), 1e-12)
    logs = np.log(np.maximum(shares, SHARE_FLOOR))
    clr = logs - logs.mean(axis=1, keepdims=True)
    rows = []
    for k, name in enumerate(names):
        means = patient_means({s.sample_id: clr[n, k] for n, s in enumerate(summaries)}, patient_of)
        raw = patient_means({s.sample_id: shares[n, k] for n, s in enumerate(summaries)}, patient_of)
        for g1, g2 in contrasts:
            a = [v for p, v in means.items() if patient_group[p] == g1]
            b = [v for p, v in means.items() if patient_group[p] == g2]
            test = compare_two_groups(a, b, seed=seed)
            share = {g: _num(np.mean([v for p, v in raw.items()
                                      if patient_group[p] == g]))
                     for g in (g1, g2)}  # fmt: skip
            rows.append({"population": name, "groups": [g1, g2], **_test_fields(test, g1, g2),
                         "mean_share": share})  # fmt: skip
    _add_q(rows)
    return sorted(rows, key=lambda r: (r["q"], r["p"]))


def _test_fields(test: GroupTest, g1: str, g2: str) -> dict[str, Any]:
    higher = None if not np.isfinite(test.effect) or test.effect == 0 else (
        g1 if test.effect > 0 else g2)  # fmt: skip
    return {
        "effect": _num(test.effect), "low": _num(test.low), "high": _num(test.high),
        "t": _num(test.t), "df": _num(test.df), "p": _num(test.p), "p_perm": _num(test.p_perm),
        "higher_in": higher, "n_patients": {g1: test.n_a, g2: test.n_b},
    }  # fmt: skip


def _add_q(rows: list[dict[str, Any]]) -> None:
    """Benjamini–Hochberg q over the rows; a row whose p is undefined (no variation) gets p 1."""
    for row in rows:
        if row["p"] is None:
            row["p"] = 1.0
    for row, q in zip(rows, bh_qvalues([r["p"] for r in rows]), strict=True):
        row["q"] = float(f"{q:.6g}")


def _num(value: Any) -> float | None:
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None  # small p-values kept
