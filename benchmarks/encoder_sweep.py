"""How good the sub-spot maps get as the encoder improves: a simulated-encoder sweep.

    python benchmarks/encoder_sweep.py [--levels 0.003,0.01,…,inf] [--carries cells,shares]
                                       [--members 1] [--work DIR] [--no-diagnosis] [--json]
    python benchmarks/highres.py --sweep [the same options]   (the same run)

No pathology foundation model runs on this CPU machine, and ``test-vit-tiny`` (random weights)
tells the sub-spot model little about a bin's cells. The sweep puts a *simulated encoder* in its
place, a benchmarking device that lives here and never in ``src/``: each bin's feature is its
TRUE composition (from the sample's ``cells.csv``) through a fixed Gaussian mixing to the
stored width, plus white noise::

    feature = composition @ M + σ · ε      M (P, k) ~ N(0, 1 / P), fixed seed; ε ~ N(0, 1)

at a signal-to-noise level ``snr`` = (signal variance per feature, pooled over the cohort's
bins) / σ². Two encoders, ``--carries``:

- ``cells``: the composition is the number of cells of each type in the bin's 16 µm square, as
  an H&E shows them (nuclei, their number and look): a bin of glass or acellular tissue is
  zero, a dense nest large;
- ``shares``: the share of each type among the bin's cells, so the feature says nothing of how
  many cells a bin holds; a bin without cells takes the shares of its nearest bin with cells.
  An encoder blind to density, the sweep's first version: the sub-spot model's cell-weighted
  aggregate has nothing to learn its densities from.

Since the signal spans only P of the k dimensions, a linear read-out of one type sees about
``snr × k / P`` (k = 192, P = 9 here: 21 × ``snr``), hence levels below 1.

The truth only *fakes* the features, of every sample alike (training and held-out): the model is
still trained from the measured spots (deconvolution of their counts against the reference) and
reconciled with them, exactly as ``train --resolution 16`` / ``predict --resolution 16`` do on
real features. Patch (spot) embeddings stay ``test-vit-tiny``'s: the sub-spot model does not
read them (the spot-level head does, and it plays no part in the maps).

Cohort as in ``highres.py`` (seed 31): three training samples of ``--spots`` spots (800), the
fourth held out of training. For the test encoder and every level, on the held-out sample's
bins with cells: mean Pearson and pair log error (30 µm) of the maps (``model``: calibrated and
reconciled; ``image_only``: before reconciliation), of the oracle spot map, and what the
features carry: a ridge fitted *with the truth* on the training samples' bins (the model's own
inputs: feature and context rings, standardised per sample), a diagnostic ceiling beside the
weakly supervised maps, never a map tmescope makes. The sub-spot model and the final spot head
have ``--members`` members (1 by default, as ``compare.py``, to keep the sweep near half an hour
on two cores; ``train`` fits 3 sub-spot members by default).

Then, at the noise-free level of the ``cells`` encoder, :func:`diagnose` says where what is lost
goes: the same fit with its spots' compositions replaced by truer ones (the deconvolution's
part; the part of gathering a spot's cells by bins), and the head supervised bin by bin (its
ceiling).

Everything is cached under ``--work`` (default benchmarks/results/encoder_sweep): the cohort,
the embedded store, one ``<encoder>_<level>.m<members>.json`` per level and
``diagnosis.m<members>.json``,
so a rerun computes only what is missing (each level's store copy is removed once scored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from tmescope.analysis.map_scores import (
    bin_truth,
    map_scores,
    mean_pearson,
    nearest_painted,
    pair_ratios,
)

SEED = 31  # the cohort of highres.py
MIXING_SEED = 2026  # the simulated encoder's mixing: one encoder for every sample and level
LEVELS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, math.inf)
CARRIES = ("cells", "shares")  # what the simulated encoder's features hold (module docstring)
RADIUS_UM = 30.0  # co-location radius of the pair ratios (as highres.py)
TEST_ENCODER = "test-vit-tiny"


def level_name(snr: float) -> str:
    return "inf" if math.isinf(snr) else f"{snr:g}"


def bin_compositions(
    xy: np.ndarray, cells: pd.DataFrame, types: list[str], bin_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, P)`` each bin's share of each type among its cells, a bin without cells taking its
    nearest such bin's; and ``(n,)`` whether the bin holds cells."""
    truth = bin_truth(xy, cells, types, bin_px)
    full = np.isfinite(truth).all(axis=1)
    if not full.any():
        raise ValueError("no bin holds a cell: are cells.csv and the bins in the same pixels?")
    _, nearest = cKDTree(xy[full]).query(xy[~full])
    out = truth.copy()
    out[~full] = truth[full][nearest]
    return out, full


