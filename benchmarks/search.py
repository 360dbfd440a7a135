"""Similarity search at cohort scale: build time, memory, latency, throughput and recall per kind.

    python benchmarks/search.py [--n 1000000] [--dim 1536] [--queries 200] [--json]

Synthetic embeddings shaped like a foundation model's (see ``clustered_embeddings``) are
generated in float16, as the store holds them, then each index kind of ``store/vector_index.py``
is built exactly as ``tmescope index`` builds it (same layout policy, same recall tuning) and
measured on held-out queries drawn from the same distribution:

- ``build_s``: train + add (+ tuning of nprobe / efSearch), seconds;
- ``index_mb``: resident memory the index added; ``peak_rss_mb``: the process's peak so far;
- ``p50_ms`` / ``p99_ms``: one query at a time, k = 10 (exact search: the first 30 queries);
- ``qps``: all queries in one batch call;
- ``recall_at_10``: against exact search on the same normalised vectors;
- ``speedup_vs_exact``: exact single-query p50 divided by this kind's.

HNSW is skipped above ``--hnsw-max-n`` (its build at a million 1,536-dim rows takes far longer
than the IVF's on two cores); the reason is printed. Prints a JSON list, one object per kind.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import sys
import time
from typing import Any

import numpy as np

from tmescope.store.vector_index import make_vector_index, recall_at, search_parameters

K = 10
EXACT_TIMED_QUERIES = 30  # single exact queries timed for p50/p99


def clustered_embeddings(
    n: int, dim: int, *, rng: np.random.Generator, latent: int = 64, chunk: int = 50_000
) -> np.ndarray:
    """``(n, dim)`` float16 rows shaped like pathology foundation-model embeddings.

    Real spot embeddings share a large common component (every H&E patch looks alike next to
    ImageNet), vary mostly along a few dozen directions whose variance decays, fall into tissue
    types of very unequal size that blur into each other, and carry isotropic noise in every
    dimension. Here: ``n_types ≈ √n/2`` cluster centres in a ``latent``-dimensional space, Zipf
    sizes, within-type spread as large as half the spacing of the centres, a projection to
    ``dim`` with singular values decaying as 1/√i, a shared mean, and noise that holds about a
    quarter of the variance.
    """
    latent = min(latent, dim)
    n_types = max(8, round(math.sqrt(n) / 2))
    centres = rng.normal(scale=1.0, size=(n_types, latent))
    sizes = 1.0 / np.arange(1, n_types + 1)
    types = rng.choice(n_types, size=n, p=sizes / sizes.sum())
    basis, _ = np.linalg.qr(rng.normal(size=(dim, latent)))
    projection = (basis * (1.0 / np.sqrt(np.arange(1, latent + 1)))).T.astype(np.float32)
    signal = float((projection**2).sum() * 1.25) / dim  # variance per dim of centre + spread
    noise = math.sqrt(signal / 3)  # a quarter of the total variance
    mean = rng.normal(scale=2.0 * math.sqrt(signal), size=dim).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        z = centres[types[start:stop]] + rng.normal(scale=0.5, size=(stop - start, latent))
        block = z.astype(np.float32) @ projection + mean
        block += rng.standard_normal(size=block.shape, dtype=np.float32) * noise
        out[start:stop] = block
    return out


def normalised(x16: np.ndarray, *, chunk: int = 100_000) -> np.ndarray:
    """float32, L2-normalised rows (built chunk by chunk: no float64 temporaries)."""
    x = np.empty(x16.shape, dtype=np.float32)
    for start in range(0, len(x16), chunk):
        block = x16[start : start + chunk].astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[start : start + chunk] = block
    return x


def rss_mb() -> float:
    """Current resident memory of this process (Linux), MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency(index: Any, queries: np.ndarray, params: Any) -> tuple[float, float, np.ndarray]:
    """p50 and p99 (ms) of one-query searches, and the ids found."""
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = index.search(q[None], K, params=params)
        times.append(time.perf_counter() - start)
        found.append(ids[0])
    ms = np.asarray(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), np.asarray(found)


def measure(
    kind: str, x: np.ndarray, queries: np.ndarray, truth: np.ndarray | None, *, seed: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Build one kind, then time it: its row of the table and the ids it found.

    ``truth`` is exact search's answer; ``None`` when measuring exact search itself.
    """
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    index, params = make_vector_index(x, kind, rng=np.random.default_rng(seed))  # type: ignore[arg-type]
    build_s = time.perf_counter() - start
    index_mb = rss_mb() - before
    search = None
    if kind == "ivf":
        search = search_parameters("nprobe", params["nprobe"])
    elif kind == "hnsw":
        search = search_parameters("efSearch", params["efSearch"])
    # Exact search over a million rows takes most of a second per query: time a few of them,
    # and take its answers to all queries (the truth) from the batch call.
    timed = queries if truth is not None else queries[:EXACT_TIMED_QUERIES]
    p50, p99, found = latency(index, timed, search)
    start = time.perf_counter()
    _, batch_found = index.search(queries, K, params=search)
    batch_s = time.perf_counter() - start
    if truth is None:
        found = batch_found
    row = {
        "kind": kind,
        "n": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "build_s": round(build_s, 2),
        "index_mb": round(index_mb, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "qps": round(len(queries) / batch_s, 1),
        "recall_at_10": 1.0 if truth is None else round(recall_at(truth, found), 4),
        "params": params,
    }
    del index
    return row, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="rows in the index")
    parser.add_argument("--dim", type=int, default=1536, help="embedding width")
    parser.add_argument("--queries", type=int, default=200, help="held-out queries")
    parser.add_argument("--kinds", default="flat,ivf,hnsw", help="comma-separated index kinds")
    parser.add_argument("--hnsw-max-n", type=int, default=250_000, help="skip HNSW above this n")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the JSON list")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    both = clustered_embeddings(args.n + args.queries, args.dim, rng=rng)
    x16, q16 = both[: args.n], both[args.n :].copy()  # a copy: a view would keep `both` alive
    say(f"generated {args.n:,} × {args.dim} float16 rows in {time.perf_counter() - start:.1f} s")
    x = normalised(x16)
    del both, x16
    queries = normalised(q16)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    flat, truth = measure("flat", x, queries, None, seed=args.seed)  # the yardstick
    rows = [flat | {"speedup_vs_exact": 1.0}] if "flat" in kinds else []
    say(json.dumps(flat))
    for kind in (k for k in kinds if k != "flat"):
        if kind == "hnsw" and args.n > args.hnsw_max_n:
            say(f"hnsw skipped: n = {args.n:,} > --hnsw-max-n {args.hnsw_max_n:,} (build too slow)")
            continue
        row, _ = measure(kind, x, queries, truth, seed=args.seed)
        row["speedup_vs_exact"] = round(flat["p50_ms"] / row["p50_ms"], 1)
        rows.append(row)
        say(json.dumps(row))
    machine = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    for row in rows:
        row.update(machine)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(
                f"{row['kind']:5} n={row['n']:,} build {row['build_s']:8.1f} s  "
                f"index {row['index_mb']:8.0f} MB  p50 {row['p50_ms']:8.2f} ms  "
                f"p99 {row['p99_ms']:8.2f} ms  {row['qps']:9.0f} q/s  "
                f"recall@10 {row['recall_at_10']:.3f}  {row['speedup_vs_exact']:7.1f}× exact"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
