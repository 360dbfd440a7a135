"""Which genes the report maps: those asked for (checked against the panel), else the best.

With a model, the panel is the genes it predicts and the default its best cross-validated ones;
without, the genes measured in every reported sample and the default the most variable, found
reading one sample at a time.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.errors import InvalidParameterError
from tmescope.viz.report.tables import top_targets

if TYPE_CHECKING:
    import scipy.sparse as sp

    from tmescope.store import CohortStore

MAX_GENES = 4  # genes mapped per sample unless asked otherwise


@dataclass
class MeasuredPanel:
    """The genes measured in every sample and their pooled log-expression moments, gathered one
    sample at a time (a cohort's count matrices are never held together)."""

    genes: list[str] = field(default_factory=list)  # in the first sample's order
    sums: dict[str, float] = field(default_factory=dict)
    squares: dict[str, float] = field(default_factory=dict)
    n_spots: int = 0
    n_samples: int = 0

    def add(self, matrix: sp.csr_matrix, names: Sequence[str]) -> None:
        """One sample's log1p expression (spots × ``names``)."""
        keep = set(names)
        self.genes = list(names) if not self.n_samples else [g for g in self.genes if g in keep]
        column_sums = np.asarray(matrix.sum(axis=0)).ravel().tolist()
        column_squares = np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel().tolist()
        for gene, total, square in zip(names, column_sums, column_squares, strict=True):
            self.sums[gene] = self.sums.get(gene, 0.0) + total
            self.squares[gene] = self.squares.get(gene, 0.0) + square
        self.n_spots += matrix.shape[0]
        self.n_samples += 1

    def most_variable(self, n: int = MAX_GENES) -> list[str]:
        """The ``n`` genes of the panel whose log expression varies most, pooled over spots."""
        spots = max(self.n_spots, 1)
        variance = {g: self.squares[g] / spots - (self.sums[g] / spots) ** 2 for g in self.genes}
        order = sorted(self.genes, key=lambda g: (-variance[g], g))
        return [g for g in order[:n] if variance[g] > 1e-12]


def measured_log1p(
    store: CohortStore, sample_id: str
) -> tuple[sp.csr_matrix, tuple[str, ...]] | None:
    """log1p of counts per 10,000 per spot (rows in the store's spot order) and the gene names;
    ``None`` for a sample without counts."""
    from tmescope.fusion.targets import normalise_log1p

    counts = store.read_counts(sample_id)
    if counts is None:
        return None
    return normalise_log1p(_csr(counts.X)), tuple(str(g) for g in counts.var_names)


def measured_panel(store: CohortStore, sample_ids: Sequence[str]) -> MeasuredPanel:
    """The panel of the samples with counts, read one sample at a time."""
    panel = MeasuredPanel()
    for sample_id in sample_ids:
        found = measured_log1p(store, sample_id)
        if found is not None:
            panel.add(*found)
    return panel


def predicted_genes(
    asked: Sequence[str] | None, panel: Sequence[str], *, cv: Mapping[str, Any], head: str,
    model_path: object,
) -> list[str]:  # fmt: skip
    """``asked`` (each predicted by the model), else its best genes by ``head``'s Pearson."""
    if asked:
        return match_genes(
            asked, panel, where=f"the genes the model in {model_path} predicts",
            hint="leave out --model for measured maps of any gene",
        )  # fmt: skip
    return top_targets(cv, panel, key="per_gene", model=head)[:MAX_GENES]


def measured_genes(asked: Sequence[str] | None, panel: MeasuredPanel) -> list[str]:
    """``asked`` (each measured in every sample), else the most variable of those genes."""
    if asked:
        return match_genes(
            asked, panel.genes, where="the genes measured in every sample reported",
            hint="pick genes from the samples' Space Ranger feature list",
        )  # fmt: skip
    return panel.most_variable()


def match_genes(asked: Sequence[str], panel: Sequence[str], *, where: str, hint: str) -> list[str]:
    """``asked`` spelled as in ``panel`` (case aside); an error naming any not in it."""
    by_upper = {g.upper(): g for g in panel}
    unknown = [g for g in asked if g.upper() not in by_upper]
    if unknown:
        close = difflib.get_close_matches(unknown[0].upper(), list(by_upper), n=3)
        suggestion = f"; did you mean {', '.join(by_upper[c] for c in close)}?" if close else ""
        listed = ", ".join(panel[:12]) + (", …" if len(panel) > 12 else "")
        raise InvalidParameterError(
            f"--genes {', '.join(unknown)}: not among {where} ({listed or 'none'}){suggestion} "
            f"({hint})"
        )
    return list(dict.fromkeys(by_upper[g.upper()] for g in asked))


def _csr(matrix: Any) -> sp.csr_matrix:
    import scipy.sparse as sp

    return sp.csr_matrix(matrix, dtype=np.float32)