def bin_cell_counts(
    xy: np.ndarray, cells: pd.DataFrame, types: list[str], bin_px: float
) -> np.ndarray:
    """``(n, P)`` the number of cells of each type inside each bin's square (as
    :func:`cells_per_bin` counts them)."""
    positions = cells[["x", "y"]].to_numpy(float)
    _, nearest = cKDTree(xy).query(positions, p=np.inf)
    inside = np.abs(positions - xy[nearest]).max(axis=1) <= bin_px / 2
    kind = pd.Categorical(cells["cell_type"].astype(str), categories=types).codes
    keep = inside & (kind >= 0)
    counts = np.zeros((len(xy), len(types)))
    np.add.at(counts, (nearest[keep], kind[keep]), 1.0)
    return counts


def mixing_matrix(n_types: int, dim: int, *, seed: int = MIXING_SEED) -> np.ndarray:
    """``(P, k)`` the simulated encoder's fixed Gaussian mixing, entries N(0, 1 / P)."""
    return np.random.default_rng(seed).normal(0.0, 1.0 / math.sqrt(n_types), (n_types, dim))


def noise_sd(signals: list[np.ndarray], snr: float) -> float:
    """σ that makes (signal variance per feature, pooled over ``signals``' rows) / σ² = ``snr``."""
    if math.isinf(snr):
        return 0.0
    variance = float(np.vstack(signals).var(axis=0).mean())
    return math.sqrt(variance / snr)


def simulated_features(
    composition: np.ndarray, mixing: np.ndarray, *, sd: float, seed: int
) -> np.ndarray:
    """``(n, k)`` float16: ``composition @ mixing`` plus N(0, sd²) noise of its own seed."""
    noise = np.random.default_rng(seed).normal(0.0, 1.0, (len(composition), mixing.shape[1]))
    return (composition @ mixing + sd * noise).astype(np.float16)


def write_bin_features(store: Path, sample_id: str, features: np.ndarray) -> None:
    """Overwrite a stored sample's bin features (each row chunk's bins at the front of its zarr
    chunk, as :mod:`tmescope.store.bins` lays them out)."""
    import zarr

    from tmescope.store import CohortStore
    from tmescope.store.bins import BIN_FEATURES, chunk_bin_rows

    opened = CohortStore.open(store, mode="r")
    layout = opened.sample_record(sample_id).bins
    offsets = opened.read_bins(sample_id).offsets
    if layout is None or features.shape != (layout.n_bins, layout.dim):
        raise ValueError(f"{sample_id}: features {features.shape} do not fit the stored bins")
    array = zarr.open_array(opened.sample_path(sample_id) / BIN_FEATURES, mode="r+")
    for chunk in range(len(offsets) - 1):
        table, rows = chunk_bin_rows(layout, offsets, chunk)
        array[rows] = features[table]


