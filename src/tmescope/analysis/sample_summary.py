"""What a comparison between tumours needs of one section: a few numbers per pair and population.

From a map of abundances (16 µm bins, spots, or cells with one-hot types) at positions in µm:

* the **co-location ratio** of every pair of populations at ``radius_um``
  (:func:`tmescope.analysis.interfaces.colocation_ratios`), kept as its log (a ratio of 0 — no
  contact at all — counts as :data:`LOG_FLOOR`, so that it stays finite);
* the **mean share** of each population;
* the moments of each pair's per-location interface scores (for the naive test shown beside the
  real one, :func:`tmescope.analysis.patient_tests.naive_bin_test`);
* the section's **immune phenotype** (:mod:`tmescope.analysis.immune_phenotype`), when T cells
  and tumour cells are among the populations.

A summary is small (P × P numbers), so a cohort's summaries fit in memory whatever its size.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tmescope.analysis.immune_phenotype import PhenotypeCall, call_immune_phenotype
from tmescope.analysis.interfaces import DEFAULT_RADIUS_UM, colocation_ratios
from tmescope.analysis.patient_tests import BinMoments

log = logging.getLogger(__name__)

LOG_FLOOR = 0.01  # log co-location ratios are floored here: no contact at all is log(0.01)
T_CELL_NAMES = ("t_cell", "t_cells", "t cell", "t cells", "t", "cd8_t", "cd8 t cells", "cd8")
TUMOUR_NAMES = ("tumour", "tumor", "malignant", "cancer", "tumour_cell", "tumor_cell")


@dataclass(frozen=True, eq=False)
class SampleSummary:
    """One section's figures for the comparison; matrices are (P, P) over ``populations``."""

    sample_id: str
    populations: tuple[str, ...]
    n: int  # locations (bins, spots or cells)
    log_ratio: np.ndarray  # (P, P) log co-location ratios, NaN for a population too rare
    mean_share: np.ndarray  # (P,)
    moments: dict[tuple[int, int], BinMoments]  # pair (i < j) → its per-location scores
    phenotype: PhenotypeCall | None
    radius_um: float = DEFAULT_RADIUS_UM


def summarise_sample(
    sample_id: str,
    coords_um: np.ndarray,
    abundances: np.ndarray,
    populations: Sequence[str],
    *,
    radius_um: float = DEFAULT_RADIUS_UM,
    t_cell: str | None = None,
    tumour: str | None = None,
) -> SampleSummary:
    """Summarise one section (``abundances``: locations × populations, shares or counts).

    ``t_cell`` and ``tumour`` name the populations the immune phenotype looks at; by default
    they are recognised by name (``t_cell``, ``T cells``, ``CD8`` …; ``tumour``, ``tumor``,
    ``malignant`` …); without both, the phenotype is not called."""
    xy = np.asarray(coords_um, dtype=np.float64)
    values = np.asarray(abundances, dtype=np.float64)
    names = tuple(str(p) for p in populations)
    ratio, lag, has = colocation_ratios(xy, values, radius=radius_um)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(np.maximum(ratio, LOG_FLOOR))
    log_ratio[~np.isfinite(ratio)] = np.nan
    mean = values.mean(axis=0)
    moments: dict[tuple[int, int], BinMoments] = {}
    v, g = values[has], lag[has]
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if not np.isfinite(ratio[i, j]):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                score = (v[:, i] * g[:, j] + v[:, j] * g[:, i]) / 2.0 / (mean[i] * mean[j])
            moments[(i, j)] = BinMoments.of(score)
    t_index = _find(names, t_cell, T_CELL_NAMES, "T cells")
    tumour_index = _find(names, tumour, TUMOUR_NAMES, "tumour cells")
    call = None
    if t_index is not None and tumour_index is not None:
        shares = values / np.maximum(values.sum(axis=1, keepdims=True), 1e-12)
        call = call_immune_phenotype(xy, shares[:, t_index], shares[:, tumour_index])
    return SampleSummary(
        sample_id, names, len(xy), log_ratio, mean, moments, call, float(radius_um)
    )


def resolve_population(names: Sequence[str], given: str | None, known: Sequence[str]) -> int | None:
    """The index of population ``given``, or of the first name in ``known`` (case, spaces and
    punctuation aside); None when there is none."""
    if given is not None:
        return list(names).index(given) if given in names else None
    canon = {_canon(n): i for i, n in enumerate(names)}
    for name in known:
        if _canon(name) in canon:
            return canon[_canon(name)]
    return None


def _find(names: Sequence[str], given: str | None, known: Sequence[str], what: str) -> int | None:
    index = resolve_population(names, given, known)
    if index is None:
        log.info("no population of %s among %s: immune phenotype not called", what, list(names))
    return index


def _canon(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())
