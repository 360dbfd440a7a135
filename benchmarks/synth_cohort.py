"""Time the synthetic cohort generator.

    python benchmarks/synth_cohort.py [--samples 4] [--spots 1000] [--seed 0] [--out DIR] [--json]

Writes the cohort (into a temporary folder unless ``--out`` is given) and reports the samples,
spots, wall-clock seconds, bytes written and level-0 megapixels rendered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from tmescope.datasets import write_synthetic_cohort


def run(out: Path, *, samples: int, spots: int, seed: int, mpp: float) -> dict[str, Any]:
    """Generate one cohort under ``out`` and measure it."""
    start = time.perf_counter()
    folders = write_synthetic_cohort(out, n_samples=samples, n_spots=spots, seed=seed, mpp=mpp)
    seconds = time.perf_counter() - start
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    pixels = 0
    for folder in folders:
        image = json.loads((folder / "ground_truth.json").read_text())["image"]
        pixels += image["width"] * image["height"]
    return {
        "samples": samples,
        "spots": spots,
        "seed": seed,
        "mpp": mpp,
        "seconds": round(seconds, 3),
        "seconds_per_sample": round(seconds / samples, 3),
        "bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
        "level0_megapixels": round(pixels / 1e6, 1),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--spots", type=int, default=1000, help="in-tissue spots per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument(
        "--out", type=Path, help="keep the cohort here (default: a temporary folder)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    options = {"samples": args.samples, "spots": args.spots, "seed": args.seed, "mpp": args.mpp}
    if args.out is not None:
        result = run(args.out, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="tmescope-synth-") as folder:
            result = run(Path(folder), **options)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['samples']} samples × {result['spots']} spots in {result['seconds']:.2f} s "
            f"({result['seconds_per_sample']:.2f} s/sample), {result['bytes'] / 1e6:.1f} MB, "
            f"{result['level0_megapixels']} Mpx at level 0"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
