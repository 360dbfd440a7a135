"""TME gene sets: the default file, user files, case-insensitive scoring, training-only scaling."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tmescope.datasets.catalogue import CELL_TYPES, HYPOXIA, NAMED_GENES
from tmescope.errors import GeneSetError, InputNotFoundError, InvalidParameterError
from tmescope.fusion.genesets import (
    GeneSet,
    GeneStandardiser,
    load_gene_sets,
    score_gene_sets,
)

# Default set → the synthetic cohort's population (or gene group) it should find.
SYNTHETIC_SOURCE = {
    "t_cells": "t_cell",
    "cytotoxic_t": "t_cell",
    "b_plasma": "b_cell",
    "macrophages": "macrophage",
    "endothelial": "endothelial",
    "fibroblasts": "fibroblast",
    "osteoclasts": "osteoclast",
    "proliferation": "tumour",
    "tumour": "tumour",
}


def test_default_sets_are_complete_and_well_formed() -> None:
    sets = load_gene_sets()
    names = [s.name for s in sets]
    assert names == [
        "t_cells",
        "cytotoxic_t",
        "b_plasma",
        "macrophages",
        "nk_cells",
        "endothelial",
        "fibroblasts",
        "pericytes_smooth_muscle",
        "osteoclasts",
        "proliferation",
        "hypoxia",
        "tumour",
    ]
    for s in sets:
        assert s.label and s.description and len(s.genes) >= 5
        assert len(set(s.genes)) == len(s.genes)
    states = {s.name for s in sets if s.kind == "state"}
    assert states == {"proliferation", "hypoxia"}  # every other set is a population


@pytest.mark.parametrize("name", sorted(SYNTHETIC_SOURCE))
def test_default_sets_fit_the_synthetic_cohort(name: str) -> None:
    """Each set whose population the generator draws has >= 2 genes that population expresses."""
    genes = next(s.genes for s in load_gene_sets() if s.name == name)
    markers = next(t.markers for t in CELL_TYPES if t.name == SYNTHETIC_SOURCE[name])
    assert len(set(genes) & set(markers)) >= 2
    assert len(set(genes) & set(NAMED_GENES)) >= 2


def test_default_hypoxia_set_covers_the_synthetic_hypoxia_genes() -> None:
    hypoxia = next(s for s in load_gene_sets() if s.name == "hypoxia")
    assert set(HYPOXIA) <= set(hypoxia.genes)


def test_user_toml_in_both_forms(tmp_path: Path) -> None:
    path = tmp_path / "sets.toml"
    path.write_text(
        'simple = ["CD3E", "CD2"]\n\n[rich]\nlabel = "Rich set"\ngenes = ["A", "B", "A"]\n'
    )
    simple, rich = load_gene_sets(path)
    assert simple == GeneSet("simple", "simple", ("CD3E", "CD2"), "")
    assert rich == GeneSet("rich", "Rich set", ("A", "B"), "")


def test_user_json_in_both_forms(tmp_path: Path) -> None:
    path = tmp_path / "sets.JSON"
    rich = {"genes": ["X", "Y"], "label": "Why", "description": "d"}
    path.write_text(json.dumps({"plain": ["A", "B"], "rich": rich}))
    assert load_gene_sets(path) == (
        GeneSet("plain", "plain", ("A", "B")),
        GeneSet("rich", "Why", ("X", "Y"), "d"),
    )


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bad.toml", "[t_cells]\ngenes = [CD3E]\n", r"not valid TOML.*line 2"),
        ("bad.json", '{"t": ["A",\n "B"', r"not valid JSON.*line 2"),
        ("list.json", '["A", "B"]', "must map set names to genes, found a list"),
        ("empty.toml", "# nothing\n", "holds no gene set"),
        ("number.toml", 'a = ["X", "Y"]\nt_cells = 3\n', r"line 2\), set 't_cells'.*found int"),
        ("typo.toml", '[t]\ngene = ["A"]\n', r"line 1\), set 't'.*unknown field\(s\) gene"),
        ("nogenes.toml", '[t]\nlabel = "T"\n', "'genes' must be a non-empty list"),
        ("blank.toml", 't = ["A", " "]\n', "genes must be non-empty strings"),
        ("label.toml", '[t]\nlabel = 1\ngenes = ["A"]\n', "'label' must be a string"),
        ("kind.toml", '[t]\nkind = "cell"\ngenes = ["A"]\n', "'kind' must be 'population' or"),
        ("sets.yaml", "t: [A]\n", r"should end in \.toml or \.json"),
    ],
)
def test_malformed_files_say_where_and_how_to_fix(
    tmp_path: Path, name: str, content: str, match: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(GeneSetError, match=match):
        load_gene_sets(path)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'a = ["\xe9t\xe9"]\n')
    with pytest.raises(GeneSetError, match="UTF-8"):
        load_gene_sets(path)
    with pytest.raises(InputNotFoundError, match="does not exist"):
        load_gene_sets(tmp_path / "missing.toml")


def spots_and_genes() -> tuple[np.ndarray, list[str]]:
    """Mouse-style symbols; spot 0 is rich in T-cell genes, spot 1 in macrophage genes."""
    genes = ["Cd3e", "Cd3d", "Cd2", "Cd68", "C1qa", "Actb", "Mki67"]
    rng = np.random.default_rng(0)
    expr = rng.uniform(0.5, 1.5, (40, len(genes)))
    expr[0, :3] = 5.0
    expr[1, 3:5] = 5.0
    return expr, genes


SETS = (
    GeneSet("t_cells", "T cells", ("CD3E", "CD3D", "CD2", "TRAC")),
    GeneSet("macrophages", "Macrophages", ("CD68", "C1QA", "CD163")),
    GeneSet("proliferation", "Proliferation", ("MKI67", "TOP2A")),
)


def test_scores_match_case_insensitively_and_find_the_rich_spots() -> None:
    expr, genes = spots_and_genes()
    scores, kept = score_gene_sets(expr, genes, SETS, min_genes=2)
    assert kept == ("t_cells", "macrophages")
    assert scores.shape == (40, 2) and scores.dtype == np.float32
    assert scores[:, 0].argmax() == 0 and scores[:, 1].argmax() == 1
    assert scores[0, 0] > scores[0, 1]
    z = (expr - expr.mean(axis=0)) / expr.std(axis=0)
    np.testing.assert_allclose(scores[:, 0], z[:, :3].mean(axis=1), rtol=1e-5, atol=1e-6)
    sparse_scores, _ = score_gene_sets(sp.coo_matrix(expr), genes, SETS)
    np.testing.assert_allclose(sparse_scores, scores, rtol=1e-5, atol=1e-6)


def test_sets_with_too_few_genes_are_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expr, genes = spots_and_genes()
    with caplog.at_level(logging.WARNING, logger="tmescope.fusion.genesets"):
        _, kept = score_gene_sets(expr, genes, SETS, min_genes=3)
    assert kept == ("t_cells",)
    assert "macrophages dropped: 2 of its 3 genes" in caplog.text
    assert "proliferation dropped: 1 of its 2 genes" in caplog.text


def test_all_sets_dropped_is_an_error() -> None:
    expr, genes = spots_and_genes()
    with pytest.raises(GeneSetError, match=r"t_cells 3/4, macrophages 2/3, proliferation 1/2"):
        score_gene_sets(expr, genes, SETS, min_genes=4)
    with pytest.raises(GeneSetError, match="no gene sets"):
        score_gene_sets(expr, genes, ())
    with pytest.raises(InvalidParameterError, match="min_genes"):
        score_gene_sets(expr, genes, SETS, min_genes=0)
    with pytest.raises(InvalidParameterError, match=r"\(n_spots, 6\)"):
        score_gene_sets(expr, genes[:6], SETS)


def test_standardiser_uses_training_statistics_only() -> None:
    rng = np.random.default_rng(3)
    genes = ["CD3E", "CD3D", "CD68", "C1QA"]
    train = [rng.normal(1.0, 0.5, (30, 4)).clip(0), rng.normal(1.0, 0.5, (20, 4)).clip(0)]
    test = rng.normal(4.0, 2.0, (25, 4)).clip(0)
    standardiser = GeneStandardiser.fit(train, genes)
    pooled = np.vstack(train)
    np.testing.assert_allclose(standardiser.mean, pooled.mean(axis=0))
    np.testing.assert_allclose(standardiser.std, pooled.std(axis=0))
    # Test spots are placed on the training scale: far above 0, not centred on themselves.
    z = standardiser.transform(test, genes)
    np.testing.assert_allclose(z, (test - pooled.mean(0)) / pooled.std(0), rtol=1e-5)
    assert z.mean() > 3.0
    scores, _ = score_gene_sets(test, genes, SETS, standardiser=standardiser)
    self_scaled, _ = score_gene_sets(test, genes, SETS)
    np.testing.assert_allclose(scores[:, 0], z[:, :2].mean(axis=1), rtol=1e-5)
    assert abs(self_scaled.mean()) < 1e-5 and scores.mean() > 3.0


def test_standardiser_handles_case_order_and_constant_genes() -> None:
    train = np.column_stack([np.full(10, 2.0), np.arange(10.0)])
    standardiser = GeneStandardiser.fit([sp.csr_matrix(train)], ["Cd3e", "Cd68"])
    assert standardiser.std[0] == 1.0
    z = standardiser.transform(np.array([[4.5, 3.0]]), ["CD68", "cd3e"])
    np.testing.assert_allclose(z, [[0.0, 1.0]], atol=1e-6)
    with pytest.raises(GeneSetError, match="without 1 of those asked for \\(PTPRC\\)"):
        standardiser.transform(np.zeros((1, 2)), ["CD68", "PTPRC"])


def test_genes_unknown_to_the_standardiser_do_not_count_as_present() -> None:
    expr, genes = spots_and_genes()
    standardiser = GeneStandardiser.fit([expr[:, [0, 3, 4]]], ["Cd3e", "Cd68", "C1qa"])
    _, kept = score_gene_sets(expr, genes, SETS, standardiser=standardiser)
    assert kept == ("macrophages",)


def test_default_sets_score_highest_on_their_synthetic_population() -> None:
    from tmescope.datasets.catalogue import TYPE_INDEX
    from tmescope.datasets.expression import build_gene_panel, draw_counts
    from tmescope.fusion.targets import normalise_log1p

    rng = np.random.default_rng(5)
    panel = build_gene_panel(300, rng=rng)
    populations = sorted(set(SYNTHETIC_SOURCE.values()))
    per_type = 15
    cells = np.zeros((per_type * len(populations), len(CELL_TYPES)))
    for p, population in enumerate(populations):
        cells[p * per_type : (p + 1) * per_type, TYPE_INDEX[population]] = 12
    far = np.full(len(cells), 1000.0)  # far from borders; next to vessels: no spatial effects
    counts = draw_counts(cells, border_um=far, vessel_um=np.zeros(len(cells)), panel=panel, rng=rng)
    scores, kept = score_gene_sets(normalise_log1p(counts), panel.names, load_gene_sets())
    assert set(SYNTHETIC_SOURCE) <= set(kept) and "pericytes_smooth_muscle" not in kept
    by_population = scores.reshape(len(populations), per_type, -1).mean(axis=1)
    for name, population in SYNTHETIC_SOURCE.items():
        column = kept.index(name)
        assert populations[by_population[:, column].argmax()] == population, name
