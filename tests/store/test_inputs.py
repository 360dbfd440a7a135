"""Bad input is refused with a message, before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from cohort_factories import FINGERPRINT, SampleData, snapshot

from tmescope.errors import FingerprintMismatchError, InvalidParameterError, StoreError
from tmescope.store import CohortStore, SampleMeta, SampleRows
from tmescope.store.root import create_store


def _rows(**change: object) -> SampleRows:
    values: dict[str, object] = {
        "coords": np.zeros((3, 2)),
        "barcodes": np.array(["a", "b", "c"]),
        "kind": np.array([0, 0, 1]),
        "tissue_fraction": np.array([0.0, 0.5, 1.0]),
    }
    return SampleRows(**{**values, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"coords": np.zeros((3, 3))}, "coords must be an"),
        ({"coords": np.array([[0, 0], [np.nan, 1], [2, 2]])}, "NaN"),
        ({"barcodes": np.array(["a", "b"])}, "barcodes must be"),
        ({"barcodes": np.array(["a", "a", "c"])}, "unique"),
        ({"barcodes": np.array(["a", "", "c"])}, "non-empty"),
        ({"kind": np.array([0, 3, 1])}, "RowKind codes"),
        ({"kind": np.array([0.0, 0.0, 1.0])}, "RowKind codes"),
        ({"tissue_fraction": np.array([0.0, 1.5, 1.0])}, r"\[0, 1\]"),
        ({"tissue_fraction": np.zeros(2)}, "tissue_fraction must be"),
    ],
)
def test_bad_rows_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        _rows(**change)


def test_rows_take_their_stored_dtypes() -> None:
    rows = _rows()
    assert (rows.coords.dtype, rows.kind.dtype, rows.tissue_fraction.dtype) == (
        np.float32,
        np.uint8,
        np.float32,
    )
    assert (rows.n, rows.n_spots, rows.n_tiles) == (3, 2, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source_hash": ""}, "source_hash"),
        ({"mpp": 0.0}, "mpp"),
        ({"patch_um": float("inf")}, "patch_um"),
        ({"patch_px": 0}, "patch_px"),
        ({"extra": {"when": object()}}, "JSON"),
    ],
)
def test_bad_meta_is_refused(change: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "source_path": "/x",
        "source_hash": "h",
        "mpp": 0.5,
        "patch_um": 112.0,
        "patch_px": 224,
    }
    with pytest.raises(InvalidParameterError, match=message):
        SampleMeta(**{**values, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize("sample_id", ["", ".hidden", "a/b", "../up", "x" * 129, "sp ace"])
def test_unsafe_sample_ids_are_refused(
    store: CohortStore, sample: SampleData, sample_id: str
) -> None:
    before = snapshot(store.path)
    with pytest.raises(InvalidParameterError, match="sample id"):
        store.begin_sample(sample_id, rows=sample.rows, meta=sample.meta, dim=8)
    assert snapshot(store.path) == before


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (np.zeros((16, 7)), r"shape \(16, 8\)"),
        (np.full((16, 8), np.nan), "NaN or infinite"),
        (np.full((16, 8), 1e6), "float16 range"),
        (np.full((16, 8), "x"), "numbers"),
    ],
)
def test_bad_chunks_are_refused(
    store: CohortStore, sample: SampleData, embeddings: np.ndarray, message: str
) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        with pytest.raises(InvalidParameterError, match=message):
            writer.write_chunk(0, embeddings)
        with pytest.raises(InvalidParameterError, match="out of range"):
            writer.write_chunk(4, np.zeros((1, 8)))
        assert writer.pending_chunks() == [0, 1, 2, 3]
    with pytest.raises(StoreError, match="closed"):
        writer.write_chunk(0, np.zeros((16, 8)))


def test_the_last_chunk_is_short(store: CohortStore, sample: SampleData) -> None:
    writer = store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)
    assert writer is not None
    with writer:
        assert writer.rows(3) == slice(48, 49)
        with pytest.raises(InvalidParameterError, match=r"shape \(1, 8\)"):
            writer.write_chunk(3, np.zeros((16, 8)))


def test_losing_the_creation_race_changes_nothing(store_path: Path) -> None:
    CohortStore.open(store_path, mode="a", fingerprint=FINGERPRINT)
    before = snapshot(store_path)
    other = {"model": "test-vit-small"}
    create_store(store_path, other)  # a second creator that saw the path vacant a moment ago
    assert snapshot(store_path) == before
    assert os.listdir(store_path.parent) == ["cohort.zarr"]  # its staging folder is gone
    with pytest.raises(FingerprintMismatchError):
        CohortStore.open(store_path, mode="a", fingerprint=other)
