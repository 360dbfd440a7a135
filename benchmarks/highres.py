"""Sub-spot maps: quality against the cells' truth, and what the bins cost.

    python benchmarks/highres.py [--spots 5000] [--json]
    python benchmarks/highres.py --sweep [--levels …] [--carries …] [--members 1] [--json]

One synthetic cohort (seed 31): three training samples of 800 spots, one held-out sample of
800 spots (kept out of training with ``holdout``), and one capture-area-sized sample of
``--spots`` spots (5,000 spots at 100 µm pitch: about the 6.5 × 6.5 mm of a Visium capture
area, ~165,000 bins of 16 µm). All embedded with ``test-vit-tiny`` on the CPU.

- quality (held-out sample, 16 µm bins, truth = share of each type among the cells of a bin):
  mean Pearson over populations of the model's map, of the *oracle spot map* (each bin takes
  the true composition of its nearest spot), of the measured deconvolution painted the same way
  and of its Gaussian interpolation (σ = 50 µm), and of the spot-level head on its grid (the
  GATv2 head's predicted cell-type proportions at spots and at 55 µm grid tiles, each bin
  painted with its nearest); and the median |log(R / R_truth)| of pair co-location ratios at
  30 µm for each. Beside them, the same error for the spot-level statistics of today: the ratio
  computed on the spots themselves (each spot's measured composition, or its dominant type as a
  one-hot label, neighbours within 1.5 spot pitches);
- ``quality_markers``: the same sub-spot model trained without a reference, its populations the
  default marker gene sets (shares of marker signal; sets of one cell type summed, as
  :data:`MARKER_TYPES` says), against the true shares of cells and the oracle on the same types;
- ``embed_ratio``: seconds embedding the capture-area sample with sub-spot bins over seconds
  without (same encoder, same process, best of two each);
- ``store_mb_per_capture_area``: bytes on disk of that sample with bins, scaled to 165,000 bins;
- ``train_s``: ``train --resolution 16`` (cross-validation of the head alone, then the final
  head and the sub-spot model) on the three training samples;
- ``predict_s`` / ``predict_peak_rss_mb``: ``tmescope predict --resolution 16`` of that sample
  in a child process (wall time, peak resident memory);
- ``interfaces_s``: ``run_interfaces`` on that sample: its maps read back from the store (saved
  there by the prediction before), then 199 toroidal shifts over every pair.

With ``--sweep``, instead: how good the maps get as the encoder improves, a simulated encoder
at several signal-to-noise levels beside ``test-vit-tiny`` (``benchmarks/encoder_sweep.py``,
which says how; its cohort and store are cached under ``--work``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from encoder_sweep import add_arguments, print_table, run_sweep
from scipy.spatial import cKDTree

from tmescope.analysis.map_scores import (
    bin_truth,
    gaussian_interpolated,
    map_scores,
    pair_log_error,
    pair_ratios,
)
from tmescope.datasets import write_synthetic_cohort
from tmescope.jobs.embed import EmbedSettings, SampleInput
from tmescope.jobs.interfaces import run_interfaces
from tmescope.jobs.predict import predict_sample
from tmescope.jobs.train import TrainSettings, train_model
from tmescope.store import CohortStore
from tmescope.workflows import embed_samples, fullres_image_of

CAPTURE_AREA_BINS = 165_000  # 6.5 × 6.5 mm of tissue in 16 µm bins
RADIUS_UM = 30.0  # co-location radius of the pair ratios
GRID_UM = 55.0  # the spot-level head's grid of tiles between the spots (baseline d)


def quality(
    store: Path, prediction: Path, sample_dir: Path, mpp: float, grid_prediction: Path
) -> dict[str, Any]:
    import anndata as ad

    maps = ad.read_h5ad(prediction)
    types = list(maps.obsm["populations"].columns)
    xy = np.asarray(maps.obsm["spatial"], dtype=float)
    bin_px = float(maps.uns["subspot"]["bin_um"]) / mpp
    truth = bin_truth(xy, pd.read_csv(sample_dir / "cells.csv"), types, bin_px)
    keep = np.isfinite(truth).all(axis=1)
    spots = pd.read_csv(sample_dir / "ground_truth.csv")
    _, nearest = cKDTree(spots[["x", "y"]].to_numpy(float)).query(xy)
    measured = _measured_at_spots(maps, spots, types)
    spot_xy = spots[["x", "y"]].to_numpy(float)
    interpolated = gaussian_interpolated(xy, spot_xy, measured, 50.0 / mpp)  # σ 50 µm
    estimates = {
        "model": maps.obsm["populations"].to_numpy(float),
        "image_only": maps.obsm["populations_image"].to_numpy(float),
        "oracle_spot_map": spots[types].to_numpy(float)[nearest],
        "measured_painted": np.nan_to_num(measured[nearest]),
        "measured_interpolated": interpolated,
        "head_on_grid": _grid_painted(ad.read_h5ad(grid_prediction), xy, types),
    }
    true_pairs = pair_ratios(xy[keep], truth[keep], RADIUS_UM / mpp)
    table = {}
    for name, est in estimates.items():
        table[name] = map_scores(xy[keep], est[keep], truth[keep], true_pairs, RADIUS_UM / mpp)
    known = np.isfinite(measured).all(axis=1)
    pitch = float(np.median(cKDTree(spot_xy).query(spot_xy, k=2)[0][:, 1]))
    dominant = np.eye(len(types))[np.nan_to_num(measured).argmax(axis=1)]
    for name, est in (("spot_level_measured", measured), ("spot_level_dominant", dominant)):
        pairs = pair_ratios(spot_xy[known], np.nan_to_num(est[known]), 1.5 * pitch)
        error = pair_log_error(pairs, true_pairs)
        table[name] = {"pearson": None, "pair_log_error": round(float(error), 4)}
    return table


# Default population gene sets → the synthetic cell type whose markers they are (the sub-spot
# model without --reference maps the sets; their shares are summed per type to be scored).
MARKER_TYPES = {
    "t_cells": "t_cell",
    "cytotoxic_t": "t_cell",
    "b_plasma": "b_cell",
    "macrophages": "macrophage",
    "endothelial": "endothelial",
    "fibroblasts": "fibroblast",
    "osteoclasts": "osteoclast",
    "tumour": "tumour",
}


def quality_markers(prediction: Path, sample_dir: Path, mpp: float) -> dict[str, Any]:
    """The marker-set model's maps (shares of marker signal, summed per synthetic type) against
    each type's true share of cells, beside the oracle spot map on the same types."""
    import anndata as ad

    maps = ad.read_h5ad(prediction)
    xy = np.asarray(maps.obsm["spatial"], dtype=float)
    cells = pd.read_csv(sample_dir / "cells.csv")
    every = sorted(cells["cell_type"].astype(str).unique())
    types = sorted({MARKER_TYPES[p] for p in maps.obsm["populations"].columns})
    bin_px = float(maps.uns["subspot"]["bin_um"]) / mpp
    truth = bin_truth(xy, cells, every, bin_px)[:, [every.index(t) for t in types]]
    keep = np.isfinite(truth).all(axis=1)
    populations = maps.obsm["populations"]
    model = np.column_stack(
        [populations[[p for p in populations.columns if MARKER_TYPES[p] == t]].sum(axis=1)
         for t in types]
    )  # fmt: skip
    spots = pd.read_csv(sample_dir / "ground_truth.csv")
    _, nearest = cKDTree(spots[["x", "y"]].to_numpy(float)).query(xy)
    true_pairs = pair_ratios(xy[keep], truth[keep], RADIUS_UM / mpp)
    table = {"populations": list(populations.columns), "scored_as": types}
    for name, est in (
        ("model_markers", model),
        ("oracle_spot_map", spots[types].to_numpy(float)[nearest]),
    ):
        table[name] = map_scores(xy[keep], est[keep], truth[keep], true_pairs, RADIUS_UM / mpp)
    return table


