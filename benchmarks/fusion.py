"""The fusion head against its baselines (quality) and on 200,000 spots (speed).

    python benchmarks/fusion.py [--samples 4] [--spots 1000] [--speed-spots 25000] [--json]

Quality: a synthetic cohort (seed 11, as the `fusion` acceptance check) embedded with the
untrained test ViT, leave-one-sample-out; the head (ensemble of ``--members``) and the four
baselines are scored on the same folds (mean Pearson over the 50 most variable genes, chosen on
each fold's training samples). The predicted TME states of held-out samples are also correlated
with the synthetic ground truth: the share of each cell type under each spot.

Speed: one fold on 8 samples × ``--speed-spots`` spots (200,000 by default) of 1,536-dim
embeddings on a Visium lattice with 50 targets: one head (one ensemble member) fitted on 7
samples and early-stopped on the 8th, timed end to end (standardisation, PCA, training); the
tuned ridge probe is timed on the same rows. Peak RSS covers the whole process.

Prints a JSON object with ``quality`` (per model its mean Pearson, per fold and for states) and
``speed`` (``n_spots``, ``dim``, ``fit_s``, ``ridge_cv_fit_s``, ``peak_rss_mb``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Predicted TME state → ground-truth cell type of the synthetic generator.
STATE_TRUTH = {
    "t_cells": "t_cell",
    "b_plasma": "b_cell",
    "macrophages": "macrophage",
    "endothelial": "endothelial",
    "fibroblasts": "fibroblast",
    "osteoclasts": "osteoclast",
    "tumour": "tumour",
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quality(work: Path, *, samples: int, spots: int, members: int) -> dict[str, Any]:
    """Cross-validated quality on an embedded synthetic cohort."""
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.fusion.cohort import read_spot_table
    from tmescope.fusion.evaluation import MODEL_NAMES, cross_validate, prepare_fold, spot_graph
    from tmescope.fusion.folds import leave_one_sample_out
    from tmescope.fusion.genesets import load_gene_sets
    from tmescope.jobs.embed import SampleInput
    from tmescope.store import CohortStore
    from tmescope.workflows import embed_samples

    start = time.perf_counter()
    dirs = write_synthetic_cohort(work / "cohort", n_samples=samples, n_spots=spots, seed=11)
    # As the acceptance check: no --image, so patches come from the hires PNG.
    embed_samples(
        [SampleInput(d) for d in dirs], store=work / "q.zarr", encoder="test-vit-tiny",
        device="cpu",
    )  # fmt: skip
    say(
        f"quality cohort: {samples} × {spots} spots embedded in {time.perf_counter() - start:.0f} s"
    )
    store = CohortStore.open(work / "q.zarr")
    ids = store.sample_ids()
    tables = {s: read_spot_table(store, s) for s in ids}
    graphs = {s: spot_graph(t.coords_um, platform="visium") for s, t in tables.items()}
    folds = [
        prepare_fold(
            tables, fold, graphs=graphs, kind="both", n_genes=50, gene_sets=load_gene_sets(),
            reference=None,
        )
        for fold in leave_one_sample_out(ids)
    ]  # fmt: skip
    scores = cross_validate(
        folds, models=MODEL_NAMES, n_members=members, seed=0, device="cpu", progress=say
    )
    truth = {d.name: pd.read_csv(d / "ground_truth.csv").set_index("barcode") for d in dirs}
    out: dict[str, Any] = {}
    for name, result in scores.items():
        out[name] = result.to_json() | {
            "states_vs_truth": _states_vs_truth(folds, result.predictions, tables, truth)
        }
        out[name].pop("per_gene")
    return out


def _states_vs_truth(
    folds: list[Any],
    predictions: dict[str, np.ndarray],
    tables: dict[str, Any],
    truth: dict[str, pd.DataFrame],
) -> dict[str, float]:
    """Pearson of each predicted state with the true share of its cell type, held-out spots."""
    pairs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for data in folds:
        names = list(data.spec.names)
        for sample in data.test:
            predicted = predictions[sample.sample_id]
            known = truth[sample.sample_id].reindex(tables[sample.sample_id].barcodes)
            for state, cell in STATE_TRUTH.items():
                column = f"state:{state}"
                if column in names:
                    got, want = pairs.setdefault(state, ([], []))
                    got.append(predicted[:, names.index(column)])
                    want.append(known[cell].to_numpy(dtype=float))
    return {
        state: round(float(np.corrcoef(np.concatenate(g), np.concatenate(w))[0, 1]), 4)
        for state, (g, w) in pairs.items()
    }


def lattice_graphs(*, samples: int, spots: int, dim: int, targets: int) -> list[Any]:
    """``samples`` graphs of ``spots`` on a Visium lattice, embeddings and targets both driven by
    smooth spatial factors: a fold's input at any size, without embedding a cohort."""
    from scipy.spatial import cKDTree

    from tmescope.fusion.train import GraphSample

    rng = np.random.default_rng(0)
    n_factors = 12
    mixing = rng.normal(size=(n_factors, dim)).astype(np.float32)
    readout = rng.normal(size=(n_factors, targets)).astype(np.float32)
    graphs = []
    for i in range(samples):
        r = np.random.default_rng(i + 1)
        rows = int(np.sqrt(spots / 2 * 1.732)) or 1
        grid_r, grid_c = np.mgrid[0:rows, 0 : -(-spots // rows)]
        xy = np.stack([(2 * grid_c + grid_r % 2).ravel() * 50.0, grid_r.ravel() * 86.6], 1)[:spots]
        pairs = cKDTree(xy).query_pairs(r=125.0, output_type="ndarray")
        edges = np.concatenate([pairs.T, pairs.T[::-1]], axis=1).astype(np.int64)
        # Smooth spatial factors (wavelengths 0.3–3 mm) drive both embeddings and targets.
        freq = r.normal(size=(2, n_factors)) / r.uniform(300, 3000, size=n_factors)
        factors = np.sin(xy @ freq + r.uniform(0, 2 * np.pi, n_factors)).astype(np.float32)
        x = r.standard_normal((spots, dim), dtype=np.float32) + factors @ mixing
        y = factors @ readout + 0.5 * r.standard_normal((spots, targets), dtype=np.float32)
        graphs.append(GraphSample(f"s{i}", x, edges, y.astype(np.float32)))
    return graphs


def speed(*, samples: int, spots: int, dim: int, targets: int) -> dict[str, Any]:
    """One fold: a head (one member) and the tuned probe on ``samples × spots`` rows."""
    from tmescope.fusion.baselines import TunedRidgeProbe
    from tmescope.fusion.train import fit_head

    graphs = lattice_graphs(samples=samples, spots=spots, dim=dim, targets=targets)
    n_train = sum(g.x.shape[0] for g in graphs[:-1])
    say(f"speed cohort: {samples} × {spots:,} spots × {dim} (fold: {n_train:,} training spots)")
    start = time.perf_counter()
    fit_head(graphs[:-1], graphs[-1:], seed=0, device="cpu")
    fit_s = time.perf_counter() - start
    x = np.concatenate([g.x for g in graphs[:-1]])
    y = np.concatenate([g.y for g in graphs[:-1] if g.y is not None])
    groups = np.concatenate([np.full(g.x.shape[0], g.sample_id) for g in graphs[:-1]])
    start = time.perf_counter()
    TunedRidgeProbe().fit(x, y, groups=groups)
    ridge_s = time.perf_counter() - start
    return {
        "n_spots": samples * spots,
        "n_train_spots": n_train,
        "dim": dim,
        "targets": targets,
        "fit_s": round(fit_s, 1),
        "ridge_cv_fit_s": round(ridge_s, 1),
        "fit_over_ridge_cv": round(fit_s / ridge_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4, help="quality cohort samples")
    parser.add_argument("--spots", type=int, default=1000, help="quality cohort spots per sample")
    parser.add_argument("--members", type=int, default=5, help="ensemble members (quality)")
    parser.add_argument("--speed-samples", type=int, default=8)
    parser.add_argument("--speed-spots", type=int, default=25_000, help="spots per sample")
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as work:
            result["quality"] = quality(
                Path(work), samples=args.samples, spots=args.spots, members=args.members
            )
    if not args.skip_speed:
        result["speed"] = speed(
            samples=args.speed_samples, spots=args.speed_spots, dim=args.dim, targets=50
        )
    text = json.dumps(result, indent=2, default=lambda v: None)
    if args.json:
        print(text)
    else:
        say(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
