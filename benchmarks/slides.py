"""H&E-only slides: embedding a ~40,000 × 40,000 px slide beside the Visium path on the same
slide, and exporting a store.

    python benchmarks/slides.py [--patches 2048] [--encoder test-vit-tiny] [--json]

One synthetic sample of 28,000 spots (a ~40,000 px pyramidal JPEG-tiled TIFF at 0.5 µm/px).
Each path runs in a child process through the function ``tmescope embed`` runs
(``embed_sample_into_store``, 16 µm sub-spot bins) and is stopped once ``--patches`` patches are
embedded (a whole slide takes hours on 2 CPU cores with any encoder):

- ``visium`` — the sample as Space Ranger output with that slide (``embed SAMPLE --image``):
  spot patches;
- ``slide`` — the same file as an H&E-only slide (``embed --slide``): tiles over all its tissue.

For each: ``plan_s`` (reading the thumbnail, finding tissue, planning patches and bins, opening
the store), ``patches_per_s`` after planning, ``peak_rss_mb`` (the child's VmHWM: planning and
the first patches, the part that grows with the slide), the patches and bins planned. Then the
export of a small store (``--export-spots`` per sample, two samples and one slide, a model
trained with ``--resolution 16``) to SpatialData and to GeoJSON: seconds and size on disk.
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

SPOTS_PER_40K_SLIDE = 28000  # the synthetic lattice at 0.5 µm/px gives ~40,000 px sides

CHILD = """
import json, sys, time
from pathlib import Path
import torch
from tmescope.embed.registry import create_encoder
from tmescope.jobs.embed import EmbedSettings, SampleInput, SlideInput, embed_sample_into_store

class Stop(Exception):
    pass

class Clock:
    def __init__(self, limit):
        self.limit, self.done, self.t0, self.total = limit, 0, None, 0
    def start(self, sample_id, total):
        self.t0, self.total = time.perf_counter(), total
    def advance(self, n):
        self.done += n
        if self.done >= self.limit:
            raise Stop

kind, folder, image, store, limit, encoder_name = sys.argv[1:7]
encoder = create_encoder(encoder_name)
item = (SlideInput(Path(image)) if kind == "slide"
        else SampleInput(Path(folder), image=Path(image)))
clock = Clock(int(limit))
begin = time.perf_counter()
try:
    embed_sample_into_store(item, store_path=Path(store), encoder=encoder,
                            device=torch.device("cpu"), settings=EmbedSettings(),
                            progress=clock)
except Stop:
    pass
end = time.perf_counter()
status = Path("/proc/self/status").read_text()  # VmHWM: ru_maxrss carries over across exec
print(json.dumps({
    "plan_s": round(clock.t0 - begin, 1),
    "patches_per_s": round(clock.done / (end - clock.t0), 2),
    "patches_embedded": clock.done,
    "patches_planned": clock.total,
    "peak_rss_mb": round(int(status.split("VmHWM:")[1].split()[0]) / 1024, 0),
}))
"""


def embed_child(
    kind: str, folder: Path, store: Path, *, patches: int, encoder: str
) -> dict[str, Any]:
    image = next(folder.glob("*_he.tif"))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(folder), str(image), str(store), str(patches),
         encoder],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def export_cost(root: Path, *, n_spots: int) -> dict[str, Any]:
    """Seconds and bytes of exporting a small store with a sub-spot model, both formats."""
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.jobs.export import export_store
    from tmescope.jobs.train import TrainSettings, train_model
    from tmescope.workflows import SampleInput, SlideInput, embed_samples

    dirs = write_synthetic_cohort(root / "small", n_samples=3, n_spots=n_spots, seed=3)
    items: list[SampleInput | SlideInput] = [
        SampleInput(d, image=next(d.glob("*_he.tif"))) for d in dirs[:2]
    ]
    items.append(SlideInput(next(dirs[2].glob("*_he.tif")), sample_id="archive_01"))
    store = root / "small.zarr"
    embed_samples(items, store=store, encoder="test-vit-tiny", device="cpu")
    model = root / "model"
    train_model(
        store, model,
        settings=TrainSettings(reference=root / "small" / "reference.h5ad", resolution_um=16.0,
                               models=("ridge",), n_members=2, device="cpu"),
    )  # fmt: skip
    out: dict[str, Any] = {}
    for fmt, target in (("spatialdata", root / "sd.zarr"), ("geojson", root / "maps.geojson")):
        start = time.perf_counter()
        export_store(store, target, to=fmt, model_dir=model)
        seconds = time.perf_counter() - start
        files = [f for f in target.rglob("*") if f.is_file()] if target.is_dir() else [target]
        out[fmt] = {
            "seconds": round(seconds, 1),
            "mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=2048)
    parser.add_argument("--encoder", default="test-vit-tiny")
    parser.add_argument("--export-spots", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.io import open_slide

    with tempfile.TemporaryDirectory(prefix="tmescope-slides-") as tmp:
        root = Path(tmp)
        (big,) = write_synthetic_cohort(
            root / "big", n_samples=1, n_spots=SPOTS_PER_40K_SLIDE, seed=7
        )
        with open_slide(next(big.glob("*_he.tif"))) as slide:
            size = [slide.width, slide.height]
        result: dict[str, Any] = {
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"),
            "encoder": args.encoder,
            "slide_px": size,
        }
        for kind in ("visium", "slide"):
            result[kind] = embed_child(
                kind, big, root / f"{kind}.zarr", patches=args.patches, encoder=args.encoder
            )
        result["export"] = export_cost(root, n_spots=args.export_spots)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