def _grid_painted(grid: Any, xy: np.ndarray, types: list[str]) -> np.ndarray:
    """The spot-level head's proportions at spots and grid tiles, painted on the nearest bins."""
    states = grid.obsm["tme_states"]
    values = states.reindex(columns=types).fillna(0.0).to_numpy(float).clip(0, None)
    values /= np.maximum(values.sum(axis=1, keepdims=True), 1e-12)
    _, nearest = cKDTree(np.asarray(grid.obsm["spatial"], float)).query(xy)
    return values[nearest]


def _measured_at_spots(maps: Any, spots: pd.DataFrame, types: list[str]) -> np.ndarray:
    """The measured composition of each spot (the mean of the reconciled bins of its disc, which
    equals it exactly); NaN for spots with no bin in their disc."""
    frame = maps.obsm["populations"].copy()
    frame["spot"] = maps.obs["spot"].to_numpy()
    means = frame[frame["spot"] != ""].groupby("spot")[types].mean()
    return means.reindex(spots["barcode"]).to_numpy(float)


def embed_seconds(folder: Path, store: Path, subspot: float) -> float:
    start = time.perf_counter()
    embed_samples(
        [SampleInput(folder, image=fullres_image_of(folder), sample_id="capture_area")],
        store=store,
        encoder="test-vit-tiny", device="cpu", settings=EmbedSettings(subspot_um=subspot),
    )  # fmt: skip
    return time.perf_counter() - start


