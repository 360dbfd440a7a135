"""The viewer's store, shared by the API and browser tests: built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def viewer_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three small synthetic samples with a 55 µm grid, a quick model, and both indexes (raw
    and the model's fused space)."""
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.jobs.embed import EmbedSettings, SampleInput
    from tmescope.jobs.train import TrainSettings, train_model
    from tmescope.workflows import build_cohort_index, embed_samples

    root = tmp_path_factory.mktemp("viewer")
    dirs = write_synthetic_cohort(root / "cohort", n_samples=3, n_spots=90, seed=4)
    store = root / "cohort.zarr"
    embed_samples(
        [SampleInput(d, image=next(d.glob("*_he.tif"))) for d in dirs], store=store,
        encoder="test-vit-tiny", device="cpu", settings=EmbedSettings(grid_um=55.0),
    )  # fmt: skip
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
