"""Opening: the fingerprint guard, paths that are not stores, paths that cannot be written.

A refused open must leave the path byte-for-byte as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import pytest
import zarr
from cohort_factories import FINGERPRINT, SampleData, snapshot, write_sample

from tmescope.errors import (
    FingerprintMismatchError,
    InvalidParameterError,
    NotAStoreError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
    StoreNotWritableError,
)
from tmescope.store import CohortStore

OTHER = {**FINGERPRINT, "model": "test-vit-small"}


def test_a_new_store_holds_the_fingerprint_and_no_samples(store_path: Path) -> None:
    store = CohortStore.open(store_path, mode="a", fingerprint=FINGERPRINT)
    assert store.fingerprint == FINGERPRINT
    assert store.sample_ids() == []
    assert sorted(os.listdir(store_path)) == ["samples", "zarr.json"]
    assert [p.name for p in store_path.parent.iterdir()] == ["cohort.zarr"]  # no staging left


def test_a_store_can_be_created_in_an_empty_folder(store_path: Path) -> None:
    store_path.mkdir()
    CohortStore.open(store_path, mode="a", fingerprint=FINGERPRINT)
    assert CohortStore.open(store_path).fingerprint == FINGERPRINT


def test_another_fingerprint_is_refused_and_nothing_changes(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", sample)
    before = snapshot(store.path)
    with pytest.raises(FingerprintMismatchError) as caught:
        CohortStore.open(store.path, mode="a", fingerprint=OTHER)
    message = str(caught.value)
    assert "holds embeddings of test-vit-tiny (weights seed:0)" in message
    assert "asked for test-vit-small (weights seed:0)" in message
    assert "model: store has 'test-vit-tiny', asked for 'test-vit-small'" in message
    with pytest.raises(FingerprintMismatchError, match="input_px"):
        CohortStore.check_compatible(store.path, {**FINGERPRINT, "input_px": 224})
    assert snapshot(store.path) == before


def test_a_missing_field_counts_as_a_difference(store: CohortStore) -> None:
    short = {k: v for k, v in FINGERPRINT.items() if k != "pooling"}
    with pytest.raises(
        FingerprintMismatchError, match="pooling: store has 'cls', asked for no value"
    ):
        CohortStore.open(store.path, mode="r", fingerprint=short)


def test_the_same_fingerprint_in_another_form_matches(store: CohortStore) -> None:
    same = {**FINGERPRINT, "mean": (0.5, 0.5, 0.5), "input_px": 32.0}  # tuple, float
    CohortStore.open(store.path, mode="a", fingerprint=same)


def test_opening_to_append_writes_nothing(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    before = snapshot(store.path)
    CohortStore.open(store.path, mode="a", fingerprint=FINGERPRINT).sample_ids()
    CohortStore.check_compatible(store.path, FINGERPRINT)
    assert snapshot(store.path) == before


def test_creating_a_store_needs_a_fingerprint(store_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="needs the encoder fingerprint"):
        CohortStore.open(store_path, mode="a")
    assert not store_path.exists()


@pytest.mark.parametrize("bad", [{}, {"model": float("nan")}, {"model": object()}, {1: "x"}])
def test_a_malformed_fingerprint_is_refused(store_path: Path, bad: dict) -> None:
    with pytest.raises(InvalidParameterError, match="fingerprint"):
        CohortStore.open(store_path, mode="a", fingerprint=bad)
    assert not store_path.exists()


def test_writing_embeddings_needs_the_fingerprint(store: CohortStore, sample: SampleData) -> None:
    unchecked = CohortStore.open(store.path, mode="a")  # enough to list or remove samples
    with pytest.raises(StoreError, match="needs the encoder fingerprint"):
        unchecked.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8)


def test_a_missing_store_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no cohort store"):
        CohortStore.open(tmp_path / "nope.zarr")
    with pytest.raises(FileNotFoundError):  # also a built-in FileNotFoundError
        CohortStore.open(tmp_path / "nope.zarr")


def test_a_folder_with_files_is_not_a_store(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = snapshot(folder)
    modes: tuple[Literal["r", "a"], ...] = ("r", "a")
    for mode in modes:
        with pytest.raises(NotAStoreError, match="not a tmescope cohort store"):
            CohortStore.open(folder, mode=mode, fingerprint=FINGERPRINT)
    assert snapshot(folder) == before


def test_a_foreign_zarr_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "other.zarr"
    zarr.open_group(path, mode="w", attributes={"owner": "someone"}).create_array(
        "x", shape=(3,), dtype="int8"
    )
    before = snapshot(path)
    with pytest.raises(NotAStoreError, match="Zarr group but not a tmescope cohort store"):
        CohortStore.open(path, mode="a", fingerprint=FINGERPRINT)
    assert snapshot(path) == before


def test_a_zarr_array_or_a_file_is_not_a_store(tmp_path: Path) -> None:
    array = tmp_path / "array.zarr"
    zarr.create_array(array, shape=(2,), dtype="int8")
    with pytest.raises(NotAStoreError, match="not a Zarr v3 group"):
        CohortStore.open(array)
    file = tmp_path / "file.zarr"
    file.write_text("x")
    with pytest.raises(NotAStoreError, match="is a file"):
        CohortStore.open(file, mode="a", fingerprint=FINGERPRINT)


def test_a_store_from_a_newer_tmescope_is_refused(store: CohortStore) -> None:
    metadata_file = store.path / "zarr.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["attributes"]["tmescope"]["schema_version"] = 99
    metadata_file.write_text(json.dumps(metadata))
    with pytest.raises(SchemaVersionError, match=r"v99.*upgrade tmescope"):
        CohortStore.open(store.path)


def test_a_path_under_a_file_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    path = blocker / "cohort.zarr"
    with pytest.raises(StoreNotWritableError, match="cannot create a cohort store"):
        CohortStore.check_compatible(path, FINGERPRINT)
    with pytest.raises(StoreNotWritableError, match="cannot create a cohort store"):
        CohortStore.open(path, mode="a", fingerprint=FINGERPRINT)
    assert sorted(os.listdir(tmp_path)) == ["blocker"]


def test_a_read_only_store_cannot_be_opened_to_append(
    store: CohortStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.access is what the check asks; faking it tests the message even when running as root.
    monkeypatch.setattr("tmescope.store.root.os.access", lambda *_: False)
    with pytest.raises(StoreNotWritableError, match="read-only for this user"):
        CohortStore.open(store.path, mode="a", fingerprint=FINGERPRINT)
    assert CohortStore.open(store.path).sample_ids() == []  # reading is fine


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_a_store_without_write_permission_cannot_be_opened_to_append(store: CohortStore) -> None:
    os.chmod(store.path / "samples", 0o555)
    try:
        with pytest.raises(StoreNotWritableError):
            CohortStore.open(store.path, mode="a", fingerprint=FINGERPRINT)
    finally:
        os.chmod(store.path / "samples", 0o755)


def test_an_unknown_mode_is_refused(store_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="mode"):
        CohortStore.open(store_path, mode="w", fingerprint=FINGERPRINT)  # type: ignore[arg-type]
