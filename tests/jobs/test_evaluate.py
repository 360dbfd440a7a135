"""Cell-level truth end to end: synth's cells.h5ad → pseudospots → embed from the AnnData +
image → train → evaluate, and evaluate's figures against the benchmark's own computation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from factories import copy_beside_its_cohort
from tmescope.analysis.map_scores import bin_truth, map_scores, pair_ratios
from tmescope.errors import InvalidParameterError
from tmescope.jobs.embed import TableInput
from tmescope.jobs.evaluate import evaluate_sample
from tmescope.jobs.predict_bins import subspot_anndata
from tmescope.jobs.pseudospots import pseudospots_from_file
from tmescope.jobs.train import TrainSettings, train_model
from tmescope.workflows import embed_samples

MPP = 0.5


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, bins_store: Path) -> dict[str, Path]:
    """Three synthetic samples (a copy of the session's ``bins_store``); the third also as
    pseudo-spots of its cells (``ps02``), embedded from the AnnData + image; a model trained on
    the first two."""

    root = tmp_path_factory.mktemp("evaluate")
    store = copy_beside_its_cohort(bins_store, root)
    third = root / "cohort" / "synth_02"
    image = next(third.glob("*_he.tif"))
    pseudospots_from_file(third / "cells.h5ad", out=root / "ps02.h5ad", mpp=MPP, image=image)
    item = TableInput(root / "ps02.h5ad", image=image, mpp=MPP, sample_id="ps02")
    embed_samples([item], store=store, encoder="test-vit-tiny", device="cpu")
    settings = TrainSettings(
        models=("ridge",), n_genes=10, n_members=2, device="cpu",
        reference=root / "cohort" / "reference.h5ad", resolution_um=16.0,
        holdout=("synth_02", "ps02"),
    )  # fmt: skip
    train_model(store, root / "model", settings=settings)
    return {"store": store, "model": root / "model", "sample": third, "root": root}


def test_evaluate_gives_the_benchmarks_figures_on_a_synthetic_section(
    pipeline: dict[str, Path],
) -> None:
    """The model's and the oracle's scores equal those computed as benchmarks/highres.py does
    (the oracle from ground_truth.csv, whose fractions are the cells of each spot's disc)."""
    sample_dir = pipeline["sample"]
    scores = evaluate_sample(
        pipeline["store"], pipeline["model"], sample="synth_02", cells=sample_dir / "cells.csv"
    )
    maps = subspot_anndata(
        pipeline["store"], pipeline["model"], sample="synth_02", resolution_um=16.0,
        expression=False,
    )  # fmt: skip
    types = scores["types"]
    xy = np.asarray(maps.obsm["spatial"], float)
    truth = bin_truth(xy, pd.read_csv(sample_dir / "cells.csv"), types, 16.0 / MPP)
    keep = np.isfinite(truth).all(axis=1)
    spots = pd.read_csv(sample_dir / "ground_truth.csv")
    _, nearest = cKDTree(spots[["x", "y"]].to_numpy(float)).query(xy)
    true_pairs = pair_ratios(xy[keep], truth[keep], 30.0 / MPP)
    for name, est in (
        ("model", maps.obsm["populations"][types].to_numpy(float)),
        ("oracle_spot", spots[types].to_numpy(float)[nearest]),
    ):
        expected = map_scores(xy[keep], est[keep], truth[keep], true_pairs, 30.0 / MPP)
        assert scores["maps"][name] == pytest.approx(expected["pearson"], abs=1e-6)
        assert scores["pairs"][f"log_ratio_error_{name}"] == pytest.approx(
            expected["pair_log_error"], abs=1e-6
        )
    assert scores["bins"] == int(keep.sum()) and scores["cells"]["cell_type_from"].startswith("the")


def test_pseudospots_embed_from_an_anndata_and_are_scored_against_their_cells(
    pipeline: dict[str, Path],
) -> None:
    result = run_cli(
        "evaluate", pipeline["store"], pipeline["model"], "--sample", "ps02",
        "--cells", pipeline["sample"] / "cells.h5ad", "--resolution", "16", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    for key in ("model", "oracle_spot", "measured_painted", "measured_interpolated"):
        assert -1 <= scores["maps"][key] <= 1
    assert scores["pairs"]["log_ratio_error_model"] >= 0
    # The pseudo-spots are the measured spots: each measured spot's composition is in its disc.
    assert scores["maps"]["oracle_spot"] > 0.3


def test_cell_types_are_transferred_from_the_reference_when_the_table_has_none(
    pipeline: dict[str, Path], tmp_path: Path
) -> None:
    cells = ad.read_h5ad(pipeline["sample"] / "cells.h5ad")
    truth = cells.obs["cell_type"].astype(str).to_numpy()
    del cells.obs["cell_type"]
    cells.write_h5ad(tmp_path / "untyped.h5ad")
    scores = evaluate_sample(
        pipeline["store"], pipeline["model"], sample="ps02", cells=tmp_path / "untyped.h5ad"
    )
    assert scores["cells"]["cell_type_from"].startswith("transferred")
    from tmescope.fusion.type_transfer import transfer_cell_types
    from tmescope.jobs.subspot_maps import load_predictor

    reference = load_predictor(pipeline["model"]).subspot.reference
    import scipy.sparse as sp

    labels = transfer_cell_types(sp.csr_matrix(cells.X), list(cells.var_names), reference)
    typed = labels != ""
    assert typed.mean() > 0.95
    assert (labels[typed] == truth[typed]).mean() > 0.8


def test_cells_of_another_section_are_refused_naming_the_overlap(
    pipeline: dict[str, Path], tmp_path: Path
) -> None:
    cells = pd.read_csv(pipeline["sample"] / "cells.csv")
    cells.assign(x=cells["x"] + 1e6).to_csv(tmp_path / "far.csv", index=False)
    with pytest.raises(InvalidParameterError, match="lie on synth_02's bins"):
        evaluate_sample(
            pipeline["store"], pipeline["model"], sample="synth_02", cells=tmp_path / "far.csv"
        )
    result = run_cli(
        "evaluate", pipeline["store"], pipeline["model"], "--sample", "synth_02",
        "--cells", tmp_path / "far.csv",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "lie on synth_02's bins" in result.stderr


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tmescope", *map(str, args)], capture_output=True, text=True
    )
