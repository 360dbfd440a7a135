"""Visium HD at 8 µm through the pipeline, its maps scored against the cells, beside Visium.

    python benchmarks/hd.py [--spots 40] [--samples 3] [--eight] [--json]
    python benchmarks/hd.py --memory [--side-um 3000] [--json]

One synthetic cohort (seed 41) of ``--samples`` sections of ``--spots`` Visium spots. Each
section is also written as a Visium HD-like run from its cells (``cells.h5ad``: every cell's
counts go to the 2 µm bin under its centre; 8 and 16 µm bins are sums of 2 µm bins, see
:mod:`tmescope.datasets.hd_writer`). Every arm embeds its sections with ``test-vit-tiny`` on the
CPU, trains ``train --resolution`` with a ridge cross-validation and a one-member head on all
sections but the last, and scores the last (held out of training) with ``evaluate_sample``:
mean Pearson over cell types between each map and the cells' share of each type per bin, and
the median |log(R / R_truth)| of pair co-location ratios at 30 µm.

Arms:

- ``visium``: the Visium spots (55 µm discs 100 µm apart), 16 µm maps;
- ``hd8_maps16``: the 8 µm HD bins as the measured units (a 112 µm patch per bin), 16 µm maps
  (four 8 µm bins summed per map bin);
- ``hd16_maps16``: the 16 µm HD bins, 16 µm maps (each map bin is one measured bin);
- with ``--eight``, ``hd8_maps8``: the 8 µm HD bins, 8 µm maps, each map bin one measured bin
  (the encoder's patch narrowed to 56 µm so that its 7 × 7 tokens are 8 µm).

Beside the model's map (``model``), ``evaluate_sample`` scores the image alone
(``image_only``, the model before reconciliation with the measurement), the measured spots'
composition painted on their nearest bins (``measured_painted``; for HD, at the map's bin size
and finer, this is the measurement itself) and the cells' own composition in each measured
unit (``oracle_spot``). Per arm also: patches embedded, seconds to embed, train and evaluate.

With ``--memory``, instead: what reading a large 2 µm section costs. A square tissue of
``--side-um`` (cells on an 8 µm lattice with random counts of 200 genes) is written at 2, 8 and
16 µm, its 2 µm bins also as Matrix Market; each child process then reads one thing and reports
its peak resident memory: the 2 µm Matrix Market read into one whole matrix (``read_10x_mtx``,
as ``read_visium`` reads a written bin size; parsed a block of lines at a time), the same summed into 8 µm bins a block at a time
(``aggregate_hd_bins``, from Matrix Market and from HDF5), the 8 µm matrix read whole (the bound:
one sample's 8 µm data), and the imports alone.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tmescope.datasets import write_synthetic_cohort
from tmescope.datasets.hd_writer import HDSection, write_hd_section
from tmescope.jobs.embed import EmbedSettings, SampleInput
from tmescope.jobs.evaluate import EvaluateSettings, evaluate_sample
from tmescope.jobs.train import TrainSettings, train_model
from tmescope.workflows import embed_samples, fullres_image_of

SEED = 41
TINY_PATCH_UM = 112.0  # test-vit-tiny: 224 px at 0.5 µm/px, 7 × 7 tokens of 16 µm
EIGHT_UM_PATCH = 56.0  # the same 7 × 7 tokens over half the field: 8 µm each


def run_arm(
    name: str,
    items: Sequence[SampleInput],
    *,
    root: Path,
    reference: Path,
    cells: Path,
    resolution_um: float,
    patch_um: float = TINY_PATCH_UM,
) -> dict[str, Any]:
    """Embed, train (last sample held out) and evaluate the held-out sample of one arm."""
    store, model = root / f"{name}.zarr", root / f"{name}_model"
    held_out = items[-1].sample_id
    assert held_out is not None
    start = time.perf_counter()
    summaries = embed_samples(
        items, store=store, encoder="test-vit-tiny", device="cpu",
        settings=EmbedSettings(subspot_um=resolution_um, patch_um=patch_um),
    )  # fmt: skip
    embed_s = time.perf_counter() - start
    settings = TrainSettings(
        models=("ridge",), n_members=1, device="cpu", reference=reference,
        resolution_um=resolution_um, holdout=(held_out,),
    )  # fmt: skip
    start = time.perf_counter()
    train_model(store, model, settings=settings)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = evaluate_sample(
        store, model, sample=held_out, cells=cells,
        settings=EvaluateSettings(resolution_um=resolution_um),
    )  # fmt: skip
    evaluate_s = time.perf_counter() - start
    return {
        "measured_units": sum(s.n_spots for s in summaries),
        "patches": sum(s.rows_written for s in summaries),
        "held_out_bins": scores["bins"],
        "pearson": {k: v for k, v in scores["maps"].items() if not k.startswith("per_type")},
        "per_type_model": scores["maps"]["per_type_model"],
        "pair_log_ratio_error": {
            k.removeprefix("log_ratio_error_"): v
            for k, v in scores["pairs"].items()
            if k.startswith("log_ratio_error_")
        },
        "embed_s": round(embed_s, 1),
        "train_s": round(train_s, 1),
        "evaluate_s": round(evaluate_s, 1),
    }


MEMORY_READS = {
    "imports_only": "pass",
    "mtx_2um_whole": "read_10x_mtx(fine / 'filtered_feature_bc_matrix')",
    "mtx_2um_to_8um_streamed": "aggregate_hd_bins(mtx_only, size_um=8)",
    "h5_2um_to_8um_streamed": "aggregate_hd_bins(fine, size_um=8)",
    "h5_8um_whole": "read_10x_h5(eight / 'filtered_feature_bc_matrix.h5')",
}


def memory(root: Path, *, side_um: float) -> dict[str, Any]:
    """Peak resident memory of each of :data:`MEMORY_READS` on one large 2 µm section."""
    import shutil

    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from tmescope.datasets.hd_writer import write_binned_outputs

    fine = root / "outs" / "binned_outputs" / "square_002um"
    described = root / "section.json"
    if not described.is_file():  # written once per --work folder, then reused
        rng = np.random.default_rng(SEED)
        lattice = np.arange(4.0, side_um, 8.0) / 0.5  # cell centres, px at 0.5 µm/px
        xy = np.stack(np.meshgrid(lattice, lattice), axis=-1).reshape(-1, 2)
        counts = sp.random(len(xy), 200, density=0.25, format="csr", random_state=rng)
        counts.data = rng.poisson(3.0, counts.nnz).astype(np.float64) + 1
        cells = ad.AnnData(
            X=counts.astype(np.int32),
            var=pd.DataFrame(
                {"gene_ids": [f"E{i}" for i in range(200)]}, index=[f"G{i}" for i in range(200)]
            ),
        )
        cells.obsm["spatial"] = xy
        start = time.perf_counter()
        written = write_binned_outputs(cells, root / "outs", mpp=0.5, matrix_market=(2,))
        section = {
            "side_um": side_um,
            "cells": len(xy),
            "entries": int(counts.nnz),
            "bins": {str(k): v for k, v in written.items()},
            "write_s": round(time.perf_counter() - start, 1),
        }
        for part in ("filtered_feature_bc_matrix", "spatial"):
            shutil.copytree(fine / part, root / "mtx_only" / part)
        described.write_text(json.dumps(section))
    section = json.loads(described.read_text())
    mtx = fine / "filtered_feature_bc_matrix" / "matrix.mtx.gz"
    peaks = {name: _peak_rss(root, code) for name, code in MEMORY_READS.items()}
    return section | {
        "mtx_gz_mb": round(mtx.stat().st_size / 2**20, 1),
        "mtx_text_mb": round(_gunzipped_size(mtx) / 2**20, 1),
        "peak_rss": peaks,
    }


def _peak_rss(root: Path, code: str) -> dict[str, float]:
    """Peak resident memory (MB) and seconds of ``code`` in a fresh interpreter."""
    program = (
        "import time\n"
        "from pathlib import Path\n"
        "from tmescope.io.counts import read_10x_h5, read_10x_mtx\n"
        "from tmescope.io.hd_aggregate import aggregate_hd_bins\n"
        f"root = Path({str(root)!r})\n"
        "fine = root / 'outs' / 'binned_outputs' / 'square_002um'\n"
        "eight = root / 'outs' / 'binned_outputs' / 'square_008um'\n"
        "mtx_only = root / 'mtx_only'\n"
        "t = time.perf_counter()\n"
        f"{code}\n"
        # VmHWM, not ru_maxrss: Linux carries a parent's ru_maxrss into its child across exec.
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(time.perf_counter() - t, peak)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    seconds, peak_kb = done.stdout.split()[-2:]
    return {"mb": round(int(peak_kb) / 1024, 0), "s": round(float(seconds), 1)}


def _gunzipped_size(path: Path) -> int:
    import gzip

    size = 0
    with gzip.open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            size += len(block)
    return size


def hd_inputs(sections: Sequence[HDSection], size_um: int) -> list[SampleInput]:
    return [SampleInput(s.bin_dir(size_um), image=s.image, sample_id=s.path.name) for s in sections]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spots", type=int, default=40, help="Visium spots per section")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--eight", action="store_true", help="also 8 µm maps of 8 µm bins")
    parser.add_argument("--memory", action="store_true", help="the 2 µm reading cost instead")
    parser.add_argument("--side-um", type=float, default=3000.0, help="--memory: tissue side")
    parser.add_argument("--work", type=Path, default=None, help="folder (default: a temporary)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = args.work or Path(tempfile.mkdtemp(prefix="tmescope-hd-"))
    started = time.perf_counter()
    if args.memory:
        result = {
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"),
            "memory": memory(root, side_um=args.side_um),
            "total_s": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(result, indent=1))
        return
    folders = write_synthetic_cohort(
        root / "cohort", n_samples=args.samples, n_spots=args.spots, seed=SEED
    )
    sections = [write_hd_section(d, root / "hd", bin_sizes=(8, 16)) for d in folders]
    reference = root / "cohort" / "reference.h5ad"
    cells = folders[-1] / "cells.h5ad"
    common = {"root": root, "reference": reference, "cells": cells}
    arms: dict[str, Any] = {
        "visium": run_arm(
            "visium",
            [SampleInput(d, image=fullres_image_of(d), sample_id=d.name) for d in folders],
            resolution_um=16.0, **common,
        ),
        "hd8_maps16": run_arm("hd8_maps16", hd_inputs(sections, 8), resolution_um=16.0, **common),
        "hd16_maps16": run_arm(
            "hd16_maps16", hd_inputs(sections, 16), resolution_um=16.0, **common
        ),
    }  # fmt: skip
    if args.eight:
        arms["hd8_maps8"] = run_arm(
            "hd8_maps8", hd_inputs(sections, 8), resolution_um=8.0, patch_um=EIGHT_UM_PATCH,
            **common,
        )  # fmt: skip
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "sections": {
            "n": args.samples,
            "visium_spots": args.spots,
            "hd_bins": {str(k): v for k, v in sections[-1].n_bins.items()},
        },
        "arms": arms,
        "total_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for name, arm in arms.items():
        print(f"{name}: {json.dumps(arm)}")
    print(f"total {result['total_s']} s on {result['machine']}, {result['date']}")


if __name__ == "__main__":
    main()