def cohort_and_store(work: Path, *, spots: int) -> tuple[list[Path], Path]:
    """The synthetic cohort and its store embedded with the test encoder (16 µm bins), cached."""
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.jobs.embed import SampleInput
    from tmescope.workflows import embed_samples, fullres_image_of

    root = work / "cohort"
    if not (work / "cohort.done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        write_synthetic_cohort(root, n_samples=4, n_spots=spots, seed=SEED)
        (work / "cohort.done").write_text("")
    folders = sorted(p for p in root.iterdir() if (p / "cells.csv").is_file())
    store = work / "base.zarr"
    if not (work / "base.done").is_file():
        inputs = [SampleInput(d, image=fullres_image_of(d)) for d in folders]
        embed_samples(inputs, store=store, encoder=TEST_ENCODER, device="cpu")
        (work / "base.done").write_text("")
    return folders, store


def fake_store(base: Path, out: Path, features: dict[str, np.ndarray]) -> None:
    """A copy of ``base`` (without saved maps) whose bin features are ``features``."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("maps"))
    for sample_id, values in features.items():
        write_bin_features(out, sample_id, values)


def level_features(
    store: Path, folders: list[Path], snr: float, *, carries: str = "cells"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every sample's simulated features at ``snr`` from the encoder that ``carries`` cells or
    shares (module docstring), and what they were made of."""
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="r")
    cells = {d.name: pd.read_csv(d / "cells.csv") for d in folders}
    types = sorted(set().union(*(set(c["cell_type"].astype(str)) for c in cells.values())))
    compositions, empty = {}, {}
    dim = 0
    for sample_id, table in cells.items():
        layout = opened.sample_record(sample_id).bins
        assert layout is not None
        dim = layout.dim
        xy = np.asarray(opened.read_bins(sample_id).coords, dtype=float)
        shares, full = bin_compositions(xy, table, types, layout.bin_px)
        compositions[sample_id] = (
            bin_cell_counts(xy, table, types, layout.bin_px) if carries == "cells" else shares
        )
        empty[sample_id] = round(float(1 - full.mean()), 4)
    mixing = mixing_matrix(len(types), dim)
    sd = noise_sd([c @ mixing for c in compositions.values()], snr)
    features = {
        s: simulated_features(c, mixing, sd=sd, seed=MIXING_SEED + 1 + i)
        for i, (s, c) in enumerate(sorted(compositions.items()))
    }
    about = {
        "carries": carries, "types": types, "dim": dim, "noise_sd": round(sd, 5),
        "empty_bins": empty,
    }  # fmt: skip
    return features, about


def train_and_predict(
    store: Path, model: Path, *, reference: Path, held_out: str, members: int
) -> Any:
    """``train --resolution 16`` (ridge spot head; ``members`` heads of the final spot head and
    sub-spot members, 3 at most) on every sample but ``held_out``, then its maps (``predict
    --resolution 16``, populations only)."""
    from tmescope.jobs.predict_bins import subspot_anndata
    from tmescope.jobs.train import TrainSettings, train_model

    settings = TrainSettings(
        reference=reference, resolution_um=16.0, holdout=(held_out,), models=("ridge",),
        n_members=members, cv_members=1, n_genes=20, device="cpu",
    )  # fmt: skip
    start = time.perf_counter()
    train_model(store, model, settings=settings)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    maps = subspot_anndata(store, model, sample=held_out, resolution_um=16.0, expression=False)
    return maps, train_s, time.perf_counter() - start


def model_inputs(store: Path, sample_id: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The sub-spot model's inputs of a sample (feature and context rings, standardised per
    sample), its bins' centres and their size in px."""
    from tmescope.fusion.bin_geometry import context_operators, with_context
    from tmescope.fusion.bin_head import standardise_per_sample
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="r")
    bins = opened.read_bins(sample_id)
    x = with_context(opened.read_bin_features(sample_id), context_operators(bins.cells))
    return standardise_per_sample(x), np.asarray(bins.coords, float), float(bins.bin_px)


def features_ceiling(
    store: Path, folders: list[Path], types: list[str], held_out: str
) -> dict[str, Any]:
    """What the features carry: a ridge from the model's inputs to the cells' truth, fitted on
    the training samples' bins with cells, its mean Pearson on the held-out sample's."""
    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge

    xs, ys, test = [], [], None
    for folder in folders:
        x, xy, bin_px = model_inputs(store, folder.name)
        truth = bin_truth(xy, pd.read_csv(folder / "cells.csv"), types, bin_px)
        keep = np.isfinite(truth).all(axis=1)
        if folder.name == held_out:
            test = (x[keep], truth[keep])
        else:
            xs.append(x[keep])
            ys.append(truth[keep])
    assert test is not None
    with warnings.catch_warnings():  # noise-free features are exactly collinear: that is fine
        warnings.simplefilter("ignore", LinAlgWarning)
        ridge = Ridge(alpha=10.0).fit(np.vstack(xs), np.vstack(ys))
    return {"pearson": round(mean_pearson(ridge.predict(test[0]), test[1]), 4)}


