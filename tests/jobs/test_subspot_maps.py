"""Sub-spot maps end to end: train with --reference --resolution --holdout, predict the held-out
sample at 16 µm, and the inputs that are refused before anything is written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from factories import copy_beside_its_cohort, write_fullres_tiff
from tmescope.errors import (
    InvalidParameterError,
    ReferenceDataError,
    TmescopeWarning,
    TrainingDataError,
)
from tmescope.jobs.embed import SlideInput
from tmescope.jobs.predict_bins import predict_subspot
from tmescope.jobs.train import TrainSettings, train_model
from tmescope.store import CohortStore
from tmescope.workflows import embed_samples, fullres_image_of

T = TypeVar("T")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, bins_store: Path) -> tuple[Path, Path]:
    """Three small synthetic samples embedded with 16 µm bins (a copy of the session's
    ``bins_store``), an H&E-only slide (a crop of the third sample's H&E: ``archive``), and the
    cohort's reference."""
    from tmescope.io import open_slide

    root = tmp_path_factory.mktemp("subspot")
    store = copy_beside_its_cohort(bins_store, root)
    with open_slide(fullres_image_of(root / "cohort" / "synth_02")) as he:
        x, y = he.width // 2 - 300, he.height // 2 - 300
        crop = he.read_level(0, x, y, 600, 600)
    archive = write_fullres_tiff(root / "archive.tif", crop, mpp=0.5)
    embed_samples([SlideInput(archive)], store=store, encoder="test-vit-tiny", device="cpu")
    return store, root / "cohort" / "reference.h5ad"


def settings(sc_reference: Path | None, **changes: object) -> TrainSettings:
    values: dict[str, object] = {
        "models": ("ridge",), "n_genes": 10, "n_members": 2, "device": "cpu",
        "reference": sc_reference, "resolution_um": 16.0, "holdout": ("synth_02",),
    }  # fmt: skip
    return TrainSettings(**{**values, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model(cohort: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    store, reference = cohort
    out = tmp_path_factory.mktemp("model") / "model"
    train_model(store, out, settings=settings(reference))
    return out


def test_the_held_out_sample_never_reaches_training(model: Path) -> None:
    header = json.loads((model / "model.json").read_text())
    # The H&E-only slide ("archive") has no counts: never trained on, nor needs holding out.
    assert header["samples"] == ["synth_00", "synth_01"] and header["holdout"] == ["synth_02"]
    assert all("synth_02" not in f["train"] + f["test"] for f in header["cv"]["folds"])
    subspot = json.loads((model / "subspot" / "subspot.json").read_text())
    assert subspot["samples"] == ["synth_00", "synth_01"] and subspot["bin_um"] == 16.0


def test_predicting_at_16_um_writes_one_observation_per_bin(
    cohort: tuple[Path, Path], model: Path, tmp_path: Path
) -> None:
    from tmescope.fusion.bin_head import member_outputs
    from tmescope.fusion.subspot_data import read_bin_sample
    from tmescope.fusion.subspot_model import SubspotModel

    store, reference = cohort
    out = predict_subspot(
        store, model, sample="synth_02", resolution_um=16.0, out=tmp_path / "p.h5ad"
    )
    maps = ad.read_h5ad(out)
    opened = CohortStore.open(store)
    bins = opened.read_bins("synth_02")
    np.testing.assert_allclose(maps.obsm["spatial"], bins.coords, rtol=0, atol=1e-3)
    populations = maps.obsm["populations"]
    cell_types = ad.read_h5ad(reference).obs["cell_type"].astype(str).unique()
    assert isinstance(populations, pd.DataFrame) and set(populations.columns) == set(cell_types)
    np.testing.assert_allclose(populations.to_numpy().sum(axis=1), 1.0, atol=1e-3)
    assert maps.layers["uncertainty"].shape == maps.shape and maps.n_vars > 0
    assert (maps.obsm["populations_std"].to_numpy() >= 0).all()
    assert maps.uns["subspot"]["bin_um"] == 16.0
    # Inside every measured spot's disc, the maps add up to what the spot measured: each bin
    # weighed by its cell density, as the spot measured shares of cells.
    subspot = SubspotModel.load(model / "subspot")
    sample = read_bin_sample(opened, "synth_02", reference=subspot.reference, bin_um=16.0)
    _, density = member_outputs(subspot.heads, subspot.reduce(sample.x))
    assert density is not None and (density > 0).all()
    values = populations.to_numpy()
    for spot in np.unique(sample.disc[sample.disc >= 0])[:20]:
        if np.isfinite(sample.measured[spot]).all():
            weight = density[sample.disc == spot]
            np.testing.assert_allclose(
                weight @ values[sample.disc == spot] / weight.sum(), sample.measured[spot],
                atol=1e-5,
            )  # fmt: skip
    assert (maps.obs["spot"] != "").sum() == (sample.disc >= 0).sum()


def test_an_h_and_e_only_slide_is_mapped_from_its_image_alone(
    cohort: tuple[Path, Path], model: Path, tmp_path: Path
) -> None:
    """Training skipped it (no counts: see the held-out test); its maps are the image's, at
    every bin, with nothing reconciled, and the spot-level head predicts its tiles."""
    from tmescope.jobs.predict import predict_sample

    store, _ = cohort
    maps = ad.read_h5ad(
        predict_subspot(store, model, sample="archive", resolution_um=16.0, out=tmp_path / "a.h5ad")
    )
    assert maps.n_obs == CohortStore.open(store).read_bins("archive").n and maps.n_obs > 50
    assert maps.uns["subspot"]["measured_spots"] == 0 and (maps.obs["spot"] == "").all()
    np.testing.assert_array_equal(
        maps.obsm["populations"].to_numpy(), maps.obsm["populations_image"].to_numpy()
    )
    assert "lowres" in maps.uns["spatial"]["archive"]["images"]
    tiles = ad.read_h5ad(predict_sample(store, model, sample="archive", out=tmp_path / "t.h5ad"))
    assert (tiles.obs["kind"] == "tile").all() and tiles.n_obs > 4
    assert "measured" not in tiles.layers and np.isfinite(tiles.X).all()


def test_a_bin_finer_than_the_tokens_is_refused_naming_them(
    cohort: tuple[Path, Path], model: Path, tmp_path: Path
) -> None:
    store, _ = cohort
    with pytest.raises(InvalidParameterError, match=r"finer than the encoder's tokens \(16 µm"):
        predict_subspot(store, model, sample="synth_02", resolution_um=4.0, out=tmp_path / "b.h5ad")
    assert not (tmp_path / "b.h5ad").exists()


def test_bad_training_inputs_are_refused_before_anything_is_written(
    cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    store, reference = cohort
    with pytest.raises(TrainingDataError, match="--holdout synth_9"):
        train_model(store, tmp_path / "a", settings=settings(reference, holdout=("synth_9",)))
    small = ad.read_h5ad(reference)
    keep = np.flatnonzero(small.obs["cell_type"].astype(str).to_numpy() != "osteoclast")
    rare = np.flatnonzero(small.obs["cell_type"].astype(str).to_numpy() == "osteoclast")[:4]
    small[np.r_[keep, rare]].write_h5ad(tmp_path / "small.h5ad")
    with pytest.raises(ReferenceDataError, match="fewer than 10 cells"):
        train_model(store, tmp_path / "b", settings=settings(tmp_path / "small.h5ad"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_without_a_reference_the_populations_are_the_marker_sets(
    cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    """With --target expression the spot-level head takes no gene sets nor reference, yet the
    sub-spot model still gets populations: the marker sets' (a reference's when given)."""
    store, _ = cohort
    out = tmp_path / "markers"
    with pytest.warns(TmescopeWarning, match="nk_cells"):
        train_model(store, out, settings=settings(None, target="expression"))
    header = json.loads((out / "subspot" / "subspot.json").read_text())
    assert header["populations_from"] == "markers" and header["counts_per_cell"] == []
    assert {"tumour", "fibroblasts", "t_cells"} <= set(header["populations"])
    assert not {"proliferation", "hypoxia"} & set(header["populations"])
    maps = ad.read_h5ad(
        predict_subspot(store, out, sample="synth_02", resolution_um=16.0, out=tmp_path / "p.h5ad")
    )
    assert list(maps.obsm["populations"].columns) == header["populations"]
    assert maps.n_vars == 0  # flat marker profiles predict no genes
    assert maps.uns["subspot"]["populations_from"] == "markers"
    assert "marker signal" in maps.uns["subspot"]["abundance"]
    shares = maps.obsm["populations"].to_numpy()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-4)
    # Where the image and the spots say tumour, the truth has tumour cells.
    cells = pd.read_csv(store.parent / "cohort" / "synth_02" / "cells.csv")
    tumour_cells = cKDTree(cells.loc[cells["cell_type"] == "tumour", ["x", "y"]].to_numpy())
    xy = np.asarray(maps.obsm["spatial"])
    near = np.isfinite(tumour_cells.query(xy, distance_upper_bound=40.0)[0])
    tumour = maps.obsm["populations"]["tumour"].to_numpy()
    assert tumour[near].mean() > 2 * tumour[~near].mean()


def test_interactions_on_sub_spot_bins_pool_and_map_the_pairs(
    cohort: tuple[Path, Path], model: Path, tmp_path: Path
) -> None:
    from tmescope.jobs.interfaces import InterfaceSettings, run_interfaces

    store, _ = cohort
    settings = InterfaceSettings(pairs=(("tumour", "t_cell"),), n_shifts=19)
    report = run_interfaces(
        store, model, samples=["synth_01", "synth_02"], settings=settings, out=tmp_path / "out"
    )
    rows = report.pairs()
    assert [(r["a"], r["b"]) for r in rows] == [("tumour", "t_cell")]
    assert set(rows[0]["per_sample"]) == {"synth_01", "synth_02"} and rows[0]["ratio"] > 0
    assert report.cohort is not None and report.samples[0].n_bins > 100
    names = {p.name for p in report.figures}
    assert {"interfaces_cohort.png", "interface_map_synth_02.png"} <= names
    assert all(p.stat().st_size > 1000 for p in report.figures)
    assert json.loads(json.dumps(report.to_json()))["null"].startswith("toroidal")
    from tmescope.jobs.report_sections import subspot_section

    part = subspot_section(report, held_out=("synth_02",))
    (head,) = part.index
    per_sample = [s for sample in ("synth_01", "synth_02") for s in part.sections_of(sample)]
    assert [s.title for s in per_sample] == [
        "Sub-spot maps (a training sample)", "Sub-spot maps (held out of training)"
    ]  # fmt: skip
    assert sum(s.html.count("<img") for s in (head, *per_sample)) == len(report.figures)


def test_the_cli_refuses_a_pair_naming_an_unknown_population(
    cohort: tuple[Path, Path], model: Path, tmp_path: Path
) -> None:
    from cli_calls import call_cli

    store, _ = cohort
    result = call_cli(
        "interactions", store, model, "--resolution", "16", "--pair", "tumour,dragon",
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unknown population 'dragon'" in errors[0], result.stderr
    assert not (tmp_path / "o").exists()


def test_the_model_fitted_from_the_store_equals_the_one_fitted_in_memory(
    cohort: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One sample in memory at a time, rows on disk: the same model as from samples in memory
    (every bin in the PCA, every spot in each step), and a fit started again resumes from its
    work folder without reading a sample."""
    import tmescope.fusion.subspot_data as subspot_data
    from tmescope.fusion.bin_head import BinHeadConfig, member_logits
    from tmescope.fusion.reference import load_reference
    from tmescope.fusion.subspot_fit import fit_subspot_from_store, fit_subspot_model, pca_quotas
    from tmescope.fusion.subspot_model import SubspotModel

    store, path = cohort
    opened = CohortStore.open(store)
    reference = load_reference(path, label_key="cell_type", min_cells=1)
    ids = ["synth_00", "synth_01"]
    config = BinHeadConfig(hidden=16, dropout=0.0, steps=30, n_members=2)
    samples = [subspot_data.read_bin_sample(opened, s, reference=reference, bin_um=16.0) for s in ids]
    in_memory = fit_subspot_model(samples, reference=reference, config=config, seed=4)

    def fit() -> object:
        return fit_subspot_from_store(
            opened, ids, reference=reference, bin_um=16.0, work=tmp_path / "work",
            config=config, seed=4,
        )  # fmt: skip

    streamed = fit()
    x = samples[0].x[:300]
    expected = member_logits(in_memory.heads, in_memory.reduce(x))
    got = member_logits(streamed.heads, streamed.reduce(x))  # type: ignore[attr-defined]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4)

    def unread(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed fit read a sample again")

    monkeypatch.setattr(subspot_data, "read_bin_sample", unread)
    again = fit()
    for a, b in zip(member_logits(again.heads, again.reduce(x)), got, strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(a, b)
    # Members kept by a fit of another head (no density output) are fitted again, not loaded.
    plain = BinHeadConfig(hidden=16, dropout=0.0, steps=30, n_members=2, cell_weighted=False)
    other = fit_subspot_from_store(
        opened, ids, reference=reference, bin_um=16.0, work=tmp_path / "work", config=plain,
        seed=4,
    )  # fmt: skip
    assert [h.cell_weighted for h in other.heads] == [False, False]  # type: ignore[attr-defined]
    # A model saved before the density output existed (no such key) loads as it was trained.
    other.save(tmp_path / "old")  # type: ignore[attr-defined]
    header = json.loads((tmp_path / "old" / "subspot.json").read_text())
    del header["config"]["cell_weighted"]
    (tmp_path / "old" / "subspot.json").write_text(json.dumps(header))
    old = SubspotModel.load(tmp_path / "old")
    assert not old.config.cell_weighted
    for a, b in zip(member_logits(old.heads, old.reduce(x)), member_logits(other.heads, other.reduce(x)), strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(a, b)
    # The PCA sees every bin of a small cohort, shares of its cap in a large one.
    assert pca_quotas([10, 30], cap=100) == [10, 30]
    assert pca_quotas([100, 300], cap=100) == [25, 75]


def test_a_samples_maps_are_saved_once_and_read_back_identical(
    cohort: tuple[Path, Path], model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The first call predicts and saves the maps in the store; the second predicts nothing
    and gives the same AnnData; `store verify` accepts the set and `store rm` takes it away."""
    import shutil

    from tmescope.jobs import subspot_maps
    from tmescope.jobs.predict_bins import subspot_anndata
    from tmescope.jobs.store import remove_samples

    store = tmp_path / "store.zarr"
    shutil.copytree(cohort[0], store)
    first = subspot_anndata(store, model, sample="synth_01", resolution_um=16.0)
    saved = list((store / "maps").glob("*/synth_01"))
    assert len(saved) == 1 and (saved[0] / "reconciled" / "zarr.json").is_file()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("predicted again although the maps are saved")

    monkeypatch.setattr(subspot_maps, "predict_maps", refuse)
    again = subspot_anndata(store, model, sample="synth_01", resolution_um=16.0)
    np.testing.assert_array_equal(again.X, first.X)
    np.testing.assert_array_equal(again.layers["uncertainty"], first.layers["uncertainty"])
    for key in ("spatial", "populations", "populations_image", "populations_std"):
        np.testing.assert_array_equal(np.asarray(again.obsm[key]), np.asarray(first.obsm[key]))
    pd.testing.assert_frame_equal(again.obs, first.obs)
    assert again.uns["subspot"] == first.uns["subspot"]
    assert CohortStore.open(store).verify() == []
    remove_samples(store, ["synth_01"])
    assert not list((store / "maps").glob("*/synth_01"))


def test_interfaces_run_again_take_up_every_kept_sample_and_give_the_same_json(
    cohort: tuple[Path, Path], model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A second run reads each sample's kept maps, statistics and figures (nothing is computed
    or drawn again but the pooled heatmap) and gives the same JSON bit for bit."""
    import shutil

    from tmescope.jobs import subspot_maps
    from tmescope.jobs.interfaces import InterfaceSettings, run_interfaces

    settings = InterfaceSettings(n_shifts=19)
    samples = ["synth_01", "archive"]
    store, out = tmp_path / "store.zarr", tmp_path / "out"
    shutil.copytree(cohort[0], store)
    first = run_interfaces(store, model, samples=samples, settings=settings, out=out)
    drawn = {p: p.stat().st_mtime_ns for p in first.figures}

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed again although kept")

    with monkeypatch.context() as patched:
        patched.setattr(subspot_maps, "predict_maps", refuse)
        patched.setattr("tmescope.jobs.interface_figures.draw_sample", refuse)
        patched.setattr("tmescope.analysis.adata_pairs.adata_pair_statistics", refuse)
        again = run_interfaces(store, model, samples=samples, settings=settings, out=out)
    assert json.dumps(again.to_json()) == json.dumps(first.to_json())
    kept = [p for p in again.figures if p.name != "interfaces_cohort.png"]  # pooled: drawn anew
    assert len(kept) == 8 and all(p.stat().st_mtime_ns == drawn[p] for p in kept)
    # Other pairs to map: the same statistics, the sample's figures drawn again.
    other = InterfaceSettings(n_shifts=19, pairs=(("tumour", "t_cell"),))
    with monkeypatch.context() as patched:
        patched.setattr(subspot_maps, "predict_maps", refuse)
        patched.setattr("tmescope.analysis.adata_pairs.adata_pair_statistics", refuse)
        mapped = run_interfaces(store, model, samples=["synth_01"], settings=other, out=out)
    assert mapped.samples[0].stats.zscore.tobytes() == first.samples[0].stats.zscore.tobytes()
    assert (out / "interface_map_synth_01.png").stat().st_mtime_ns != drawn[
        out / "interface_map_synth_01.png"
    ]
    assert CohortStore.open(store).verify() == []


# --- killed and taken up again -------------------------------------------------------------------

RESUMED = ("synth_00", "synth_01", "synth_02")


def _one_thread_reference(run: Callable[[], T]) -> T:
    """``run()`` on one thread of torch and BLAS, as the CLI children run (kill_harness)."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return run()
    finally:
        torch.set_num_threads(threads)


def _kill_when(args: list[str], cwd: Path, condition: Callable[[], bool]) -> None:
    """Start ``tmescope ARGS`` and SIGKILL it as soon as ``condition()`` holds."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from kill_harness import CHILD_ENV

    child = subprocess.Popen(
        [sys.executable, "-m", "tmescope", *args], cwd=cwd, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, **CHILD_ENV},
    )  # fmt: skip
    try:
        while not condition():
            assert child.poll() is None, "the command ended before it could be killed"
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()


def test_predict_killed_after_its_first_sample_resumes_to_the_files_dask_tasks_write(
    cohort: tuple[Path, Path], model: Path, tmp_path: Path
) -> None:
    """The reference: one Dask task per sample (in this process). The CLI, killed once its first
    file is written and run again, keeps that file and writes the others as the tasks did."""
    import shutil

    from distributed import LocalCluster

    from kill_harness import run_command
    from tmescope.jobs.predict_cohort import predict_samples

    for name in ("reference", "killed"):
        shutil.copytree(cohort[0], tmp_path / name / "store.zarr")
    reference = tmp_path / "reference"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:  # fmt: skip
        summaries = _one_thread_reference(lambda: predict_samples(
            reference / "store.zarr", model, out=reference / "maps", samples=RESUMED,
            resolution_um=16.0, scheduler=cluster.scheduler_address,
        ))  # fmt: skip
    assert [s.status for s in summaries] == ["written"] * len(RESUMED)
    folder = tmp_path / "killed"
    args = ["predict", "store.zarr", str(model), "--out", "maps", "--resolution", "16",
            *(f"--sample={s}" for s in RESUMED)]  # fmt: skip
    _kill_when(args, folder, lambda: any((folder / "maps").glob("*.h5ad")))
    finished = {p: p.stat().st_mtime_ns for p in (folder / "maps").glob("*.h5ad")}
    assert 1 <= len(finished) < len(RESUMED)
    run_command(args, folder)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # skipped, not redone
    for sid in RESUMED:
        got = ad.read_h5ad(folder / "maps" / f"{sid}.h5ad")
        want = ad.read_h5ad(reference / "maps" / f"{sid}.h5ad")
        np.testing.assert_array_equal(got.X, want.X)
        for key in want.obsm:
            np.testing.assert_array_equal(np.asarray(got.obsm[key]), np.asarray(want.obsm[key]))
        pd.testing.assert_frame_equal(got.obs, want.obs)
    assert CohortStore.open(folder / "store.zarr").verify() == []


def test_interactions_killed_after_a_sample_resume_to_the_json_dask_tasks_give(
    cohort: tuple[Path, Path], model: Path, tmp_path: Path
) -> None:
    """The reference: one Dask task per sample (in this process). The CLI, killed once its first
    sample's statistics are kept and run again, takes that sample up and prints the same JSON."""
    import shutil

    from distributed import LocalCluster

    from tmescope.jobs.interfaces import InterfaceSettings, run_interfaces

    for name in ("reference", "killed"):
        shutil.copytree(cohort[0], tmp_path / name / "store.zarr")
    reference = tmp_path / "reference"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:  # fmt: skip
        expected = _one_thread_reference(lambda: run_interfaces(
            reference / "store.zarr", model, samples=RESUMED,
            settings=InterfaceSettings(n_shifts=19), scheduler=cluster.scheduler_address,
        )).to_json()  # fmt: skip
    folder = tmp_path / "killed"
    args = ["interactions", "store.zarr", str(model), "--resolution", "16", "--perms", "19",
            *(f"--sample={s}" for s in RESUMED)]  # fmt: skip
    maps = folder / "store.zarr" / "maps"
    _kill_when(args, folder, lambda: any(maps.glob("*/*/pairs/[!.]*/zarr.json")))
    kept = {p: p.stat().st_mtime_ns for p in maps.glob("*/*/pairs/[!.]*/zarr.json")}
    assert 1 <= len(kept) < len(RESUMED)
    resumed = json.loads(_stdout([*args, "--json"], folder))
    assert resumed == json.loads(json.dumps(expected))
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # taken up, not redone
    assert CohortStore.open(folder / "store.zarr").verify() == []


def _stdout(args: list[str], cwd: Path) -> str:
    import os
    import subprocess
    import sys

    from kill_harness import CHILD_ENV

    done = subprocess.run(
        [sys.executable, "-m", "tmescope", *args], cwd=cwd, capture_output=True, text=True,
        timeout=600, env={**os.environ, **CHILD_ENV},
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout
