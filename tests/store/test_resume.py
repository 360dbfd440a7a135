"""Interrupted samples: invisible until complete, resumed from their written chunks, identical.

Also what happens when a sample id comes back: skipped, redone on ``overwrite``, or refused.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from cohort_factories import (
    FINGERPRINT,
    SampleData,
    make_sample,
    snapshot,
    start_child,
    wait_for_line,
    write_sample,
)

from tmescope.errors import IncompleteSampleError, SampleConflictError
from tmescope.store import CohortStore, SampleStatus


def _assert_same_sample(a: CohortStore, b: CohortStore, sample_id: str) -> None:
    for read in (
        "read_embeddings",
        "read_coords",
        "read_barcodes",
        "read_kind",
        "read_tissue_fraction",
    ):
        np.testing.assert_array_equal(getattr(a, read)(sample_id), getattr(b, read)(sample_id))
    assert _timeless(a.sample_group(sample_id).attrs.asdict()) == _timeless(
        b.sample_group(sample_id).attrs.asdict()
    )


def _timeless(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k not in ("created", "completed")}


def _clean_copy(tmp_path: Path, sample_id: str, data: SampleData, *, counts: bool) -> CohortStore:
    clean = CohortStore.open(tmp_path / "clean.zarr", mode="a", fingerprint=FINGERPRINT)
    write_sample(clean, sample_id, data, counts=counts)
    return clean


def test_an_unfinished_sample_is_invisible_to_readers(
    store: CohortStore, sample: SampleData
) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        writer.write_chunk(0, sample.embeddings[writer.rows(0)])
    assert store.sample_ids() == []
    assert store.sample_ids(include_incomplete=True) == ["S1"]
    assert store.sample_status("S1") is SampleStatus.WRITING
    with pytest.raises(IncompleteSampleError, match="'writing', not complete"):
        store.read_embeddings("S1")
    assert [s.status for s in store.summary()] == ["writing"]


def test_a_dropped_writer_resumes_where_it_stopped(
    store: CohortStore, sample: SampleData, tmp_path: Path
) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert writer is not None
    assert writer.pending_chunks() == [0, 1, 2, 3]
    for i in (0, 2):
        writer.write_chunk(i, sample.embeddings[writer.rows(i)])
    writer.close()  # a crash: the lock goes, the sample stays "writing"
    assert writer.closed

    reopened = CohortStore.open(store.path, mode="a", fingerprint=FINGERPRINT)
    resumed = reopened.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert resumed is not None
    with resumed:
        assert resumed.pending_chunks() == [1, 3]
        for i in resumed.pending_chunks():
            resumed.write_chunk(i, sample.embeddings[resumed.rows(i)])
        resumed.finish(sample.counts)
    _assert_same_sample(reopened, _clean_copy(tmp_path, "S1", sample, counts=True), "S1")
    assert reopened.verify() == []


def test_a_chunk_whose_flag_did_not_land_is_written_again(
    store: CohortStore, sample: SampleData
) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        writer.write_chunk(0, sample.embeddings[writer.rows(0)])
        writer.write_chunk(1, sample.embeddings[writer.rows(1)])
    flags = zarr.open_array(store.path / "samples/S1/chunks_written", mode="r+")
    flags[1] = False  # killed between the data and the flag
    (store.path / "samples/S1/chunks_written/c/0").write_bytes(b"")  # a flag torn by a power cut
    resumed = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert resumed is not None
    with resumed:
        assert resumed.pending_chunks() == [0, 1, 2, 3]


def test_a_sample_killed_mid_write_resumes_identically(store: CohortStore, tmp_path: Path) -> None:
    data = make_sample(n_spots=150, n_tiles=10)  # 10 chunks of 16 rows
    # Held before chunk 3 (a gate never opened): killed with exactly chunks 0-2 written.
    child = start_child(store.path, "S1", data, tmp_path, hold_at=3, gate=tmp_path / "never")
    try:
        wait_for_line(child, "holding")
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert store.sample_ids() == []

    writer = store.begin_sample("S1", rows=data.rows, meta=data.meta, dim=8, chunk_rows=16)
    assert writer is not None  # the dead process's lock went with it
    with writer:
        pending = writer.pending_chunks()
        assert pending == list(range(3, 10))
        for i in pending:
            writer.write_chunk(i, data.embeddings[writer.rows(i)])
        writer.finish()
    _assert_same_sample(store, _clean_copy(tmp_path, "S1", data, counts=False), "S1")
    assert store.verify() == []
    assert not list((store.path / "samples").glob(".*"))  # no lock file left


def test_a_complete_sample_is_skipped_and_left_alone(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", sample)
    before = snapshot(store.path)
    assert (
        store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16) is None
    )
    assert snapshot(store.path) == before


def test_overwrite_redoes_a_complete_sample(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    other = make_sample(seed=7, source_hash="h7")
    writer = store.begin_sample(
        "S1", rows=other.rows, meta=other.meta, dim=8, chunk_rows=16, overwrite=True
    )
    assert writer is not None
    assert store.sample_ids() == []  # the old one is gone, the new one not there yet
    with writer:
        assert writer.pending_chunks() == [0, 1, 2, 3]
        for i in writer.pending_chunks():
            writer.write_chunk(i, other.embeddings[writer.rows(i)])
        writer.finish(other.counts)
    np.testing.assert_array_equal(store.read_embeddings("S1"), other.embeddings.astype(np.float16))
    assert store.sample_record("S1").meta.source_hash == "h7"


@pytest.mark.parametrize("finished", [True, False])
def test_other_inputs_under_the_same_id_are_refused(
    store: CohortStore, sample: SampleData, finished: bool
) -> None:
    if finished:
        write_sample(store, "S1", sample)
    else:
        writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
        assert writer is not None
        writer.close()
    before = snapshot(store.path)
    other = make_sample(source_hash="changed")
    with pytest.raises(
        SampleConflictError,
        match=r"source hash: store has 'h0', asked for 'changed'.*overwrite=True",
    ):
        store.begin_sample("S1", rows=other.rows, meta=other.meta, dim=8, chunk_rows=16)
    with pytest.raises(SampleConflictError, match="chunk_rows"):
        store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=32)
    assert snapshot(store.path) == before


def test_finish_refuses_while_chunks_are_pending(store: CohortStore, sample: SampleData) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        writer.write_chunk(0, sample.embeddings[writer.rows(0)])
        with pytest.raises(IncompleteSampleError, match=r"row chunks \[1, 2, 3\]"):
            writer.finish()
    assert store.sample_status("S1") is SampleStatus.WRITING


def test_rewriting_a_chunk_replaces_it(store: CohortStore, sample: SampleData) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        writer.write_chunk(0, np.zeros((16, 8)))
        for i in range(writer.n_chunks):
            writer.write_chunk(i, sample.embeddings[writer.rows(i)])
        writer.finish()
    np.testing.assert_array_equal(store.read_embeddings("S1"), sample.embeddings.astype(np.float16))