def score_maps(maps: Any, folder: Path, mpp: float) -> dict[str, Any]:
    """Mean Pearson and pair log error of the maps, before reconciliation, and of the oracle spot
    map, on the held-out sample's bins with cells."""
    types = list(maps.obsm["populations"].columns)
    xy = np.asarray(maps.obsm["spatial"], dtype=float)
    bin_px = float(maps.uns["subspot"]["bin_um"]) / mpp
    truth = bin_truth(xy, pd.read_csv(folder / "cells.csv"), types, bin_px)
    keep = np.isfinite(truth).all(axis=1)
    spots = pd.read_csv(folder / "ground_truth.csv")
    estimates = {
        "model": maps.obsm["populations"].to_numpy(float),
        "image_only": maps.obsm["populations_image"].to_numpy(float),
        "oracle_spot_map": nearest_painted(
            xy, spots[["x", "y"]].to_numpy(float), spots[types].to_numpy(float)
        ),
    }
    radius = RADIUS_UM / mpp
    true_pairs = pair_ratios(xy[keep], truth[keep], radius)
    return {
        name: map_scores(xy[keep], est[keep], truth[keep], true_pairs, radius)
        for name, est in estimates.items()
    }


def run_level(
    work: Path, folders: list[Path], base: Path, snr: float | None, *, members: int,
    carries: str = "cells",
) -> dict[str, Any]:  # fmt: skip
    """One row of the sweep (``snr`` None: the test encoder itself), cached in
    ``<name>.m<members>.json``."""
    from tmescope.store import CohortStore

    name = TEST_ENCODER if snr is None else f"{carries}_snr_{level_name(snr)}"
    done = work / f"{name}.m{members}.json"
    if done.is_file():
        return json.loads(done.read_text())
    start = time.perf_counter()
    held_out = folders[-1].name
    about: dict[str, Any] = {}
    store = base
    if snr is not None:
        features, about = level_features(base, folders, snr, carries=carries)
        store = work / f"{name}.zarr"
        fake_store(base, store, features)
    model = work / f"{name}_model"
    shutil.rmtree(model, ignore_errors=True)
    maps, train_s, predict_s = train_and_predict(
        store, model, reference=work / "cohort" / "reference.h5ad", held_out=held_out,
        members=members,
    )  # fmt: skip
    mpp = float(CohortStore.open(store, mode="r").sample_record(held_out).meta.mpp)
    types = list(maps.obsm["populations"].columns)
    result = {
        "level": name,
        "carries": None if snr is None else carries,
        "snr": None if snr is None else ("inf" if math.isinf(snr) else snr),
        "members": members,
        **score_maps(maps, folders[-1], mpp),
        "features_ridge_truth": features_ceiling(store, folders, types, held_out),
        "temperature": maps.uns["subspot"].get("temperature"),
        "train_s": round(train_s, 1),
        "predict_s": round(predict_s, 1),
        "level_s": round(time.perf_counter() - start, 1),
        **({"simulated": about} if about else {}),
    }
    done.write_text(json.dumps(result, indent=1, default=str))
    if snr is not None:  # the copy is only these features: keep the figures, not the bytes
        shutil.rmtree(store, ignore_errors=True)
    return result


def cells_per_bin(xy: np.ndarray, cells: pd.DataFrame, bin_px: float) -> np.ndarray:
    """``(n,)`` the number of cells inside each bin's square (as :func:`bin_truth` counts)."""
    positions = cells[["x", "y"]].to_numpy(float)
    _, nearest = cKDTree(xy).query(positions, p=np.inf)
    inside = np.abs(positions - xy[nearest]).max(axis=1) <= bin_px / 2
    return np.bincount(nearest[inside], minlength=len(xy)).astype(float)


DIAGNOSED = ("measured", "true_spots", "cell_weighted_bins", "bin_means", "own_bins")


