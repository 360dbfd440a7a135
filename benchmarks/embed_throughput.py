"""Embedding throughput: model only, end to end, naive, pipeline only, and peak memory.

    python benchmarks/embed_throughput.py [--encoder test-vit-small] [--batch-size 32] [--json]

On synthetic pyramidal JPEG-tiled TIFFs at 0.5 µm/px (the embedded cohort):

- ``model_only_per_s``: the encoder on pre-made tensors, same batch size;
- ``end_to_end_per_s``: read + cut + resample + normalise + model + store write, through the
  same function ``tmescope embed`` runs (``embed_sample_into_store``);
- ``naive_per_s``: read one patch, embed it, next (batch of one, no read-ahead);
- ``pipeline_only_per_s`` / ``pipeline_only_spots_per_s``: the same pipeline with a null encoder
  (mean over pixels) on a ~16,000 × 16,000 px slide, for a dense 224 px grid and for spot
  patches: what the reading side can feed a GPU;
- ``peak_rss_mb``: peak resident memory of a process embedding patches of a ~40,000 × 40,000 px
  slide (measured in a child process so that generating the slide does not count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tmescope.datasets import write_synthetic_cohort
from tmescope.embed.patches import SPOT, TILE, plan_patches
from tmescope.embed.pipeline import BatchReader, Embedder, plan_batches
from tmescope.embed.registry import create_encoder
from tmescope.io import read_visium
from tmescope.jobs.embed import EmbedSettings, SampleInput, embed_sample_into_store

SPOTS_PER_16K_SLIDE = 3600  # the synthetic lattice at 0.5 µm/px gives ~16,000 px sides
SPOTS_PER_40K_SLIDE = 28000  # and ~40,000 px sides


class NullEncoder(torch.nn.Module):
    """The model replaced by a mean over pixels: (B, 3, H, W) -> (B, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def synth(out: Path, n_spots: int) -> Path:
    (folder,) = write_synthetic_cohort(out, n_samples=1, n_spots=n_spots, seed=7)
    return folder


def model_only(encoder: Any, *, batch_size: int, batches: int) -> float:
    x = torch.randn(batch_size, 3, encoder.spec.input_px, encoder.spec.input_px)
    with torch.inference_mode():
        encoder(x)  # warm-up
        start = time.perf_counter()
        for _ in range(batches):
            encoder(x)
    return batch_size * batches / (time.perf_counter() - start)


def end_to_end(folder: Path, encoder: Any, *, batch_size: int, store: Path) -> float:
    summary = embed_sample_into_store(
        SampleInput(folder, image=next(folder.glob("*_he.tif"))),
        store_path=store,
        encoder=encoder,
        device=torch.device("cpu"),
        settings=EmbedSettings(batch_size=batch_size),
    )
    return summary.rows_written / summary.seconds


def naive(folder: Path, encoder: Any, *, n: int) -> float:
    spec = encoder.spec
    embedder = Embedder(encoder, mean=spec.mean, std=spec.std, device=torch.device("cpu"))
    with read_visium(folder, image=next(folder.glob("*_he.tif"))) as sample:
        spots = sample.spots[["x", "y"]].to_numpy()[:n]
        start = time.perf_counter()
        for x, y in spots:
            patch = sample.read_patch(x, y, size_um=spec.input_px * spec.mpp, size_px=spec.input_px)
            embedder(patch[None])
        return len(spots) / (time.perf_counter() - start)


def pipeline_only(folder: Path, *, grid: bool, batch_size: int) -> tuple[float, int]:
    """Null-encoder patches/s over the dense 224 px grid (or the spots) of one slide."""
    embedder = Embedder(NullEncoder(), mean=(0.5,) * 3, std=(0.25,) * 3, device=torch.device("cpu"))
    with read_visium(folder, image=next(folder.glob("*_he.tif"))) as sample:
        plan = plan_patches(sample, size_um=112, size_px=224, grid_step_um=112 if grid else None)
        plan = plan.subset(plan.kind == (TILE if grid else SPOT))
        chunks = range(-(-len(plan) // 512))
        batches = plan_batches(len(plan), chunk_rows=512, batch_size=batch_size, chunks=chunks)
        start = time.perf_counter()
        n = 0
        reader = BatchReader(sample, plan, prepare=embedder.prepare)
        for batch in reader.iter_batches(batches):
            embedder(batch)
            n += len(batch)
        return n / (time.perf_counter() - start), n


def peak_rss_child(folder: Path, encoder_name: str, *, batch_size: int, n: int) -> float:
    """Embed ``n`` spot patches of a big slide in a child process; its peak RSS in MB."""
    code = f"""
import torch
from pathlib import Path
from tmescope.embed.patches import SPOT, TILE, plan_patches
from tmescope.embed.pipeline import BatchReader, Embedder, plan_batches
from tmescope.embed.registry import create_encoder
from tmescope.io import read_visium
folder = Path({str(folder)!r})
enc = create_encoder({encoder_name!r})
emb = Embedder(enc, mean=enc.spec.mean, std=enc.spec.std, device=torch.device("cpu"))
with read_visium(folder, image=next(folder.glob("*_he.tif"))) as s:
    plan = plan_patches(s, size_um=112, size_px=224)
    batches = plan_batches(min(len(plan), {n}), chunk_rows=512, batch_size={batch_size},
                           chunks=range(-(-min(len(plan), {n}) // 512)))
    for b in BatchReader(s, plan, prepare=emb.prepare).iter_batches(batches):
        emb(b)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
status = Path("/proc/self/status").read_text()
print(int(status.split("VmHWM:")[1].split()[0]) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="test-vit-small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--spots", type=int, default=1500, help="spots of the end-to-end sample")
    parser.add_argument("--skip-big", action="store_true", help="skip the 40,000 px slide")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    encoder = create_encoder(args.encoder)
    result: dict[str, Any] = {"encoder": args.encoder, "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small = synth(root / "small", args.spots)
        result["model_only_per_s"] = model_only(encoder, batch_size=args.batch_size, batches=8)
        result["end_to_end_per_s"] = end_to_end(
            small, encoder, batch_size=args.batch_size, store=root / "bench.zarr"
        )
        result["naive_per_s"] = naive(small, encoder, n=128)
        result["ratio"] = result["end_to_end_per_s"] / result["model_only_per_s"]
        result["naive_ratio"] = result["naive_per_s"] / result["model_only_per_s"]
        mid = synth(root / "mid", SPOTS_PER_16K_SLIDE)
        grid_rate, grid_n = pipeline_only(mid, grid=True, batch_size=64)
        spot_rate, spot_n = pipeline_only(mid, grid=False, batch_size=64)
        result |= {
            "pipeline_only_per_s": grid_rate,
            "pipeline_only_patches": grid_n,
            "pipeline_only_spots_per_s": spot_rate,
            "pipeline_only_spot_patches": spot_n,
        }
        if not args.skip_big:
            big = synth(root / "big", SPOTS_PER_40K_SLIDE)
            with read_visium(big, image=next(big.glob("*_he.tif"))) as sample:
                result["big_slide_px"] = [sample.slide.width, sample.slide.height]
            result["peak_rss_mb"] = peak_rss_child(
                big, args.encoder, batch_size=args.batch_size, n=2048
            )
    result |= {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "benchmark_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(json.dumps(result, indent=2) if args.json else result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
