"""Which genes the report maps: those asked for (checked against the panel), else the best.

With a model, the panel is the genes it predicts and the default its best cross-validated ones;
without, the genes measured in every reported sample and the default the most variable.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.errors import InvalidParameterError
from tmescope.viz.report.tables import top_targets

if TYPE_CHECKING:
    import scipy.sparse as sp

    from tmescope.store import CohortStore

MAX_GENES = 4  # genes mapped per sample unless asked otherwise

# sample id → (log1p expression (spots × genes, CSR), gene names)
Measured = Mapping[str, tuple["sp.csr_matrix", tuple[str, ...]]]


def measured_log1p(
    store: CohortStore, sample_ids: Sequence[str]
) -> dict[str, tuple[sp.csr_matrix, tuple[str, ...]]]:
    """log1p of counts per 10,000 per spot, rows in the store's spot order; samples with counts."""
    from tmescope.fusion.targets import normalise_log1p

    found = {}
    for sample_id in sample_ids:
        counts = store.read_counts(sample_id)
        if counts is not None:
            matrix = normalise_log1p(_csr(counts.X))
            found[sample_id] = (matrix, tuple(str(g) for g in counts.var_names))
    return found


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


def measured_genes(asked: Sequence[str] | None, measured: Measured) -> list[str]:
    """``asked`` (each measured in every sample), else the most variable of those genes."""
    panels = [set(names) for _, names in measured.values()]
    first = next(iter(measured.values()), (None, ()))[1]
    panel = [g for g in first if all(g in p for p in panels)]
    if asked:
        return match_genes(
            asked, panel, where="the genes measured in every sample reported",
            hint="pick genes from the samples' Space Ranger feature list",
        )  # fmt: skip
    return most_variable(measured, panel)


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


def most_variable(measured: Measured, panel: Sequence[str]) -> list[str]:
    """The :data:`MAX_GENES` genes of ``panel`` whose log expression varies most, pooled."""
    if not panel:
        return []
    sums, squares, n = np.zeros(len(panel)), np.zeros(len(panel)), 0
    for matrix, names in measured.values():
        column = {g: j for j, g in enumerate(names)}
        sub = matrix[:, [column[g] for g in panel]]
        sums += np.asarray(sub.sum(axis=0)).ravel()
        squares += np.asarray(sub.multiply(sub).sum(axis=0)).ravel()
        n += sub.shape[0]
    mean = sums / max(n, 1)
    variance = squares / max(n, 1) - mean**2
    order = sorted(range(len(panel)), key=lambda j: (-variance[j], panel[j]))
    return [panel[j] for j in order[:MAX_GENES] if variance[j] > 1e-12]


def _csr(matrix: Any) -> sp.csr_matrix:
    import scipy.sparse as sp

    return sp.csr_matrix(matrix, dtype=np.float32)
