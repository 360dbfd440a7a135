"""Time the analysis stages on a trained store: fused sets, niches, interactions (spots, grid).

    python benchmarks/interactions.py STORE MODEL_DIR [--annotations CSV] [--json]

Each stage runs as its command would: fused sets are first removed from a copy of the store
so that writing them is timed, then niches and the cohort's interactions on spots and on grid
tiles read them back. Prints one line per stage (or JSON) with seconds and sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--annotations", type=Path, help="sample_id, barcode, region CSV")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from tmescope.jobs.fused import write_fused
    from tmescope.jobs.interactions import InteractionSettings, run_interactions
    from tmescope.jobs.niches import find_niches
    from tmescope.store import CohortStore

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store.zarr"
        shutil.copytree(args.store, store, ignore=shutil.ignore_patterns("fused"))
        opened = CohortStore.open(store)
        records = [opened.sample_record(s) for s in opened.sample_ids()]
        results["samples"] = len(records)
        results["spots"] = sum(r.n_spots for r in records)
        results["tiles"] = sum(r.n_tiles for r in records)

        start = time.perf_counter()
        cohort = write_fused(store, args.model, device="cpu")
        results["fused_write_s"] = time.perf_counter() - start
        results["fused_dim"] = cohort.info.dim

        start = time.perf_counter()
        niches = find_niches(store, args.model, annotations=args.annotations, device="cpu")
        results["niches_s"] = time.perf_counter() - start
        results["niches_k"] = niches.k
        results["niches_ari"] = niches.agreement.get("cohort")

        for name, grid in (("interactions_spots_s", False), ("interactions_grid_s", True)):
            has_tiles = all(r.n_tiles for r in records)
            if grid and not has_tiles:
                continue
            start = time.perf_counter()
            run_interactions(store, args.model, settings=InteractionSettings(grid=grid))
            results[name] = time.perf_counter() - start

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            shown = f"{value:.1f}" if isinstance(value, float) else value
            print(f"{key:>22}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
