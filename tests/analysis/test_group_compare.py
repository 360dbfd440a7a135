"""The immune phenotype rule on hand-made maps, the comparison of groups on summaries and on a
hand-made AnnData of cells (the twin), and its calibration on independent random fields."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from tmescope.analysis.adata_compare import compare_adatas, one_hot_types
from tmescope.analysis.group_compare import compare_groups
from tmescope.analysis.immune_phenotype import call_immune_phenotype
from tmescope.analysis.sample_summary import summarise_sample
from tmescope.errors import InvalidParameterError


def _nest_map(kind: str, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """16 µm bins over 1.6 mm with one round tumour nest of radius 400 µm in the middle; T cells
    placed as ``kind`` says. Returns (coords µm, T share, tumour share)."""
    rng = np.random.default_rng(seed)
    g = np.arange(100) * 16.0
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    r = np.hypot(*(xy - 800).T)
    tumour = np.where(r < 400, 0.8, 0.05) + rng.uniform(0, 0.05, len(xy))
    edge = (r >= 400) & (r < 440)
    t = {"inflamed": np.where(r < 400, 0.15, 0.05) + np.where(edge, 0.25, 0),
         "excluded": np.where(r < 400, 0.005, 0.05) + np.where(edge, 0.4, 0),
         "desert": np.full(len(xy), 0.01)}[kind]  # fmt: skip
    return xy, t + rng.uniform(0, 0.01, len(xy)), tumour


@pytest.mark.parametrize("kind", ["inflamed", "excluded", "desert"])
def test_the_phenotype_rule_calls_hand_made_maps(kind: str) -> None:
    call = call_immune_phenotype(*_nest_map(kind))
    assert call.phenotype == kind, call
    assert call.n_nest > 100 and call.n_margin > 50 and call.decided_by


def test_a_section_without_nests_is_not_called() -> None:
    xy, t, _ = _nest_map("inflamed")
    assert call_immune_phenotype(xy, t, np.zeros(len(xy))).phenotype == "no tumour"


def _cells(kind: str, seed: int) -> ad.AnnData:
    """Cells on a jittered 10 µm lattice: tumour in a nest, T cells as ``kind`` places them,
    fibroblasts elsewhere."""
    rng = np.random.default_rng(seed)
    g = np.arange(0, 600, 10.0)
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + rng.uniform(-3, 3, (g.size**2, 2))
    r = np.hypot(*(xy - 300).T)
    inside, edge = r < 180, (r >= 180) & (r < 220)
    p_t = np.where(inside, 0.2 if kind == "inflamed" else 0.0, 0.03) + np.where(edge, 0.3, 0)
    u = rng.random(len(xy))
    types = np.where(u < p_t, "t_cell", np.where(inside, "tumour", "fibroblast"))
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(len(xy))]))
    adata.obsm["spatial"] = xy
    adata.obsm["populations"] = one_hot_types(types, index=adata.obs_names)
    return adata


def test_the_twin_compares_groups_of_cells_with_patients_as_units() -> None:
    adatas = []
    for patient in range(6):
        kind = "inflamed" if patient % 2 == 0 else "excluded"
        for section in range(2):
            cells = _cells(kind, seed=10 * patient + section)
            cells.uns.update(sample_id=f"P{patient}_{section}", patient=f"P{patient}", arm=kind)
            adatas.append(cells)
    result = compare_adatas(adatas, by="arm", um_per_px=1.0)
    planted = next(p for p in result.pairs if {p["a"], p["b"]} == {"t_cell", "tumour"})
    assert planted["higher_in"] == "inflamed" and planted["q"] < 0.05
    assert planted["n_patients"] == {"excluded": 3, "inflamed": 3}  # 12 sections, 6 units
    assert planted["naive_p"] < planted["p"]  # bins as units: smaller still, and meaningless
    calls = {s["sample"]: s["phenotype"] for s in result.samples}
    assert all(calls[f"P{i}_{j}"] == ("inflamed" if i % 2 == 0 else "excluded")
               for i in range(6) for j in range(2))  # fmt: skip
    assert {r["population"] for r in result.abundances} == {"fibroblast", "t_cell", "tumour"}


def test_a_patient_in_two_groups_and_a_missing_column_are_refused() -> None:
    adatas = [_cells("inflamed", s) for s in range(4)]
    for i, a in enumerate(adatas):
        a.uns.update(sample_id=f"s{i}", patient=f"P{i // 2}", arm="A" if i in (0, 2) else "B")
    with pytest.raises(InvalidParameterError, match="two groups"):
        compare_adatas(adatas, by="arm", um_per_px=1.0)
    with pytest.raises(InvalidParameterError, match="--by nothing: no such column"):
        compare_adatas(adatas, by="nothing", um_per_px=1.0)


def _independent_shares(n_pop: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent smooth fields on a tissue with a hole, made into shares."""
    rng = np.random.default_rng(seed)
    side = 48
    fields = np.stack([ndimage.gaussian_filter(rng.normal(size=(side, side)), 3)
                       for _ in range(n_pop)], -1)  # fmt: skip
    fields = np.exp(fields / fields.std() * 0.8)
    g = np.arange(side) * 16.0
    xy = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    values = fields.reshape(-1, n_pop)
    keep = np.hypot(*(xy - 250).T) > 90  # a hole
    values = values[keep] / values[keep].sum(axis=1, keepdims=True)
    return xy[keep], values


def test_group_comparison_of_independent_fields_is_calibrated() -> None:
    # 40 cohorts of 8 patients (one section each) whose maps are independent random fields: no
    # difference between the groups, so p < 0.05 for about 5 % of the pairs.
    names = ("a", "b", "c", "d")
    summaries = {}
    for section in range(48):
        xy, shares = _independent_shares(len(names), seed=section)
        summaries[section] = summarise_sample(f"s{section}", xy, shares, names)
    rejected = []
    rng = np.random.default_rng(7)
    for _ in range(40):
        chosen = rng.choice(48, 8, replace=False)
        meta = {f"s{k}": {"patient": f"s{k}", "group": "AB"[i % 2]} for i, k in enumerate(chosen)}
        result = compare_groups([summaries[k] for k in chosen], meta, by="group")
        rejected += [p["p"] < 0.05 for p in result.pairs]
    assert len(rejected) == 40 * 6
    assert np.mean(rejected) <= 0.09
