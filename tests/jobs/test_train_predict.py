"""``train_model`` and ``predict_sample`` (twins of ``tmescope train`` / ``predict``) end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tmescope.errors import (
    InvalidParameterError,
    ModelMismatchError,
    SampleNotFoundError,
    TrainingDataError,
)
from tmescope.jobs.predict import predict_sample
from tmescope.jobs.train import TrainSettings, train_model

FAST = TrainSettings(n_genes=12, n_members=2, device="cpu")


# grid_store (tests/conftest.py): three small synthetic samples embedded with spots and a
# 55 µm grid of tiles, shared with the viewer's tests; read-only.


@pytest.fixture(scope="module")
def trained(grid_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("model") / "model"
    result = train_model(grid_store, out, settings=FAST)
    return out, result.report


def test_every_model_is_scored_on_the_same_folds(trained: tuple[Path, dict]) -> None:
    _, report = trained
    assert set(report["models"]) == {"gat", "mlp", "ridge", "ridge-cv", "smooth-ridge"}
    assert [f["test"] for f in report["folds"]] == [["synth_00"], ["synth_01"], ["synth_02"]]
    for scores in report["models"].values():
        assert len(scores["folds"]) == 3 and np.isfinite(scores["mean"])
        assert scores["mean"] == pytest.approx(np.mean(scores["folds"]), abs=1e-3)
        assert "states" in scores and np.isfinite(scores["states"]["mean"])
    assert 0.0 <= report["models"]["gat"]["coverage_90"] <= 1.0
    assert len(report["genes"]) == 12 and "tumour" in report["states"]


def test_the_model_directory_reloads_with_its_targets(trained: tuple[Path, dict]) -> None:
    from tmescope.fusion.model_dir import load_model

    out, report = trained
    model = load_model(out)
    assert list(model.spec.genes) == report["genes"]
    assert len(model.ensemble.members) == 2
    assert model.info["cv"]["models"]["gat"]["mean"] == report["models"]["gat"]["mean"]


def test_predictions_read_like_a_visium_sample(
    grid_store: Path, trained: tuple[Path, dict], tmp_path: Path
) -> None:
    import scanpy as sc

    out = predict_sample(
        grid_store, trained[0], sample="synth_01", out=tmp_path / "p.h5ad", device="cpu"
    )
    adata = sc.read_h5ad(out)
    assert adata.n_obs == 90 and adata.n_vars == 12
    assert adata.obsm["spatial"].shape == (90, 2)
    library = adata.uns["spatial"]["synth_01"]
    assert "lowres" in library["images"] and "tissue_lowres_scalef" in library["scalefactors"]
    assert (adata.layers["std"] > 0).any() and np.isfinite(adata.layers["measured"]).all()
    assert adata.obsm["tme_states"].shape[1] == len(trained[1]["states"])
    # Every spot's attention over itself and its neighbours sums to one (softmax per head).
    assert np.allclose(np.asarray(adata.obsp["attention"].sum(axis=1)).ravel(), 1.0, atol=1e-4)
    squidpy = pytest.importorskip("squidpy")
    squidpy.gr.spatial_neighbors(adata)
    assert adata.obsp["spatial_connectivities"].shape == (90, 90)


def test_grid_predictions_cover_tiles_between_spots(
    grid_store: Path, trained: tuple[Path, dict], tmp_path: Path
) -> None:
    import anndata as ad
    from scipy.spatial import cKDTree

    out = predict_sample(
        grid_store, trained[0], sample="synth_00", out=tmp_path / "g.h5ad", grid=True,
        device="cpu",
    )  # fmt: skip
    adata = ad.read_h5ad(out)
    tiles = adata[adata.obs["kind"] == "tile"]
    spots = adata[adata.obs["kind"] == "spot"]
    assert tiles.n_obs > spots.n_obs == 90
    distance, _ = cKDTree(spots.obsm["spatial"]).query(tiles.obsm["spatial"])
    between = distance * 0.5 > 30  # µm from the nearest spot centre (0.5 µm/px synthetic slide)
    assert between.any()
    assert np.isfinite(tiles.X[between]).all() and np.isnan(tiles.layers["measured"]).all()


def test_a_store_with_one_sample_cannot_be_cross_validated(
    grid_store: Path, tmp_path: Path
) -> None:
    from tmescope.store import CohortStore

    copy = tmp_path / "one.zarr"
    shutil.copytree(grid_store, copy)
    store = CohortStore.open(copy, mode="a")
    store.remove_sample("synth_01")
    store.remove_sample("synth_02")
    with pytest.raises(TrainingDataError, match="at least 2"):
        train_model(copy, tmp_path / "m", settings=FAST)
    assert not (tmp_path / "m").exists()


def test_a_model_of_another_store_is_refused(
    grid_store: Path, trained: tuple[Path, dict], tmp_path: Path
) -> None:
    import json

    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    header = json.loads((copy / "model.json").read_text())
    header["fingerprint"]["weights"] = "sha256:0123"
    (copy / "model.json").write_text(json.dumps(header))
    with pytest.raises(ModelMismatchError, match="weights"):
        predict_sample(grid_store, copy, sample="synth_00", out=tmp_path / "p.h5ad")
    assert not (tmp_path / "p.h5ad").exists()


def test_an_unknown_sample_is_named(
    grid_store: Path, trained: tuple[Path, dict], tmp_path: Path
) -> None:
    with pytest.raises(SampleNotFoundError, match="synth_09"):
        predict_sample(grid_store, trained[0], sample="synth_09", out=tmp_path / "p.h5ad")


def test_grid_without_tiles_says_how_to_get_them(synth_store: Path) -> None:
    from tmescope.fusion.cohort import read_tile_table
    from tmescope.store import CohortStore

    # synth_store (tests/conftest.py): spots embedded without a grid.
    with pytest.raises(TrainingDataError, match="--grid"):
        read_tile_table(CohortStore.open(synth_store), "synth_00")


def test_samples_missing_target_genes_are_named() -> None:
    import scipy.sparse as sp

    from tmescope.fusion.cohort import SpotTable
    from tmescope.fusion.target_spec import check_genes, fit_targets

    rng = np.random.default_rng(0)

    def table(name: str, genes: tuple[str, ...]) -> SpotTable:
        counts = sp.csr_matrix(rng.poisson(3.0, size=(30, len(genes))).astype(np.float32))
        return SpotTable(
            name, 0.5, np.arange(30), np.zeros((30, 4), np.float32), np.zeros((30, 2), np.float32),
            np.array([f"b{i}" for i in range(30)]), counts, genes,
        )  # fmt: skip

    genes = tuple(f"G{i}" for i in range(20))
    spec = fit_targets([table("a", genes)], kind="expression", n_genes=20)
    with pytest.raises(TrainingDataError, match="sample 'b' lacks 5 of the target genes"):
        check_genes([table("b", genes[:15])], spec)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"target": "cells"}, "--target"),
        ({"models": ("gat", "forest")}, "forest"),
        ({"n_genes": 0}, "--genes"),
        ({"label_key": "cell_type"}, "--label-key cell_type names a column of a reference"),
        ({"folds": "1"}, "at least 2 folds"),
    ],
)
def test_bad_settings_are_refused_before_any_work(settings: dict, fragment: str) -> None:
    with pytest.raises(InvalidParameterError, match=fragment):
        TrainSettings(**settings)


def test_folds_hold_patients_whole_from_the_stored_metadata(
    grid_store: Path, tmp_path: Path
) -> None:
    """Patients come from the metadata the samples were embedded with (a sample sheet's
    ``patient`` column); without them each sample is its own; a one-patient cohort falls back
    to single sections with a warning; a --group-key no sample has is refused."""
    from tmescope.errors import TmescopeWarning
    from tmescope.jobs.train import _folds, describe_folds, sample_groups
    from tmescope.store import CohortStore

    store = CohortStore.open(shutil.copytree(grid_store, tmp_path / "s.zarr"), mode="a")
    ids = store.sample_ids()
    plain = TrainSettings()
    assert sample_groups(store, ids, plain) == {s: s for s in ids}
    for sample, patient in zip(ids, ["P1", "P1", "P2"], strict=True):
        store.update_sample_metadata(sample, {"patient": patient, "site": "lung"})
    groups = sample_groups(store, ids, plain)
    assert groups == dict(zip(ids, ["P1", "P1", "P2"], strict=True))
    folds = _folds(plain, ids, groups)
    assert [f.test for f in folds] == [tuple(ids[:2]), (ids[2],)]
    assert describe_folds(folds, groups, plain) == "leave one patient out (2 folds)"
    one = sample_groups(store, ids, TrainSettings(group_key="site"))
    with pytest.warns(TmescopeWarning, match="one site"):
        assert len(_folds(TrainSettings(group_key="site"), ids, one)) == 3
    with pytest.raises(TrainingDataError, match="no 'donor'"):
        sample_groups(store, ids, TrainSettings(group_key="donor"))