def diagnose(work: Path, folders: list[Path], base: Path, *, members: int) -> dict[str, Any]:
    """What the method loses with perfect features (noise-free level), cached in
    ``diagnosis.m<members>.json``: the same sub-spot fit (in memory, as ``train`` fits it) with
    its spots' compositions replaced by truer ones, each also used to reconcile.

    - ``measured``: the spots' deconvolution, as the sweep (and ``train``) use;
    - ``true_spots``: each spot's true share of the cells whose centre lies in its disc (what
      the deconvolution's error costs);
    - ``cell_weighted_bins``: the share of the cells in the bins under its disc (each bin's
      cells weighed by the share of its square the disc covers): a spot's cells, but gathered
      by bins as the model gathers them;
    - ``bin_means``: the mean of the compositions of the bins of its disc weighed by area alone,
      a target that the model's density has nothing to add to (a bin weighs the same whatever
      its number of cells);
    - ``own_bins``: every bin with cells a "spot" of its own, its truth the target: the head
      fully supervised, its ceiling on these features (image only: nothing to reconcile with).

    Each gives the maps (``model``: calibrated, reconciled), the image's (``image_only``), the
    image's at temperature 1 and the temperature. Truth as a target appears here only, as a
    diagnostic; never in the sweep's maps.
    """
    done = work / f"diagnosis.m{members}.json"
    if done.is_file():
        return json.loads(done.read_text())
    from dataclasses import replace

    from tmescope.fusion.bin_geometry import context_operators, owner_discs, with_context
    from tmescope.fusion.bin_head import BinHeadConfig, member_logits, standardise_per_sample
    from tmescope.fusion.calibration import tempered_shares
    from tmescope.fusion.cohort import read_spot_table
    from tmescope.fusion.reference import load_reference
    from tmescope.fusion.subspot_data import read_bin_sample
    from tmescope.fusion.subspot_fit import fit_subspot_model
    from tmescope.fusion.subspot_model import predict_bins
    from tmescope.store import CohortStore

    start = time.perf_counter()
    opened = CohortStore.open(base, mode="r")
    reference = load_reference(work / "cohort" / "reference.h5ad", label_key="cell_type",
                               min_cells=1)  # fmt: skip
    types = list(reference.cell_types)
    features, _ = level_features(base, folders, math.inf)
    samples, targets = {}, {}
    for folder in folders:
        sample_id = folder.name
        sample = read_bin_sample(opened, sample_id, reference=reference, bin_um=16.0)
        cells_table = pd.read_csv(folder / "cells.csv")
        lattice = context_operators(opened.read_bins(sample_id).cells)
        x = standardise_per_sample(with_context(features[sample_id], lattice))
        bin_px = 16.0 / sample.mpp
        composition, full = bin_compositions(sample.xy, cells_table, types, bin_px)
        n_cells = cells_per_bin(sample.xy, cells_table, bin_px)
        spots = pd.read_csv(folder / "ground_truth.csv").set_index("barcode")
        spots = spots.reindex(read_spot_table(opened, sample_id).barcodes)
        in_disc = sample.discs @ n_cells
        samples[sample_id] = replace(sample, x=x)
        targets[sample_id] = {
            "measured": sample.measured,
            "true_spots": np.where(
                spots[["n_cells"]].to_numpy() > 0, spots[types].to_numpy(), np.nan
            ),
            "cell_weighted_bins": np.where(
                (in_disc > 0)[:, None],
                sample.discs
                @ (n_cells[:, None] * composition)
                / np.maximum(in_disc, 1e-12)[:, None],
                np.nan,
            ),
            "bin_means": np.where(
                (np.diff(sample.discs.indptr) > 0)[:, None], sample.discs @ composition, np.nan
            ),
            "own_bins": np.where(full[:, None], composition, np.nan),
        }
    held_out = folders[-1].name
    test = samples[held_out]
    truth = bin_truth(test.xy, pd.read_csv(folders[-1] / "cells.csv"), types, 16.0 / test.mpp)
    keep = np.isfinite(truth).all(axis=1)
    radius = RADIUS_UM / test.mpp
    true_pairs = pair_ratios(test.xy[keep], truth[keep], radius)
    measured, exact = targets[held_out]["measured"], targets[held_out]["true_spots"]
    both = np.isfinite(measured).all(axis=1) & np.isfinite(exact).all(axis=1)
    result: dict[str, Any] = {
        "members": members,
        "measured_at_spots": {
            "pearson": round(mean_pearson(measured[both], exact[both]), 4),
            "mean_abs_error": round(float(np.abs(measured[both] - exact[both]).mean()), 4),
        },
    }
    config = BinHeadConfig(n_members=min(members, 3))
    for target in DIAGNOSED:
        training = []
        for folder in folders[:-1]:
            sample = samples[folder.name]
            if target == "own_bins":  # each bin its own disc
                own = np.arange(len(sample.xy))
                sample = replace(sample, disc=own, discs=owner_discs(own, len(own)))
            training.append(replace(sample, measured=targets[folder.name][target]))
        model = fit_subspot_model(training, reference=reference, config=config, seed=0)
        spots = targets[held_out]["measured" if target == "own_bins" else target]
        prediction = predict_bins(model, replace(test, measured=spots))
        at_one, _ = tempered_shares(member_logits(model.heads, model.reduce(test.x)), 1.0)
        maps = {"image_only": prediction.image, "image_t1": at_one}
        if target != "own_bins":
            maps["model"] = prediction.reconciled
        result[target] = {
            name: map_scores(test.xy[keep], est[keep], truth[keep], true_pairs, radius)
            for name, est in maps.items()
        }
        result[target]["temperature"] = round(float(prediction.temperature), 3)
    result["diagnosis_s"] = round(time.perf_counter() - start, 1)
    done.write_text(json.dumps(result, indent=1))
    return result


