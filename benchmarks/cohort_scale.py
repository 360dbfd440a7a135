"""The cohort at its real size: each stage's wall time and peak memory at 5, 10, 20 and 40 samples.

    python benchmarks/cohort_scale.py [--samples 5 10 20 40] [--spots 4000] [--cache DIR]
                                      [--stages synth embed ...] [--force] [--json]

A synthetic cohort of ``max(--samples)`` sections × ``--spots`` in-tissue spots (``tmescope
synth``, which writes ``samplesheet.csv``) is embedded with test-vit-tiny and 16 µm bins, then,
for each cohort size N, every stage after embedding runs on the first N samples of the sheet as
the CLI runs it, in a child process timed by GNU time (wall seconds, peak RSS):

    synth         tmescope synth OUT --samples N --spots S            (a cohort of its own, then
                                                                       deleted: it only times)
    embed         tmescope embed --samplesheet SHEET --store S.zarr   (N = 5 and the cohort's
                                                                       size)
    index         tmescope index S.zarr
    train         tmescope train S.zarr --out M --reference REF --resolution 16   (default folds)
    predict       tmescope predict S.zarr M --resolution 16 --out P/  (every sample)
    interactions  tmescope interactions S.zarr M --cohort --resolution 16 --out I/
    niches        tmescope niches S.zarr M --out N/
    report        tmescope report S.zarr --model M --out R/report.html
    export        tmescope export S.zarr E.zarr --model M

Embedding is the slow part on two cores, so everything is cached in ``--cache`` (default
``benchmarks/results/cohort_scale``): the cohort of ``--cohort`` samples (40), the stores and one
result per (stage, N) in ``results.json``; a stage with a result is skipped unless ``--force``.
The stores of sizes other than 5 and the cohort's own are the cohort store's first N samples,
copied (embedding a sample does not depend on the others; the embed row of those sizes is left
out). Run one size at a time with ``--samples 40``. ``--json`` prints every result and,
per stage, the exponent of time against samples fitted over the sizes measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STAGES = ("synth", "embed", "index", "train", "predict", "interactions", "niches", "report",
          "export")  # fmt: skip
ENCODER = "test-vit-tiny"
EMBEDDED_SMALLEST = 5  # the sizes embedded for real: this one and the cohort's
SEED = 7
HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--spots", type=int, default=4000)
    parser.add_argument(
        "--cohort", type=int, default=40, help="samples of the cached cohort (>= every size)"
    )
    parser.add_argument("--cache", type=Path, default=HERE / "results" / "cohort_scale")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--force", action="store_true", help="run stages with a result again")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.samples))
    if sizes[-1] > args.cohort:
        parser.error(f"--samples {sizes[-1]} is more than the cohort's {args.cohort} (--cohort)")
    bench = Bench(args.cache, spots=args.spots, largest=args.cohort)
    for n in sizes:
        for stage in args.stages:
            if stage == "embed" and n not in (EMBEDDED_SMALLEST, bench.largest):
                continue  # the other sizes' stores are the largest store's first samples
            bench.run(stage, n, force=args.force)
    summary = bench.summary(sizes)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for row in summary["rows"]:
            print(f"{row['stage']:>13} N={row['samples']:>3}: {row['seconds']:>9.1f} s "
                  f"{row['peak_rss_mb']:>8.0f} MB")  # fmt: skip
        for stage, exponent in summary["exponents"].items():
            print(f"{stage:>13}: time ∝ samples^{exponent}")
    return 0


class Bench:
    """The cached cohort, stores and results of one benchmark folder."""

    def __init__(self, cache: Path, *, spots: int, largest: int) -> None:
        self.cache = cache.resolve()
        self.cache.mkdir(parents=True, exist_ok=True)
        self.spots = spots
        self.largest = largest
        self.cohort = self.cache / f"cohort_{largest}x{spots}"
        self.results_file = self.cache / "results.json"
        self.results: dict[str, Any] = (
            json.loads(self.results_file.read_text()) if self.results_file.is_file() else {}
        )

    # -- the cohort and its stores ----------------------------------------------------------

    def ensure_cohort(self) -> Path:
        """The largest cohort and its sample sheet (written once)."""
        sheet = self.cohort / "samplesheet.csv"
        if not sheet.is_file():
            self.tmescope("synth", self.cohort, "--samples", self.largest, "--spots", self.spots,
                          "--seed", SEED, log=self.cache / "cohort.log")  # fmt: skip
        return sheet

    def sheet(self, n: int) -> Path:
        """A sample sheet of the first ``n`` samples, beside the cohort's (relative paths hold)."""
        full = self.ensure_cohort()
        if n == self.largest:
            return full
        path = self.cohort / f"samplesheet_{n}.csv"
        with full.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows(rows[: n + 1])
        return path

    def store(self, n: int) -> Path:
        return self.cache / f"store_{n}.zarr"

    def ensure_store(self, n: int) -> Path:
        """The store of the first ``n`` samples: embedded (smallest, largest) or copied."""
        store = self.store(n)
        if store.is_dir():
            return store
        largest = self.store(self.largest)
        if n != self.largest and largest.is_dir():
            self._copy_store(largest, store, n)
        else:
            self.run("embed", n, force=True)
        return store

    def _copy_store(self, source: Path, target: Path, n: int) -> None:
        """The first ``n`` samples of ``source`` (its sheet's order) as a store of their own."""
        with self.sheet(n).open(newline="", encoding="utf-8") as handle:
            wanted = [row["sample"] for row in csv.DictReader(handle)]
        partial = target.with_name(f".{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for name in ("zarr.json",):
            shutil.copy2(source / name, partial / name)
        (partial / "samples").mkdir()
        shutil.copy2(source / "samples" / "zarr.json", partial / "samples" / "zarr.json")
        for sample in wanted:
            shutil.copytree(source / "samples" / sample, partial / "samples" / sample)
        os.replace(partial, target)

    # -- stages -----------------------------------------------------------------------------

    def run(self, stage: str, n: int, *, force: bool = False) -> dict[str, Any]:
        key = f"{stage}/{n}"
        if key in self.results and not force:
            return dict(self.results[key])
        out = self.cache / f"n{n}"
        out.mkdir(exist_ok=True)
        store, model = self.store(n), out / "model"
        reference = self.cohort / "reference.h5ad"
        if stage != "synth":
            self.ensure_cohort()
        if stage not in ("synth", "embed"):
            self.ensure_store(n)
        if stage in ("predict", "interactions", "niches", "report", "export") and not (
            model / "model.json"
        ).is_file():
            self.run("train", n)
        args: list[Any]
        if stage == "synth":
            target = self.cache / f"synth_{n}"
            shutil.rmtree(target, ignore_errors=True)
            args = ["synth", target, "--samples", n, "--spots", self.spots, "--seed", SEED]
        elif stage == "embed":
            shutil.rmtree(store, ignore_errors=True)
            args = ["embed", "--samplesheet", self.sheet(n), "--store", store, "--encoder",
                    ENCODER, "--device", "cpu", "--json"]  # fmt: skip
        elif stage == "index":
            args = ["index", store]
        elif stage == "train":
            shutil.rmtree(model, ignore_errors=True)
            args = ["train", store, "--out", model, "--reference", reference, "--resolution", 16]
        elif stage == "predict":
            shutil.rmtree(out / "predict", ignore_errors=True)
            args = ["predict", store, model, "--resolution", 16, "--out", out / "predict"]
        elif stage == "interactions":
            args = ["interactions", store, model, "--cohort", "--resolution", 16, "--out",
                    out / "interactions"]  # fmt: skip
        elif stage == "niches":
            args = ["niches", store, model, "--out", out / "niches"]
        elif stage == "report":
            (out / "report").mkdir(exist_ok=True)
            args = ["report", store, "--model", model, "--out", out / "report" / "report.html"]
        else:
            args = ["export", store, out / "export.zarr", "--model", model, "--overwrite"]
        result = self.tmescope(*args, log=out / f"{stage}.log")
        result.update(stage=stage, samples=n, spots=self.spots)
        if stage == "synth":
            shutil.rmtree(self.cache / f"synth_{n}", ignore_errors=True)
        if stage == "embed":
            result["embedding"] = _embed_rates(out / "embed.log")
        self.results[key] = result
        self.results_file.write_text(json.dumps(self.results, indent=1))
        print(f"{stage} N={n}: {result['seconds']:.1f} s, {result['peak_rss_mb']:.0f} MB",
              file=sys.stderr, flush=True)  # fmt: skip
        return result

    def tmescope(self, *args: Any, log: Path) -> dict[str, Any]:
        """Run ``tmescope ARGS`` under GNU time; its wall seconds and peak RSS (MB)."""
        timing = log.with_suffix(".time")
        command = ["/usr/bin/time", "-f", "%e %M", "-o", str(timing), sys.executable, "-m",
                   "tmescope", *map(str, args)]  # fmt: skip
        started = time.time()
        with log.open("w") as handle:
            done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise SystemExit(f"tmescope {' '.join(map(str, args))} failed: see {log}")
        seconds, kilobytes = timing.read_text().split()[-2:]
        return {
            "seconds": float(seconds),
            "peak_rss_mb": round(int(kilobytes) / 1024, 1),
            "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        }

    def summary(self, sizes: list[int]) -> dict[str, Any]:
        rows = [self.results[f"{stage}/{n}"] for stage in STAGES for n in sizes
                if f"{stage}/{n}" in self.results]  # fmt: skip
        exponents = {}
        for stage in STAGES:
            points = [(r["samples"], r["seconds"]) for r in rows if r["stage"] == stage]
            if len(points) >= 2:
                exponents[stage] = round(_slope(points), 2)
        after = [r for r in rows if r["stage"] not in ("synth", "embed")]
        totals = {n: round(sum(r["seconds"] for r in after if r["samples"] == n), 1) for n in sizes}
        return {"rows": rows, "exponents": exponents, "after_embedding_s": totals}


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(seconds) on log(samples)."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(max(s, 1e-3)) for _, s in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _embed_rates(log: Path) -> dict[str, Any]:
    """Per-sample patches/s of ``embed --json``: the first and the last samples' rates."""
    text = log.read_text()
    start = text.find("[")
    try:
        summaries = json.loads(text[start:]) if start >= 0 else []
    except ValueError:
        return {}
    rates = [s["patches_per_s"] for s in summaries if s.get("patches_per_s")]
    if not rates:
        return {}
    k = max(1, min(5, len(rates) // 2))
    return {
        "samples": len(rates),
        "first_per_s": round(sum(rates[:k]) / k, 1),
        "last_per_s": round(sum(rates[-k:]) / k, 1),
        "patches": sum(s["rows_written"] for s in summaries),
    }


if __name__ == "__main__":
    raise SystemExit(main())
