"""Several processes on one store: different samples both land, the same sample is refused."""

from __future__ import annotations

import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
from cohort_factories import FINGERPRINT, SampleData, make_sample, start_child, wait_for_line

from tmescope.errors import StaleLockWarning, StoreLockedError
from tmescope.store import CohortStore


def test_two_processes_create_one_store_and_write_two_samples(
    store_path: Path, tmp_path: Path
) -> None:
    samples = {
        "S1": make_sample(seed=1, source_hash="h1"),
        "S2": make_sample(seed=2, source_hash="h2"),
    }
    # Neither exists yet: both race to create the store, then write chunks side by side.
    children = [
        start_child(store_path, sid, data, tmp_path, delay=0.02) for sid, data in samples.items()
    ]
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.splitlines()[-1] == "done"
    store = CohortStore.open(store_path, fingerprint=FINGERPRINT)
    assert store.sample_ids() == ["S1", "S2"]
    for sid, data in samples.items():
        np.testing.assert_array_equal(
            store.read_embeddings(sid), data.embeddings.astype(np.float16)
        )
        np.testing.assert_array_equal(store.read_barcodes(sid), data.rows.barcodes)
    assert store.verify() == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_sample_being_written_elsewhere_is_refused(
    store: CohortStore, sample: SampleData, tmp_path: Path
) -> None:
    data = make_sample(n_spots=100)  # 7 chunks
    gate = tmp_path / "go"
    # The first writer holds its lock after two chunks until the gate opens: however slow the
    # machine, the checks below run while it is certainly mid-way.
    first = start_child(store.path, "S1", data, tmp_path, hold_at=2, gate=gate)
    try:
        wait_for_line(first, "holding")
        with pytest.raises(
            StoreLockedError, match=r"being written by another live process \(pid \d+"
        ):
            store.begin_sample("S1", rows=data.rows, meta=data.meta, dim=8, chunk_rows=16)
        with pytest.raises(StoreLockedError):
            store.remove_sample("S1")
        second = start_child(store.path, "S1", data, tmp_path)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 3 and out.startswith("locked")
    finally:
        gate.touch()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert store.sample_ids() == ["S1"]
    # Another sample is not blocked by the first one's lock.
    writer = store.begin_sample("S2", rows=sample.rows, meta=sample.meta, dim=8)
    assert writer is not None
    writer.close()


def test_the_same_sample_twice_in_one_process_is_refused(
    store: CohortStore, sample: SampleData
) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8)
    assert writer is not None
    with writer, pytest.raises(StoreLockedError):
        store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8)
    again = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8)  # released
    assert again is not None
    again.close()


def test_a_lock_left_by_a_killed_writer_is_taken_over_with_a_warning(
    store: CohortStore, tmp_path: Path
) -> None:
    data = make_sample(n_spots=100)
    child = start_child(store.path, "S1", data, tmp_path, hold_at=2, gate=tmp_path / "never")
    try:
        wait_for_line(child, "holding")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert (store.path / "samples" / ".S1.lock").read_text().startswith(f"{child.pid}@")
    with pytest.warns(StaleLockWarning, match=rf"left by pid {child.pid} on .*which is gone"):
        writer = store.begin_sample("S1", rows=data.rows, meta=data.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        assert writer.pending_chunks() == list(range(2, 7))  # the two written chunks stay
        for i in writer.pending_chunks():
            writer.write_chunk(i, data.embeddings[i * 16 : (i + 1) * 16])
        writer.finish()
    np.testing.assert_array_equal(
        store.read_embeddings("S1"), data.embeddings.astype(np.float16)
    )
    assert store.verify() == []
    # A lock released the usual way leaves nothing behind to warn about.
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleLockWarning)
        store.remove_sample("S1")
