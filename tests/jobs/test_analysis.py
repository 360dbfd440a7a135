"""Fused sets, niches and interactions end to end on a small synthetic cohort with a trained head.

The cohort's regions (tumour, stroma, immune aggregates, vessels, necrosis, bone) are known, so
niches are scored against them; the statistics are checked for shape, pooling and seeding.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_calls import call_cli
from tmescope.errors import (
    InvalidParameterError,
    ModelMismatchError,
    SampleNotFoundError,
    TrainingDataError,
)
from tmescope.jobs.embed import EmbedSettings, SampleInput
from tmescope.jobs.fused import write_fused
from tmescope.jobs.interactions import InteractionSettings, run_interactions
from tmescope.jobs.niche_views import VIEWS, check_view, spot_view
from tmescope.jobs.niches import find_niches
from tmescope.jobs.train import TrainSettings, train_model
from tmescope.store import CohortStore, RowKind
from tmescope.workflows import build_cohort_index, embed_samples, query_store

FAST_PERMS = InteractionSettings(n_perms=100, crosscorr_perms=19)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(store, model_dir, annotations.csv)``: 3 × 500 spots with a 110 µm grid, a GAT head."""
    from tmescope.datasets import write_synthetic_cohort

    root = tmp_path_factory.mktemp("analysis")
    dirs = write_synthetic_cohort(root / "cohort", n_samples=3, n_spots=500, seed=13)
    items = [SampleInput(d, image=next(d.glob("*_he.tif"))) for d in dirs]
    store = root / "cohort.zarr"
    embed_samples(
        items, store=store, encoder="test-vit-tiny", device="cpu",
        settings=EmbedSettings(grid_um=110.0),
    )  # fmt: skip
    # One head per cross-validation fold: no test here reads the folds' scores, and the saved
    # head (2 members, fitted on every sample) is the same whatever the folds fitted.
    settings = TrainSettings(
        n_genes=50, n_members=2, cv_members=1, models=("gat",), device="cpu"
    )
    train_model(store, root / "model", settings=settings)
    truth = [pd.read_csv(d / "ground_truth.csv").assign(sample_id=d.name) for d in dirs]
    annotations = root / "regions.csv"
    pd.concat(truth)[["sample_id", "barcode", "region"]].to_csv(annotations, index=False)
    return store, root / "model", annotations


def test_fused_sets_are_written_once_and_read_back(cohort: tuple[Path, Path, Path]) -> None:
    store, model, _ = cohort
    first = write_fused(store, model, device="cpu")
    again = write_fused(store, model, device="cpu")
    assert again.written == () and set(again.samples) == {"synth_00", "synth_01", "synth_02"}
    opened = CohortStore.open(store)
    for sample_id, rows in again.samples.items():
        record = opened.sample_record(sample_id)
        assert rows.n == record.n_spots + record.n_tiles and (~rows.is_spot).sum() > 0
        np.testing.assert_allclose(
            rows.data.states, first.samples[sample_id].data.states, rtol=1e-5, atol=1e-5
        )
        assert rows.data.fused.shape[1] == again.info.dim == 2 * 64  # members side by side
    assert opened.verify() == []


def test_niches_recover_the_synthetic_regions(
    cohort: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    store, model, annotations = cohort
    report = find_niches(store, model, annotations=annotations, out=tmp_path, device="cpu")
    assert report.agreement["cohort"] >= 0.6, report.agreement
    assert 3 <= report.k <= 12 and len(set(report.names)) == report.k
    np.testing.assert_allclose(report.composition.sum(axis=1), 1.0)
    as_json = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert sum(n["n_spots"] for n in as_json["niches"]) == 1500
    assert any("tumour+" in name for name in report.names)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "niche_composition.png", "niches_synth_00.png", "niches_synth_01.png",
        "niches_synth_02.png",
    ]  # fmt: skip


