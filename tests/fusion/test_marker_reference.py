"""Sub-spot populations from marker gene sets: the pseudo-reference and what it recovers."""

from __future__ import annotations

import numpy as np
import pytest

from tmescope.datasets.catalogue import CELL_TYPES, TYPE_INDEX
from tmescope.datasets.expression import build_gene_panel, draw_counts
from tmescope.errors import GeneSetError, TmescopeWarning
from tmescope.fusion.genesets import GeneSet, load_gene_sets
from tmescope.fusion.marker_reference import PROFILE_TOTAL, marker_reference
from tmescope.fusion.subspot_data import check_reference, spot_compositions

# The default population sets the synthetic cohort draws, and the cell type each marks.
MARKS = {
    "t_cells": "t_cell",
    "cytotoxic_t": "t_cell",
    "b_plasma": "b_cell",
    "macrophages": "macrophage",
    "endothelial": "endothelial",
    "fibroblasts": "fibroblast",
    "osteoclasts": "osteoclast",
    "tumour": "tumour",
}


def test_profiles_are_flat_over_the_markers_every_panel_measures() -> None:
    sets = (
        GeneSet("t", "T", ("CD3E", "cd2", "TRAC")),
        GeneSet("b", "B", ("MS4A1", "CD79A")),
        GeneSet("cycling", "Cycling", ("MKI67", "TOP2A"), kind="state"),
    )
    panels = [
        ["Cd3e", "CD2", "TRAC", "MS4A1", "CD79A", "MKI67", "TOP2A"],
        ["CD3E", "CD2", "MS4A1", "CD79A", "MKI67"],
    ]
    reference = marker_reference(sets, panels)
    assert reference.markers and reference.counts_per_cell is None
    assert reference.cell_types == ("t", "b")  # the state set is no population
    assert reference.genes == ("CD3E", "CD2", "MS4A1", "CD79A")  # TRAC: not in every panel
    np.testing.assert_allclose(reference.profiles.sum(axis=1), PROFILE_TOTAL)
    np.testing.assert_allclose(reference.profiles[0], [PROFILE_TOTAL / 2] * 2 + [0, 0])
    check_reference(reference)  # no cells behind it, by design: not refused


def test_too_few_populations_is_an_error_naming_the_way_out() -> None:
    sets = (GeneSet("t", "T", ("CD3E", "CD2")), GeneSet("b", "B", ("MS4A1", "CD79A")))
    with (
        pytest.warns(TmescopeWarning, match=r"b \(1\)"),
        pytest.raises(GeneSetError, match=r"--gene-sets.*--reference"),
    ):
        marker_reference(sets, [["CD3E", "CD2", "MS4A1"]])


def test_marker_shares_recover_known_mixtures_of_synthetic_cells() -> None:
    """Spots drawn by the synthetic expression model with known cells: the marker signal shares,
    summed per cell type, follow each type's true share of cells."""
    rng = np.random.default_rng(3)
    panel = build_gene_panel(300, rng=rng)
    types = sorted(set(MARKS.values()))
    cells = np.zeros((400, len(CELL_TYPES)))
    for t in types:
        cells[:, TYPE_INDEX[t]] = rng.poisson(rng.gamma(0.6, 4.0, len(cells)))
    cells[cells.sum(axis=1) == 0, TYPE_INDEX["tumour"]] = 3
    far = np.full(len(cells), 1000.0)
    counts = draw_counts(cells, border_um=far, vessel_um=np.zeros(len(cells)), panel=panel, rng=rng)
    with pytest.warns(TmescopeWarning, match="nk_cells"):  # one marker of NK cells is drawn
        reference = marker_reference(load_gene_sets(), [panel.names])
    assert set(MARKS) <= set(reference.cell_types)
    assert not {"proliferation", "hypoxia"} & set(reference.cell_types)
    shares = spot_compositions(counts, tuple(panel.names), reference)
    truth = cells / cells.sum(axis=1, keepdims=True)
    for t in types:
        summed = sum(
            shares[:, reference.cell_types.index(name)] for name, of in MARKS.items() if of == t
        )
        r = np.corrcoef(summed, truth[:, TYPE_INDEX[t]])[0, 1]
        assert r > 0.75, (t, r)  # 0.91-0.96 with this seed
