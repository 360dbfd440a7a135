"""The viewer's store, shared by the API and browser tests: built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def viewer_store(
    tmp_path_factory: pytest.TempPathFactory, grid_store: Path
) -> tuple[Path, Path]:
    """Three small synthetic samples with a 55 µm grid (a copy of the session's ``grid_store``
    with its ``cohort/``), a quick model, and both indexes (raw and the model's fused space)."""
    from factories import copy_beside_its_cohort
    from tmescope.jobs.train import TrainSettings, train_model
    from tmescope.workflows import build_cohort_index

    root = tmp_path_factory.mktemp("viewer")
    store = copy_beside_its_cohort(grid_store, root)
    build_cohort_index(store)
    folds = root / "folds.csv"  # one fold: a model in seconds, still cross-validated
    folds.write_text("sample_id,fold\nsynth_00,0\n")
    settings = TrainSettings(
        n_genes=12, n_members=1, models=("gat",), folds=str(folds), device="cpu"
    )
    train_model(store, root / "model", settings=settings)
    build_cohort_index(store, space="fused", model_dir=root / "model")  # writes the fused sets
    return store, root / "model"


@pytest.fixture(scope="session")
def viewer_subspot_model(viewer_store: tuple[Path, Path]) -> tuple[Path, Path]:
    """The viewer's store and a second quick model with a sub-spot model (16 µm bins, the
    cohort's reference), for the sub-spot layers."""
    from tmescope.jobs.train import TrainSettings, train_model

    store, model = viewer_store
    settings = TrainSettings(
        models=("ridge",), n_genes=10, n_members=2, device="cpu",
        reference=store.parent / "cohort" / "reference.h5ad", resolution_um=16.0,
    )  # fmt: skip
    train_model(store, model.parent / "subspot_model", settings=settings)
    return store, model.parent / "subspot_model"


@pytest.fixture(scope="session")
def compare_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store whose groups the viewer can compare, and a quick model with a sub-spot model:
    four sections with planted immune phenotypes (the sheet's ``group``: two inflamed, two
    excluded), each its own patient (two patients per group), embedded from their sample sheet
    with 16 µm bins. No sub-spot maps are saved in it: the viewer predicts them."""
    import csv

    from tmescope.datasets import write_synthetic_cohort
    from tmescope.jobs.embed_sheet import samplesheet_inputs
    from tmescope.jobs.train import TrainSettings, train_model
    from tmescope.workflows import embed_samples

    root = tmp_path_factory.mktemp("compare-viewer")
    write_synthetic_cohort(root / "cohort", n_samples=4, n_spots=70, seed=8, workers=1,
                           phenotypes=["inflamed", "excluded"])  # fmt: skip
    sheet = root / "cohort" / "samplesheet.csv"
    rows = list(csv.DictReader(sheet.open(encoding="utf-8")))
    for row in rows:  # the sheet pairs sections by patient: one patient per group is no test
        row["patient"] = row["sample"]
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    store = root / "cohort.zarr"
    embed_samples(samplesheet_inputs(sheet), store=store, encoder="test-vit-tiny", device="cpu")
    folds = root / "folds.csv"  # one fold: a model in seconds, still cross-validated
    folds.write_text("sample_id,fold\nsynth_00,0\n")
    settings = TrainSettings(
        models=("ridge",), n_genes=10, n_members=1, device="cpu", folds=str(folds),
        reference=root / "cohort" / "reference.h5ad", resolution_um=16.0,
    )  # fmt: skip
    train_model(store, root / "model", settings=settings)
    return store, root / "model"