def test_cohort_interactions_pool_the_samples(
    cohort: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    store, model, _ = cohort
    report = run_interactions(store, model, settings=FAST_PERMS, out=tmp_path, device="cpu")
    assert len(report.samples) == 3 and report.cohort is not None
    z = np.stack([s.enrichment.zscore for s in report.samples])
    defined = np.isfinite(z).all(axis=0)
    np.testing.assert_allclose(report.cohort.mean_z[defined], z.mean(axis=0)[defined])
    encoded = json.dumps(report.to_json(), allow_nan=False)
    assert set(json.loads(encoded)["cohort"]) >= {"enrichment", "cooccurrence", "crosscorr"}
    # Tumour and fibroblast-rich stroma are separate regions: they avoid each other.
    pair = {(p["a"], p["b"]): p for p in report.pairs()}[("fibroblasts", "tumour")]
    assert pair["stouffer_z"] < -3
    names = {p.name for p in report.figures}
    assert {"enrichment_cohort.png", "cooccurrence_cohort.png", "labels_synth_00.png"} <= names


def test_grid_and_niche_labels_and_seeds(cohort: tuple[Path, Path, Path]) -> None:
    store, model, _ = cohort
    grid = InteractionSettings(grid=True, n_perms=100, crosscorr_perms=19, seed=3)
    a = run_interactions(store, model, samples=["synth_01"], settings=grid, device="cpu")
    b = run_interactions(store, model, samples=["synth_01"], settings=grid, device="cpu")
    record = CohortStore.open(store).sample_record("synth_01")
    assert a.cohort is None and a.samples[0].n == record.n_tiles
    np.testing.assert_array_equal(a.samples[0].enrichment.zscore, b.samples[0].enrichment.zscore)
    niches = InteractionSettings(on="niches", n_perms=100, crosscorr_perms=19, k=4)
    by_niche = run_interactions(store, model, samples=["synth_00"], settings=niches, device="cpu")
    assert len(by_niche.categories) == 4 and all(c.startswith("N") for c in by_niche.categories)


def test_bad_input_is_refused(cohort: tuple[Path, Path, Path], tmp_path: Path) -> None:
    store, model, _ = cohort
    with pytest.raises(SampleNotFoundError, match="NOPE"):
        run_interactions(store, model, samples=["NOPE"], device="cpu")
    other = tmp_path / "model"
    shutil.copytree(model, other)
    header = json.loads((other / "model.json").read_text())
    header["fingerprint"]["weights"] = "sha256:0123"
    (other / "model.json").write_text(json.dumps(header))
    with pytest.raises(ModelMismatchError, match="weights"):
        find_niches(store, other, device="cpu")


def test_grid_without_tiles_is_refused(
    cohort: tuple[Path, Path, Path], synth_store: Path
) -> None:
    spots_only = synth_store  # embedded without a grid: no tiles
    with pytest.raises(TrainingDataError, match="--grid"):
        run_interactions(
            spots_only, cohort[1], settings=InteractionSettings(grid=True), device="cpu"
        )


def test_the_fused_space_is_searchable(cohort: tuple[Path, Path, Path]) -> None:
    store, model, _ = cohort
    info = build_cohort_index(store, space="fused", model_dir=model)
    assert info.space.startswith("fused:") and info.dim == 128
    opened = CohortStore.open(store)
    spots = opened.read_kind("synth_00") == RowKind.SPOT
    barcode = str(opened.read_barcodes("synth_00")[spots][0])
    hits = query_store(store, spot=f"synth_00:{barcode}", k=3, space="fused", model_dir=model)
    assert (hits["sample_id"].iloc[0], hits["barcode"].iloc[0]) == ("synth_00", barcode)
    assert hits["score"].iloc[0] == pytest.approx(1.0, abs=1e-3)


def test_the_cli_prints_json_and_refuses_an_unknown_sample(cohort: tuple[Path, Path, Path]) -> None:
    store, model, _ = cohort

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tmescope", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True)

    result = run("niches", store, model, "--k", "4", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["k"] == 4
    result = call_cli("interactions", store, model, "--sample", "NOPE")  # in this process
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no complete sample 'NOPE'")
    table = run("interactions", store, model, "--cohort", "--perms", "50", "--device", "cpu")
    assert table.returncode == 0, table.stderr
    assert "neighbourhood enrichment of states (spots), 3 samples pooled" in table.stdout


def test_report_sections_inline_the_figures(
    cohort: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from tmescope.jobs.report_sections import interaction_section, niche_section

    store, model, _ = cohort
    niches = find_niches(store, model, k=4, out=tmp_path / "niches", device="cpu")
    meetings = run_interactions(
        store, model, settings=FAST_PERMS, out=tmp_path / "meet", device="cpu"
    )
    part = niche_section(niches)
    (index,) = part.index
    assert index.title == "Niches" and index.html.count("<img") == 1  # the composition
    assert all(name in index.html for name in niches.names) and "http" not in index.html
    for sample in ("synth_00", "synth_01", "synth_02"):  # each sample's map, on its page
        (own,) = part.sections_of(sample)
        assert own.html.count("data:image/jpeg") == 1 and "share of this sample" in own.html
    assert part.sections_of("not_a_sample") == []
    part = interaction_section(meetings)
    (index,) = part.index
    # The cohort's heatmap and curves in the index; each sample's labels, heatmap and curves
    # and its strongest pairs on its page.
    assert index.title == "Interactions" and index.html.count("<img") == 2
    assert "fibroblasts" in index.html and "Stouffer z" in index.html
    (own,) = part.sections_of("synth_01")
    assert own.html.count("<img") == 3 and own.html.count("data:image/jpeg") == 1
    assert "<th>z</th>" in own.html


def test_every_view_gives_one_row_per_spot_in_fused_order(
    cohort: tuple[Path, Path, Path],
) -> None:
    store, model, _ = cohort
    cohort = write_fused(store, model, device="cpu")
    opened = CohortStore.open(store, mode="r")
    for view in VIEWS:
        matrices = spot_view(opened, cohort, view)
        for sid, rows in cohort.samples.items():
            assert matrices[sid].shape[0] == int(rows.is_spot.sum())
            assert np.isfinite(matrices[sid]).all()
    joint = np.concatenate(list(spot_view(opened, cohort, "joint").values()))
    assert joint.shape[1] <= 60  # 30 components of each view


def test_views_are_compared_against_the_regions(cohort: tuple[Path, Path, Path]) -> None:
    store, model, regions = cohort
    report = find_niches(store, model, k=4, annotations=regions, compare_views=True, device="cpu")
    assert set(report.views) == set(VIEWS)
    assert report.views["fused"] == pytest.approx(report.agreement["cohort"])
    # The synthetic regions are written into the expression: it must find them.
    assert report.views["expression"] is not None and report.views["expression"] > 0.2
    assert report.to_json()["views"].keys() == set(VIEWS)


def test_an_unknown_view_is_named() -> None:
    with pytest.raises(InvalidParameterError, match="--view must be one of fused, image"):
        check_view("pixels")
