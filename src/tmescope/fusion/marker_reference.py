"""Populations from marker genes: a pseudo-reference for the sub-spot model when no single-cell
reference is at hand.

Each population gene set (``kind = "population"``, :mod:`tmescope.fusion.genesets`) becomes a
profile spread evenly over its markers measured in every training sample. Deconvolving a spot's
counts on the union of markers against these profiles
(:func:`tmescope.fusion.reference.deconvolve_poisson`, whose per-gene sensitivity learns from
the sample's own counts how strongly each marker is expressed) splits the spot's marker signal
between the populations. The result is a share of *marker signal*, not a share of cells: no
cells stand behind the profiles, so there are no counts per cell to convert with, and a
population whose markers are RNA-rich weighs more than its cells do. Sets that only mark a state
(proliferation, hypoxia) are left out: a state is not a population a bin could be made of.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from tmescope.errors import GeneSetError, TmescopeWarning
from tmescope.fusion.genesets import GeneSet
from tmescope.fusion.reference import ReferenceProfiles

MIN_MARKERS = 2  # a population needs this many of its markers measured in every sample
PROFILE_TOTAL = 1e4  # each profile sums to this, like a reference cell's normalised counts


def marker_reference(sets: Sequence[GeneSet], panels: Sequence[Sequence[str]]) -> ReferenceProfiles:
    """A pseudo-reference of the population sets of ``sets`` on the markers every panel of
    ``panels`` (the training samples' genes) measures.

    Populations with fewer than :data:`MIN_MARKERS` measured markers are left out with a
    warning; a :class:`GeneSetError` when fewer than two populations remain.
    """
    measured = set.intersection(*({g.upper() for g in panel} for panel in panels))
    populations = [s for s in sets if s.kind == "population"]
    markers = {
        s.name: [g for g in dict.fromkeys(g.upper() for g in s.genes) if g in measured]
        for s in populations
    }
    kept = [s.name for s in populations if len(markers[s.name]) >= MIN_MARKERS]
    dropped = [f"{s.name} ({len(markers[s.name])})" for s in populations if s.name not in kept]
    if dropped:
        warnings.warn(
            f"populations left out of the sub-spot maps, fewer than {MIN_MARKERS} markers "
            f"measured in every sample: {', '.join(dropped)}",
            TmescopeWarning,
            stacklevel=2,
        )
    if len(kept) < 2:
        raise GeneSetError(
            f"sub-spot populations from markers need at least 2 population gene sets with "
            f">= {MIN_MARKERS} markers measured in every training sample, found "
            f"{', '.join(kept) or 'none'}; pass --gene-sets with sets that fit this panel, or "
            "--reference SC.h5ad"
        )
    genes = list(dict.fromkeys(g for name in kept for g in markers[name]))
    column = {g: i for i, g in enumerate(genes)}
    profiles = np.zeros((len(kept), len(genes)), dtype=np.float32)
    for t, name in enumerate(kept):
        profiles[t, [column[g] for g in markers[name]]] = PROFILE_TOTAL / len(markers[name])
    return ReferenceProfiles(
        cell_types=tuple(kept), genes=tuple(genes), profiles=profiles,
        n_cells=(0,) * len(kept), counts_per_cell=None, markers=True,
    )  # fmt: skip
