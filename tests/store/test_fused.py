"""Fused sets in the store: written whole, read back, stale after a re-embed, indexed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from cohort_factories import SampleData, make_sample, snapshot, write_sample

from tmescope.errors import InvalidParameterError, StoreError
from tmescope.store import CohortStore
from tmescope.store.fused import (
    FusedModelInfo,
    FusedSample,
    fresh_samples,
    fused_models,
    read_fused_sample,
    write_fused_sample,
    write_model_info,
)
from tmescope.store.index import RAW, VectorSpace, build_index, index_status, load_index

MODEL = "abc123def456"


def _info(store: CohortStore, dim: int = 6) -> FusedModelInfo:
    return FusedModelInfo(
        model_id=MODEL, model_dir="/models/m", dim=dim, genes=("G0", "G1"),
        state_names=("tumour", "t_cells", "vessels"), fingerprint=store.fingerprint,
    )  # fmt: skip


def _fused(data: SampleData, *, seed: int = 0, dim: int = 6) -> FusedSample:
    rng = np.random.default_rng(seed)
    n = len(data.rows.barcodes)
    return FusedSample(
        rows=np.arange(n, dtype=np.int64),
        fused=rng.normal(size=(n, dim)).astype(np.float32),
        states=rng.normal(size=(n, 3)).astype(np.float32),
        states_std=rng.uniform(0.1, 1, size=(n, 3)).astype(np.float32),
        expression=rng.normal(size=(n, 2)).astype(np.float32),
    )


@pytest.fixture
def two(store: CohortStore) -> CohortStore:
    for i, sid in enumerate(("S1", "S2")):
        write_sample(store, sid, make_sample(seed=i, source_hash=f"h{i}"))
    return store


def test_a_written_set_reads_back_and_is_fresh(two: CohortStore) -> None:
    write_model_info(two, _info(two))
    data = _fused(make_sample(seed=0))
    write_fused_sample(two, MODEL, "S1", data, grid=True)
    back = read_fused_sample(two, MODEL, "S1")
    np.testing.assert_array_equal(back.rows, data.rows)
    np.testing.assert_allclose(back.fused, data.fused, atol=2e-3)  # float16 on disk
    np.testing.assert_array_equal(back.states, data.states)
    assert set(fresh_samples(two, MODEL)) == {"S1"}
    assert [m.model_id for m in fused_models(two)] == [MODEL]
    assert fused_models(two)[0].state_names == ("tumour", "t_cells", "vessels")
    assert not [p for p in (two.path / "fused" / MODEL).iterdir() if p.name.startswith(".")]


def test_embedding_a_sample_again_makes_its_set_stale(two: CohortStore) -> None:
    write_model_info(two, _info(two))
    write_fused_sample(two, MODEL, "S1", _fused(make_sample(seed=0)), grid=False)
    again = make_sample(seed=0, source_hash="other")
    writer = two.begin_sample(
        "S1", rows=again.rows, meta=again.meta, dim=8, chunk_rows=16, overwrite=True
    )
    assert writer is not None
    with writer:
        for i in writer.pending_chunks():
            writer.write_chunk(i, again.embeddings[writer.rows(i)])
        writer.finish(again.counts)
    assert (two.path / "fused" / MODEL / "S1").is_dir() and fresh_samples(two, MODEL) == {}


def test_removing_a_sample_removes_its_sets(two: CohortStore) -> None:
    write_model_info(two, _info(two))
    write_fused_sample(two, MODEL, "S1", _fused(make_sample(seed=0)), grid=False)
    two.remove_sample("S1")
    assert not (two.path / "fused" / MODEL / "S1").exists() and two.verify() == []


def test_verify_names_damaged_sets_and_the_next_write_sweeps_leftovers(two: CohortStore) -> None:
    import shutil
    import subprocess
    import sys

    from tmescope.store.atomic import work_path

    write_model_info(two, _info(two))
    write_fused_sample(two, MODEL, "S1", _fused(make_sample(seed=0)), grid=False)
    assert two.verify() == []
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    leftover = work_path(two.path / "fused" / MODEL / "S2")
    leftover = leftover.with_name(
        leftover.name.replace(f"-{os.getpid()}-", f"-{gone.stdout.strip()}-")
    )
    leftover.mkdir()  # as a killed writer of S2's set leaves it
    shutil.rmtree(two.path / "fused" / MODEL / "S1" / "states")
    problems = two.verify()
    assert len(problems) == 1 and f"fused/{MODEL}/S1: damaged" in problems[0]
    write_fused_sample(two, MODEL, "S2", _fused(make_sample(seed=1)), grid=False)
    assert not leftover.exists()


def test_a_second_write_replaces_the_set_whole(two: CohortStore) -> None:
    write_model_info(two, _info(two))
    write_fused_sample(two, MODEL, "S1", _fused(make_sample(seed=0), seed=1), grid=False)
    newer = _fused(make_sample(seed=0), seed=2)
    write_fused_sample(two, MODEL, "S1", newer, grid=False)
    np.testing.assert_array_equal(read_fused_sample(two, MODEL, "S1").states, newer.states)


def test_bad_sets_are_refused_before_anything_is_written(two: CohortStore) -> None:
    write_model_info(two, _info(two))
    data = _fused(make_sample(seed=0))
    bad = FusedSample(data.rows, data.fused[:-1], data.states, data.states_std, data.expression)
    before = snapshot(two.path)
    with pytest.raises(InvalidParameterError, match="fused fused"):
        write_fused_sample(two, MODEL, "S1", bad, grid=False)
    with pytest.raises(InvalidParameterError, match="plain name"):
        write_fused_sample(two, "../x", "S1", data, grid=False)
    assert snapshot(two.path) == before


def test_a_read_only_store_refuses_to_write(two: CohortStore) -> None:
    reader = CohortStore.open(two.path, mode="r")
    with pytest.raises(StoreError, match="read-only"):
        write_model_info(reader, _info(reader))


def test_missing_sets_name_the_command_that_writes_them(two: CohortStore) -> None:
    with pytest.raises(StoreError, match="tmescope niches"):
        read_fused_sample(two, MODEL, "S1")


def test_the_fused_space_has_its_own_index(two: CohortStore, tmp_path: Path) -> None:
    write_model_info(two, _info(two))
    sets = {sid: _fused(make_sample(seed=i), seed=i) for i, sid in enumerate(("S1", "S2"))}
    for sid, data in sets.items():
        write_fused_sample(two, MODEL, sid, data, grid=True)
    space = VectorSpace(MODEL)
    info = build_index(two, kind="flat", space=space)
    assert info.space == f"fused:{MODEL}" and info.dim == 6 and info.n == 2 * 49
    assert index_status(two, RAW) == "missing" and index_status(two, space) == "fresh"
    index = load_index(two, space=space)
    hits = index.search(sets["S2"].fused[5], k=1)[0]
    assert (hits[0].sample_id, hits[0].barcode) == ("S2", "AAAC0005-1")
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    two.remove_sample("S2")
    assert index_status(two, space) == "stale"
