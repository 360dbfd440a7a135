"""Targets of one fold: everything learnt from data is learnt from its training samples only.

:func:`fit_targets` looks at the training samples' counts and fixes the fold's targets: the N
most variable genes (expression) and the TME-state scores (gene-set scores standardised with
training statistics, or cell-type proportions against a single-cell reference, which involves
no statistics of the spots at all). :meth:`TargetSpec.compute` then applies that fixed recipe
to any sample, training or test, so no information from a test sample reaches training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError, TrainingDataError
from tmescope.fusion.cohort import SpotTable
from tmescope.fusion.genesets import GeneSet, GeneStandardiser, score_gene_sets
from tmescope.fusion.reference import ReferenceProfiles, deconvolve_nnls
from tmescope.fusion.targets import (
    SampleMoments,
    normalise_log1p,
    pool_sample_moments,
    variable_genes,
)

TargetKind = Literal["expression", "states", "both"]
TARGET_KINDS: tuple[str, ...] = ("expression", "states", "both")


@dataclass(frozen=True)
class TargetSpec:
    """The fixed recipe of a fold's targets: which genes, which states, and their statistics."""

    kind: TargetKind
    genes: tuple[str, ...]  # expression targets (empty for ``states``)
    state_names: tuple[str, ...]  # TME states (empty for ``expression``)
    state_source: str  # "gene-sets" or "reference"
    gene_sets: tuple[GeneSet, ...] = ()
    standardiser: GeneStandardiser | None = None
    reference: ReferenceProfiles | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Column names of :meth:`compute`: genes first, then ``state:<name>``."""
        return self.genes + tuple(f"state:{s}" for s in self.state_names)

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    def compute(self, table: SpotTable) -> np.ndarray:
        """``(n_spots, len(names))`` float32: log1p expression of the genes, then state scores."""
        counts = _counts_of(table)
        parts: list[np.ndarray] = []
        log_expr = normalise_log1p(counts)
        if self.genes:
            columns = _columns(table, self.genes)
            parts.append(np.asarray(log_expr[:, columns].toarray(), dtype=np.float32))
        if self.state_names:
            parts.append(self._states(table, counts, log_expr))
        return np.concatenate(parts, axis=1)

    def _states(
        self, table: SpotTable, counts: sp.csr_matrix, log_expr: sp.csr_matrix
    ) -> np.ndarray:
        if self.reference is not None:
            proportions, _ = deconvolve_nnls(counts, table.genes, self.reference)
            # A spot with no counts on the reference genes has no proportions: call it uniform
            # rather than NaN so that a loss can be computed; such spots are rare and flagged.
            empty = ~np.isfinite(proportions).all(axis=1)
            proportions[empty] = 1.0 / proportions.shape[1]
            return proportions.astype(np.float32)
        scores, kept = score_gene_sets(
            log_expr, table.genes, self.gene_sets, standardiser=self.standardiser
        )
        if kept != self.state_names:
            missing = sorted(set(self.state_names) - set(kept))
            raise TrainingDataError(
                f"sample {table.sample_id!r} lacks the genes to score TME states "
                f"{', '.join(missing)} that the training samples could score; give samples "
                "measured on the same gene panel"
            )
        return scores

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description (the reference's profiles are saved beside it, not here)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "genes": list(self.genes),
            "state_names": list(self.state_names),
            "state_source": self.state_source,
            "gene_sets": [
                {
                    "name": s.name,
                    "label": s.label,
                    "genes": list(s.genes),
                    "description": s.description,
                }
                for s in self.gene_sets
            ],
        }
        if self.standardiser is not None:
            out["standardiser"] = {
                "genes": list(self.standardiser.genes),
                "mean": self.standardiser.mean.tolist(),
                "std": self.standardiser.std.tolist(),
            }
        return out

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, reference: ReferenceProfiles | None = None
    ) -> TargetSpec:
        standardiser = None
        if "standardiser" in data:
            raw = data["standardiser"]
            standardiser = GeneStandardiser(
                tuple(raw["genes"]), np.asarray(raw["mean"]), np.asarray(raw["std"])
            )
        return cls(
            kind=data["kind"],
            genes=tuple(data["genes"]),
            state_names=tuple(data["state_names"]),
            state_source=data["state_source"],
            gene_sets=tuple(
                GeneSet(s["name"], s["label"], tuple(s["genes"]), s.get("description", ""))
                for s in data["gene_sets"]
            ),
            standardiser=standardiser,
            reference=reference,
        )


def fit_targets(
    train: Sequence[SpotTable],
    *,
    kind: TargetKind = "both",
    n_genes: int = 50,
    gene_sets: Sequence[GeneSet] = (),
    reference: ReferenceProfiles | None = None,
) -> TargetSpec:
    """Fix a fold's targets from its training samples (``train``) only.

    Genes must be measured in every training sample; the N most variable of them (pooled
    variance of log1p-normalised expression over the training spots) are the expression
    targets. States come from ``reference`` when given, else from ``gene_sets`` standardised
    with the training spots' statistics.
    """
    if not train:
        raise TrainingDataError("a fold needs at least one training sample")
    moments = [SampleMoments.of(t.sample_id, _counts_of(t), t.genes) for t in train]
    return fit_targets_from_moments(
        moments, kind=kind, n_genes=n_genes, gene_sets=gene_sets, reference=reference
    )


def fit_targets_from_moments(
    train: Sequence[SampleMoments],
    *,
    kind: TargetKind = "both",
    n_genes: int = 50,
    gene_sets: Sequence[GeneSet] = (),
    reference: ReferenceProfiles | None = None,
) -> TargetSpec:
    """:func:`fit_targets` from each training sample's gene moments: all a fold's targets need
    of its training samples, so that their counts need not be held while a fold is fitted."""
    if kind not in TARGET_KINDS:
        raise InvalidParameterError(
            f"target must be one of {', '.join(TARGET_KINDS)}, got {kind!r}"
        )
    if not train:
        raise TrainingDataError("a fold needs at least one training sample")
    shared = _shared_genes(train)
    genes: tuple[str, ...] = ()
    pooled = pool_sample_moments(train, shared)
    if kind in ("expression", "both"):
        genes = variable_genes(pooled, shared, n=n_genes)
    if kind == "expression":
        return TargetSpec(kind, genes, (), "none")
    if reference is not None:
        return TargetSpec(kind, genes, reference.cell_types, "reference", reference=reference)
    if not gene_sets:
        raise InvalidParameterError("TME states need gene sets or a single-cell reference")
    standardiser = GeneStandardiser.from_moments(pooled, shared)
    # Which sets the panel can score depends on the genes alone: score no spot to learn it.
    nothing = sp.csr_matrix((0, len(shared)), dtype=np.float32)
    _, kept = score_gene_sets(nothing, shared, gene_sets, standardiser=standardiser)
    sets = tuple(s for s in gene_sets if s.name in kept)
    return TargetSpec(kind, genes, kept, "gene-sets", gene_sets=sets, standardiser=standardiser)


def check_genes(tables: Sequence[SpotTable], spec: TargetSpec) -> None:
    """A :class:`TrainingDataError` naming the samples that lack any of the spec's genes."""
    for table in tables:
        _columns(table, spec.genes)


def _shared_genes(tables: Sequence[SpotTable] | Sequence[SampleMoments]) -> tuple[str, ...]:
    first = tables[0].genes
    others = [set(t.genes) for t in tables[1:]]
    shared = tuple(g for g in dict.fromkeys(first) if all(g in o for o in others))
    if not shared:
        raise TrainingDataError(
            f"the training samples share no gene ({', '.join(t.sample_id for t in tables)}); "
            "were they measured with the same probe set and named the same way?"
        )
    return shared


def _columns(table: SpotTable, genes: Sequence[str]) -> list[int]:
    position = {g: i for i, g in enumerate(table.genes)}
    missing = [g for g in genes if g not in position]
    if missing:
        raise TrainingDataError(
            f"sample {table.sample_id!r} lacks {len(missing)} of the target genes "
            f"({', '.join(missing[:5])}{', …' if len(missing) > 5 else ''}); train on samples "
            "measured on the same gene panel, or fewer --genes"
        )
    return [position[g] for g in genes]


def _counts_of(table: SpotTable) -> sp.csr_matrix:
    if table.counts is None:
        raise TrainingDataError(f"sample {table.sample_id!r} was read without its counts")
    return table.counts
