"""Time patch reads from a slide: the spot-centred patches a foundation model will embed.

    python benchmarks/read_patches.py [--spots 1000] [--size-px 224] [--json]

Writes one synthetic sample (pyramidal JPEG-tiled TIFF at 0.5 µm/px), then reads the patch under
every in-tissue spot through ``Sample.read_patch``, one at a time on one thread, at 0.5 µm/px
(level 0, 112 µm) and at 1.0 µm/px (from level 1, 224 µm). Also reads the public Aperio SVS in
../shared/data when present. This is the naive reader a batched pipeline must beat.
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

import numpy as np

from tmescope.datasets import write_synthetic_cohort
from tmescope.io import open_slide, read_visium

SVS = (
    Path(__file__).resolve().parents[1].parent
    / "shared/data/wsi_cmu1_small_region/CMU-1-Small-Region.svs"
)


def time_sample_patches(folder: Path, *, mpp: float, size_px: int) -> dict[str, Any]:
    """Read every in-tissue spot's patch at ``mpp`` µm/px; patches per second."""
    with read_visium(folder, image=next(folder.glob("*_he.tif"))) as sample:
        spots = sample.spots[sample.spots["in_tissue"]]
        size_um = size_px * mpp
        start = time.perf_counter()
        checksum = 0
        for x, y in spots[["x", "y"]].to_numpy():
            checksum += int(sample.read_patch(x, y, size_um=size_um, size_px=size_px)[0, 0, 0])
        seconds = time.perf_counter() - start
    return {
        "mpp": mpp,
        "patch_um": size_um,
        "patches": len(spots),
        "seconds": round(seconds, 3),
        "patches_per_s": round(len(spots) / seconds, 1),
    }


def time_svs_patches(path: Path, *, size_px: int, n: int = 400) -> dict[str, Any]:
    """Random 224 px level-0 reads from the real SVS."""
    rng = np.random.default_rng(0)
    with open_slide(path) as slide:
        xs = rng.integers(0, slide.width - size_px, n)
        ys = rng.integers(0, slide.height - size_px, n)
        start = time.perf_counter()
        for x, y in zip(xs, ys, strict=True):
            slide.read_region(x, y, size_px, size_px, size=(size_px, size_px))
        seconds = time.perf_counter() - start
    return {"file": path.name, "patches": n, "patches_per_s": round(n / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spots", type=int, default=1000)
    parser.add_argument("--size-px", type=int, default=224)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        (folder,) = write_synthetic_cohort(Path(tmp), n_samples=1, n_spots=args.spots, seed=0)
        runs = [time_sample_patches(folder, mpp=m, size_px=args.size_px) for m in (0.5, 1.0)]
    result: dict[str, Any] = {
        "size_px": args.size_px,
        "synthetic": runs,
        "svs": time_svs_patches(SVS, size_px=args.size_px) if SVS.is_file() else None,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for run in runs:
            print(
                f"{run['patches']} patches of {run['patch_um']:g} µm at {run['mpp']} µm/px: "
                f"{run['patches_per_s']} patches/s"
            )
        if result["svs"]:
            print(f"SVS {result['svs']['file']}: {result['svs']['patches_per_s']} patches/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
