"""Index kinds, their layout policy and the search benchmark that measures them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tmescope.store.vector_index import ivf_layout, make_vector_index, recall_at

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "search.py"


@pytest.mark.parametrize(
    ("n", "layout"),
    [(1_000_000, (1024, 65_536)), (200_000, (512, 32_768)), (5_000, (64, 4_096)), (50, (1, 50))],
)
def test_ivf_layout_keeps_lists_near_root_n_with_enough_training_rows(
    n: int, layout: tuple[int, int]
) -> None:
    assert ivf_layout(n) == layout
    nlist, train_n = layout
    assert train_n >= min(n, 39 * nlist)


def test_recall_counts_shared_ids_per_row() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert recall_at(truth, found) == pytest.approx((0.5 + 1.0) / 2)


def test_ivf_keeps_rows_as_float16_and_is_tuned_to_the_target() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32))
    x = (centres[rng.integers(0, 20, 4000)] + 0.3 * rng.normal(size=(4000, 32))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index, params = make_vector_index(x, "ivf", rng=rng)
    assert params["storage"] == "fp16" and params["tuned_recall_at_10"] >= 0.95
    assert index.code_size == 32 * 2  # two bytes per dimension


def test_search_benchmark_prints_one_row_per_kind() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--n", "3000", "--dim", "32", "--queries", "20", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = json.loads(result.stdout)
    assert [r["kind"] for r in rows] == ["flat", "ivf", "hnsw"]
    keys = {"kind", "n", "dim", "build_s", "p50_ms", "p99_ms", "qps", "recall_at_10"}
    for row in rows:
        assert keys | {"speedup_vs_exact", "index_mb"} <= set(row)
        assert 0.0 <= row["recall_at_10"] <= 1.0
    assert rows[0]["recall_at_10"] == 1.0