def run_sweep(
    work: Path, *, levels: tuple[float, ...] = LEVELS, spots: int = 800, members: int = 1,
    diagnosis: bool = True, carries: tuple[str, ...] = CARRIES,
) -> dict[str, Any]:  # fmt: skip
    """The test encoder and every level of every simulated encoder (``carries``), on one cached
    cohort; the figures of docs/benchmarks.md. With ``diagnosis``, what the method loses at the
    noise-free level (:func:`diagnose`)."""
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    folders, base = cohort_and_store(work, spots=spots)
    rows = [run_level(work, folders, base, None, members=members)]
    rows += [
        run_level(work, folders, base, snr, members=members, carries=kind)
        for kind in carries
        for snr in levels
    ]
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "cohort": {"seed": SEED, "spots": spots, "held_out": folders[-1].name},
        "members": members,
        "oracle_spot_map": rows[0]["oracle_spot_map"],
        "levels": rows,
    }
    if diagnosis:
        result["diagnosis"] = diagnose(work, folders, base, members=members)
    result["sweep_s"] = round(time.perf_counter() - start, 1)
    return result


def print_table(result: dict[str, Any]) -> None:
    oracle = result["oracle_spot_map"]
    print(f"oracle spot map: Pearson {oracle['pearson']}, pair error {oracle['pair_log_error']}")
    print("level             maps r  image r  ridge r  pairs  × oracle  level_s")
    for row in result["levels"]:
        ratio = row["model"]["pair_log_error"] / oracle["pair_log_error"]
        print(
            f"{row['level']:<16}  {row['model']['pearson']:6.3f}  {row['image_only']['pearson']:7.3f}"
            f"  {row['features_ridge_truth']['pearson']:7.3f}  {row['model']['pair_log_error']:5.3f}"
            f"  {ratio:8.2f}  {row['level_s']:7.1f}"
        )
    for key, value in result.get("diagnosis", {}).items():
        print(f"diagnosis {key}: {value}")


def parse_levels(value: str) -> tuple[float, ...]:
    return tuple(float(v) for v in value.split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep's options (shared with ``highres.py --sweep``)."""
    parser.add_argument("--levels", type=parse_levels, default=LEVELS,
                        help="signal-to-noise levels, comma-separated (inf: no noise)")  # fmt: skip
    parser.add_argument("--carries", type=lambda v: tuple(v.split(",")), default=CARRIES,
                        help="simulated encoders: cells (per type, density visible), shares")  # fmt: skip
    parser.add_argument("--members", type=int, default=1,
                        help="sub-spot members (and final spot heads); 3 is train's default")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/encoder_sweep"))
    parser.add_argument("--no-diagnosis", action="store_true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--spots", type=int, default=800)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run_sweep(
        args.work, levels=args.levels, spots=args.spots, members=args.members,
        diagnosis=not args.no_diagnosis, carries=args.carries,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
