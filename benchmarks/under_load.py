"""The demo's CPU-bound steps alone and beside one busy process, before and after thread sizing.

    python benchmarks/under_load.py [--repeats 2] [--steps 40] [--spots 100] [--json]

Two workloads, each run in a fresh process (OpenMP reads its settings once, when it loads):

* ``fold``: one GATv2 fold as the demo trains it (``tmescope.fusion.train.fit_ensemble``): two
  training samples of 1,000 spots on a Visium lattice, 192-dim embeddings (``test-vit-tiny``),
  57 targets; one member of ``--steps`` optimiser steps (the demo: 3 members, up to 600).
* ``embed``: one synthetic sample of ``--spots`` spots (and its 80 µm grid tiles and 16 µm
  bins, as the demo) embedded with ``test-vit-tiny`` on the CPU into a fresh store.

Modes: ``old`` is the behaviour before ``tmescope.cpus``: torch's default threads (one per
core), OpenMP's default wait (libgomp spins up to 300,000 times, then sleeps) and two reader
threads; ``new`` calls ``tmescope.cpus.ensure_threads()`` first, as the train and embed jobs do
(threads from the usable cores, a short spin: ``GOMP_SPINCOUNT=1000``, readers from the
budget); ``passive`` is ``new`` with ``OMP_WAIT_POLICY=PASSIVE`` set by the user (no spin);
``one`` is ``new`` with ``TMESCOPE_THREADS=1``. Each is timed alone and beside
``python -c "while True: pass"``; modes alternate within each repeat, so they meet the same
background. Prints every run (with its CPU seconds and the 1-minute load average), medians and
the ratios busy/alone and old/new of medians as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("old", "new", "passive", "one")
WORKLOADS = ("fold", "embed")
_CLEARED = ("OMP_WAIT_POLICY", "TMESCOPE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "GOMP_SPINCOUNT")  # fmt: skip


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- in the child process ------------------------------------------------------------------


def child(workload: str, mode: str, *, steps: int, sample_dir: Path | None) -> dict[str, Any]:
    """Time one workload in this (fresh) process; ``mode`` decides the thread sizing."""
    readers: int | None = 2
    if mode != "old":
        from tmescope.cpus import ensure_threads

        ensure_threads()  # before anything below loads torch, as the jobs do
        readers = None
    import torch

    if workload == "fold":
        seconds = _fold(steps)
    else:
        assert sample_dir is not None
        seconds = _embed(sample_dir, readers)
    from tmescope.cpus import reader_threads

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(seconds, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # the whole process: spinning shows
        "torch_threads": torch.get_num_threads(),
        "readers": readers if readers is not None else reader_threads(),
        "wait": os.environ.get("OMP_WAIT_POLICY")
        or f"spin {os.environ.get('GOMP_SPINCOUNT', 'default')}",
    }


def _fold(steps: int) -> float:
    from fusion import lattice_graphs  # benchmarks/fusion.py: this script's folder is on the path
    from tmescope.fusion.head import HeadConfig
    from tmescope.fusion.train import fit_ensemble

    samples = lattice_graphs(samples=2, spots=1000, dim=192, targets=57)
    config = HeadConfig(max_steps=steps, patience=steps)  # a fixed number of steps
    start = time.perf_counter()
    fit_ensemble(samples, [], n_members=1, config=config, seed=0, device="cpu")
    return time.perf_counter() - start


def _embed(sample_dir: Path, readers: int | None) -> float:
    import torch

    from tmescope.embed.registry import create_encoder
    from tmescope.jobs.embed import EmbedSettings, SampleInput, embed_sample_into_store
    from tmescope.jobs.synth import fullres_image_of

    encoder = create_encoder("test-vit-tiny", device="cpu")
    settings = EmbedSettings(grid_um=80.0, readers=readers)
    item = SampleInput(sample_dir, image=fullres_image_of(sample_dir))
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        embed_sample_into_store(
            item, store_path=Path(work) / "cohort.zarr", encoder=encoder,
            device=torch.device("cpu"), settings=settings,
        )  # fmt: skip
        return time.perf_counter() - start


# --- in the parent -------------------------------------------------------------------------


def run_child(workload: str, mode: str, *, steps: int, sample_dir: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    if mode == "one":
        env["TMESCOPE_THREADS"] = "1"
    if mode == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    command = [sys.executable, __file__, "--child", workload, "--mode", mode,
               "--steps", str(steps), "--sample", str(sample_dir)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{workload}/{mode} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    *,
    repeats: int,
    steps: int,
    spots: int,
    modes: list[str],
    workloads: list[str],
    where: list[str],
) -> dict[str, Any]:
    from tmescope.jobs.synth import synthesize_cohort

    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as work:
        (sample_dir,) = synthesize_cohort(Path(work) / "cohort", n_samples=1, n_spots=spots, seed=0)
        for busy in (w == "busy" for w in where):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                for repeat in range(repeats):
                    for workload in workloads:
                        for mode in modes if repeat % 2 == 0 else modes[::-1]:
                            key = f"{workload}/{mode}/{'busy' if busy else 'alone'}"
                            run = run_child(workload, mode, steps=steps, sample_dir=sample_dir)
                            run["load_1min"] = os.getloadavg()[0]
                            runs.setdefault(key, []).append(run)
                            say(f"{key}: {run['seconds']} s ({run['torch_threads']} torch "
                                f"threads, {run['readers']} readers, wait {run['wait']})")  # fmt: skip
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    return summarise(runs)


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per workload/mode/where, and the ratios busy/alone and old/new of medians."""
    medians = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    out: dict[str, Any] = {"runs": runs, "median_s": medians}
    for key, seconds in medians.items():
        workload, mode, where = key.split("/")
        alone = medians.get(f"{workload}/{mode}/alone")
        if where == "busy" and alone:
            out.setdefault("busy_over_alone", {})[f"{workload}/{mode}"] = round(seconds / alone, 2)
        new = medians.get(f"{workload}/new/{where}")
        if mode == "old" and new:
            out.setdefault("old_over_new", {})[f"{workload}/{where}"] = round(seconds / new, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps of the fold")
    parser.add_argument("--spots", type=int, default=100, help="spots of the embedded sample")
    parser.add_argument("--modes", default="old,new,passive", help="of old,new,passive,one")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="of fold,embed")
    parser.add_argument("--where", default="alone,busy", help="of alone,busy")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--sample", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.mode, steps=args.steps, sample_dir=args.sample)))
        return 0
    result: dict[str, Any] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "steps": args.steps,
        "spots": args.spots,
        **measure(
            repeats=args.repeats, steps=args.steps, spots=args.spots,
            modes=args.modes.split(","), workloads=args.workloads.split(","),
            where=args.where.split(","),
        ),
    }  # fmt: skip
    text = json.dumps(result, indent=2)
    if args.json:
        print(text)
    else:
        say(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