def predict_cost(store: Path, model: Path, sample: str, out: Path) -> tuple[float, float]:
    code = (
        "import resource, sys, time\n"
        "from tmescope.jobs.predict_bins import predict_subspot\n"
        "t = time.perf_counter()\n"
        f"predict_subspot({str(store)!r}, {str(model)!r}, sample={sample!r}, resolution_um=16.0,"
        f" out={str(out)!r})\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    _, peak_kb = done.stdout.split()
    return wall, int(peak_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spots", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="the simulated-encoder sweep")
    add_arguments(parser)
    args = parser.parse_args()
    if args.sweep:
        sweep = run_sweep(
            args.work, levels=args.levels, members=args.members, carries=args.carries,
            diagnosis=not args.no_diagnosis,
        )  # fmt: skip
        if args.json:
            print(json.dumps(sweep, indent=1))
        else:
            print_table(sweep)
        return
    root = Path(tempfile.mkdtemp(prefix="tmescope-highres-"))
    cohort = write_synthetic_cohort(root / "cohort", n_samples=4, n_spots=800, seed=31)
    (big,) = write_synthetic_cohort(root / "big", n_samples=1, n_spots=args.spots, seed=32)
    store = root / "h.zarr"
    embed_samples(
        [SampleInput(d, image=fullres_image_of(d)) for d in cohort], store=store,
        encoder="test-vit-tiny", device="cpu", settings=EmbedSettings(grid_um=GRID_UM),
    )  # fmt: skip
    without = min(embed_seconds(big, root / f"plain{i}.zarr", 0.0) for i in range(2))
    with_bins = min(embed_seconds(big, root / f"bins{i}.zarr", 16.0) for i in range(2))
    embed_seconds(big, store, 16.0)
    size = sum(f.stat().st_size for f in (root / "bins0.zarr").rglob("*") if f.is_file())
    n_bins = CohortStore.open(root / "bins0.zarr").sample_record("capture_area").bins.n_bins  # type: ignore[union-attr]
    held_out = cohort[-1].name
    model = root / "model"
    settings = TrainSettings(
        reference=root / "cohort" / "reference.h5ad", resolution_um=16.0,
        holdout=(held_out, "capture_area"), models=("gat",), device="cpu",
    )  # fmt: skip
    start = time.perf_counter()
    train_model(store, model, settings=settings)
    train_s = time.perf_counter() - start
    # The same sub-spot model with its populations from the default marker gene sets.
    train_model(
        store, root / "markers",
        settings=TrainSettings(resolution_um=16.0, holdout=settings.holdout, models=("ridge",),
                               device="cpu"),
    )  # fmt: skip
    predict_cost(store, root / "markers", held_out, root / "held_out_markers.h5ad")
    wall, peak = predict_cost(store, model, "capture_area", root / "big.h5ad")
    predict_cost(store, model, held_out, root / "held_out.h5ad")
    predict_sample(store, model, sample=held_out, grid=True, out=root / "held_out_grid.h5ad")
    start = time.perf_counter()
    run_interfaces(store, model, samples=["capture_area"])
    interfaces_s = time.perf_counter() - start
    mpp = float(CohortStore.open(store).sample_record(held_out).meta.mpp)
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "quality": quality(
            store, root / "held_out.h5ad", cohort[-1], mpp, root / "held_out_grid.h5ad"
        ),
        "quality_markers": quality_markers(root / "held_out_markers.h5ad", cohort[-1], mpp),
        "embed_ratio": round(with_bins / without, 3),
        "embed_s_with_bins": round(with_bins, 1),
        "embed_s_without": round(without, 1),
        "capture_area_bins": n_bins,
        "store_mb_per_capture_area": round(size / 2**20 * CAPTURE_AREA_BINS / n_bins, 1),
        "predict_s": round(wall, 1),
        "predict_peak_rss_mb": round(peak, 0),
        "train_s": round(train_s, 1),
        "interfaces_s": round(interfaces_s, 1),
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
