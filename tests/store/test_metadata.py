"""A sample's metadata (a sample sheet's columns): kept, shown, and replaced without re-embedding."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cohort_factories import FINGERPRINT, SampleData, make_sample, write_sample

from tmescope.errors import InvalidParameterError, SampleNotFoundError, StoreError, StoreLockedError
from tmescope.store import CohortStore

SHEET = {"patient": "P01", "group": "responder"}


def with_metadata(data: SampleData, metadata: dict[str, str]) -> SampleData:
    extra = {**data.meta.extra, "mpp_source": "spot-pitch", "metadata": metadata}
    return dataclasses.replace(data, meta=dataclasses.replace(data.meta, extra=extra))


def test_a_sample_without_a_sheet_has_empty_metadata(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", sample)
    record = store.sample_record("S1")
    assert record.metadata == {} and record.mpp_source is None
    (summary,) = store.summary()
    assert (summary.mpp, summary.mpp_source, summary.metadata) == (0.4, None, {})


def test_metadata_and_mpp_source_are_kept_and_summarised(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", with_metadata(sample, SHEET))
    assert store.sample_record("S1").metadata == SHEET
    assert store.sample_record("S1").mpp_source == "spot-pitch"
    (summary,) = store.summary()
    assert (summary.mpp, summary.mpp_source, summary.metadata) == (0.4, "spot-pitch", SHEET)
    assert store.info().samples[0].metadata == SHEET


def test_updating_metadata_replaces_them_alone_and_whole(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", with_metadata(sample, SHEET))
    before = store.sample_group("S1").attrs.asdict()
    fixed = {"patient": "P02", "group": "responder"}
    assert store.update_sample_metadata("S1", fixed) is True
    after = store.sample_group("S1").attrs.asdict()
    assert after["extra"]["metadata"] == fixed
    after["extra"]["metadata"] = SHEET
    assert after == before  # nothing else changed
    assert store.update_sample_metadata("S1", fixed) is False  # already these
    sample_dir = store.path / "samples" / "S1"
    assert sorted(p.name for p in sample_dir.iterdir() if p.name.startswith(".")) == []
    assert not list((store.path / "samples").glob(".*lock"))  # the lock was let go
    assert store.verify() == []
    assert CohortStore.open(store.path).sample_record("S1").metadata == fixed


def test_an_update_waits_for_no_writer_and_checks_what_it_is_given(
    store: CohortStore, store_path: Path
) -> None:
    data = make_sample()
    writer = store.begin_sample("S1", rows=data.rows, meta=data.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer, pytest.raises(StoreLockedError):
        store.update_sample_metadata("S1", SHEET)
    with pytest.raises(SampleNotFoundError):
        store.update_sample_metadata("nope", SHEET)
    with pytest.raises(InvalidParameterError, match="text values"):
        store.update_sample_metadata("S1", {"patient": 1})  # type: ignore[dict-item]
    with pytest.raises(StoreError, match="read-only"):
        CohortStore.open(store_path).update_sample_metadata("S1", SHEET)


def test_a_resumed_sample_takes_the_metadata_it_is_resumed_with(store: CohortStore) -> None:
    first = with_metadata(make_sample(), SHEET)
    writer = store.begin_sample("S1", rows=first.rows, meta=first.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        writer.write_chunk(0, first.embeddings[writer.rows(0)])  # then killed
    fixed = {"patient": "P02"}
    again = with_metadata(make_sample(), fixed)
    reopened = CohortStore.open(store.path, mode="a", fingerprint=FINGERPRINT)
    resumed = reopened.begin_sample("S1", rows=again.rows, meta=again.meta, dim=8, chunk_rows=16)
    assert resumed is not None
    with resumed:
        assert resumed.pending_chunks() == [1, 2, 3]
        for i in resumed.pending_chunks():
            resumed.write_chunk(i, again.embeddings[resumed.rows(i)])
        resumed.finish(again.counts)
    assert reopened.sample_record("S1").metadata == fixed
    assert reopened.verify() == []
