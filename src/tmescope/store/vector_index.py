"""FAISS index kinds: how each is laid out, built, tuned to a recall target and searched.

Pure FAISS over float32 arrays of L2-normalised rows (cosine = inner product); ``index.py``
persists what is built here inside the store, and ``benchmarks/search.py`` measures it. The
layout policy (IVF lists, training size, k-means iterations) is fixed by what builds in
minutes on a 2-core machine at a million rows while reaching recall@10 ≥ 0.95; see
docs/benchmarks.md for the figures behind it.

faiss-gpu is used when it is installed and sees a GPU: flat and IVF indexes are trained, filled
and searched there and written back as CPU indexes (HNSW has no GPU version and stays on the
CPU). Nothing here runs at import; FAISS is imported on first use.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal

import numpy as np

from tmescope.errors import MissingDependencyError

log = logging.getLogger(__name__)

VectorKind = Literal["flat", "ivf", "hnsw"]

TARGET_RECALL = 0.95  # recall@10 against exact that nprobe / efSearch are tuned to reach
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
IVF_TRAIN_PER_LIST = 64  # k-means sees 64 points per list (FAISS warns below 39)
IVF_KMEANS_ITERATIONS = 10  # centroids barely move after ~10 rounds; each round is a full GEMM
NPROBE_STEPS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
EF_SEARCH_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
TUNE_QUERIES = 200
GPU_MAX_K = 2048  # FAISS GPU search returns at most this many neighbours per query


def faiss_module() -> Any:
    """FAISS, imported on first use (the store package must import without it)."""
    try:
        import faiss
    except ImportError as error:
        raise MissingDependencyError(
            "similarity search needs FAISS: pip install faiss-cpu (or faiss-gpu-cu12)"
        ) from error
    return faiss


def ivf_layout(n: int) -> tuple[int, int]:
    """``(nlist, train_n)`` of an IVF index over ``n`` rows.

    nlist is the power of two nearest √n (1,024 lists at a million rows: ~1,000 rows per list,
    so a query scans a few dozen lists in well under a millisecond per list), never above n/39
    so that every list gets enough training points; k-means trains on 64 points per list.
    """
    if n < 1:
        raise ValueError(f"an IVF index needs at least one row, got {n}")
    nlist = 2 ** round(math.log2(max(1.0, math.sqrt(n))))
    nlist = max(1, min(nlist, n // 39))
    return nlist, min(n, IVF_TRAIN_PER_LIST * nlist)


def make_vector_index(
    x: np.ndarray, kind: VectorKind, *, rng: np.random.Generator
) -> tuple[Any, dict[str, Any]]:
    """Build a FAISS index of ``kind`` over ``x`` ``(n, dim)`` float32, rows L2-normalised.

    Returns the (CPU) index with its search setting tuned to ``TARGET_RECALL`` and the
    parameters to record: ``nlist``/``train_n``/``nprobe`` or ``M``/``efConstruction``/``efSearch``
    plus ``tuned_recall_at_10``.
    """
    faiss = faiss_module()
    n, dim = x.shape
    params: dict[str, Any] = {}
    if kind == "flat":
        index = _fill(faiss.IndexFlatIP(dim), x, train=None)
    elif kind == "ivf":
        nlist, train_n = ivf_layout(n)
        train = x[np.sort(rng.choice(n, train_n, replace=False))] if train_n < n else x
        # Rows kept as float16, as the store holds them: nothing is lost, and a query scans
        # half the bytes of float32 lists (twice as fast at a million rows, half the memory).
        index = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_fp16,
            faiss.METRIC_INNER_PRODUCT,
        )  # fmt: skip
        index.cp.niter = IVF_KMEANS_ITERATIONS
        index.cp.spherical = True  # centroids on the unit sphere, like the rows they stand for
        index = _fill(index, x, train=train)
        nprobe, recall = tune_setting(index, x, rng=rng, name="nprobe", limit=nlist)
        index.nprobe = nprobe
        params.update(
            nlist=nlist, storage="fp16", train_n=int(train_n), nprobe=nprobe,
            tuned_recall_at_10=recall,
        )  # fmt: skip
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(x)
        ef, recall = tune_setting(index, x, rng=rng, name="efSearch", limit=None)
        index.hnsw.efSearch = ef
        params.update(
            M=HNSW_M, efConstruction=HNSW_EF_CONSTRUCTION, efSearch=ef, tuned_recall_at_10=recall
        )
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    return index, params


def tune_setting(
    index: Any, x: np.ndarray, *, rng: np.random.Generator, name: str, limit: int | None
) -> tuple[int, float]:
    """The smallest ``nprobe``/``efSearch`` whose recall@10 against exact reaches the target.

    Queries are stored rows with a little noise (so the answer is not simply the row itself);
    the exact answer is a brute-force scan of ``x`` (no second copy of the data).
    """
    faiss = faiss_module()
    n, dim = x.shape
    k = min(10, n)
    q = x[rng.choice(n, min(n, TUNE_QUERIES), replace=False)].copy()
    q += rng.normal(scale=0.5 / math.sqrt(dim), size=q.shape).astype(np.float32)
    faiss.normalize_L2(q)
    _, truth = faiss.knn(q, x, k, metric=faiss.METRIC_INNER_PRODUCT)
    steps = NPROBE_STEPS if name == "nprobe" else EF_SEARCH_STEPS
    best = (steps[-1], 0.0)
    for value in steps:
        value = min(value, limit) if limit is not None else value
        _, found = index.search(q, k, params=search_parameters(name, value))
        best = (value, recall_at(truth, found))
        if best[1] >= TARGET_RECALL or (limit is not None and value >= limit):
            break
    return best[0], round(best[1], 4)


def search_parameters(name: str, value: int) -> Any:
    """FAISS per-call search parameters for ``nprobe`` (IVF) or ``efSearch`` (HNSW)."""
    faiss = faiss_module()
    if name == "nprobe":
        return faiss.SearchParametersIVF(nprobe=int(value))
    return faiss.SearchParametersHNSW(efSearch=int(value))


def recall_at(truth: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each row of ``truth`` (exact ids) found in the same row of ``found``."""
    k = truth.shape[1]
    pairs = zip(truth.tolist(), found.tolist(), strict=True)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in pairs]))


def on_search_device(index: Any, kind: str, params: Mapping[str, Any]) -> Any:
    """``index`` moved to the GPU for searching when faiss-gpu sees one, else itself.

    The GPU copy carries the tuned ``nprobe`` (GPU indexes take no per-call parameters); it
    answers at most ``GPU_MAX_K`` neighbours per query, so callers keep the CPU index for more.
    """
    resources = _gpu_resources()
    if resources is None or kind == "hnsw":
        return index
    faiss = faiss_module()
    gpu = faiss.index_cpu_to_gpu(resources, 0, index)
    if kind == "ivf":
        faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", int(params["nprobe"]))
    return gpu


def _fill(index: Any, x: np.ndarray, *, train: np.ndarray | None) -> Any:
    """Train (when asked) and add ``x``, on the GPU when there is one; a CPU index back."""
    resources = _gpu_resources()
    faiss = faiss_module()
    target = index if resources is None else faiss.index_cpu_to_gpu(resources, 0, index)
    if train is not None:
        target.train(train)
    target.add(x)
    return target if resources is None else faiss.index_gpu_to_cpu(target)


@cache
def _gpu_resources() -> Any:
    """FAISS GPU resources when faiss-gpu is installed and sees a GPU, else ``None``."""
    faiss = faiss_module()
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    log.info("FAISS runs on the GPU (%d visible)", faiss.get_num_gpus())
    return faiss.StandardGpuResources()
