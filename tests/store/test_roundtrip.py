"""What goes in comes back out — through tmescope, and through plain zarr and anndata."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import zarr
from cohort_factories import FINGERPRINT, SampleData, make_sample, write_sample

from tmescope.errors import SampleNotFoundError, StoreError
from tmescope.store import CohortStore, RowKind, SampleStatus
from tmescope.store.atomic import DOOMED, work_path


def test_round_trip(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    reader = CohortStore.open(store.path)
    assert reader.sample_ids() == ["S1"]
    assert reader.sample_status("S1") is SampleStatus.COMPLETE
    embeddings = reader.read_embeddings("S1")
    assert embeddings.dtype == np.float16
    np.testing.assert_array_equal(embeddings, sample.embeddings.astype(np.float16))
    np.testing.assert_array_equal(reader.read_coords("S1"), sample.rows.coords)
    np.testing.assert_array_equal(reader.read_barcodes("S1"), sample.rows.barcodes)
    np.testing.assert_array_equal(reader.read_kind("S1"), sample.rows.kind)
    np.testing.assert_array_equal(reader.read_tissue_fraction("S1"), sample.rows.tissue_fraction)
    record = reader.sample_record("S1")
    assert (record.n, record.dim, record.n_spots, record.n_tiles) == (49, 8, 40, 9)
    assert record.meta == sample.meta
    assert reader.fingerprint == FINGERPRINT


def test_counts_round_trip_keep_sparse_x_obs_and_var(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", sample)
    counts = CohortStore.open(store.path).read_counts("S1")
    assert counts is not None
    assert (counts.X != sample.counts.X).nnz == 0
    assert counts.X.format == "csr"
    assert list(counts.obs_names) == list(sample.counts.obs_names)
    assert list(counts.var["gene_ids"]) == list(sample.counts.var["gene_ids"])
    np.testing.assert_array_equal(counts.obs["in_tissue"], sample.counts.obs["in_tissue"])


def test_a_sample_without_counts_reads_none(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "tiles-only", sample, counts=False)
    assert store.read_counts("tiles-only") is None
    assert store.verify() == []


def test_plain_zarr_and_anndata_read_the_store_without_tmescope(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", sample)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a store at rest holds only Zarr nodes: no warnings
        root = zarr.open_group(store.path, mode="r")
        root.tree()
        assert root.attrs["tmescope"]["fingerprint"] == FINGERPRINT
        assert root.attrs["tmescope"]["schema_version"] == 1
        group = root["samples/S1"]
        assert isinstance(group, zarr.Group)
        assert group.attrs["status"] == "complete"
        assert group.attrs["kind_codes"] == {"spot": 0, "tile": 1, "cover": 2}
        embeddings = group["embeddings"]
        assert isinstance(embeddings, zarr.Array)
        assert (embeddings.dtype, embeddings.shape, embeddings.chunks) == (
            np.dtype("float16"),
            (49, 8),
            (16, 8),
        )
        assert list(group["barcodes"][:3]) == ["AAAC0000-1", "AAAC0001-1", "AAAC0002-1"]
        counts = ad.io.read_elem(group["counts"])
    assert counts.shape == (40, 6)


def test_several_samples_list_in_order(store: CohortStore) -> None:
    for i, name in enumerate(["b", "a", "c"]):
        write_sample(store, name, make_sample(seed=i, source_hash=f"h{i}"))
    assert store.sample_ids() == ["a", "b", "c"]
    assert [s.sample_id for s in store.summary()] == ["a", "b", "c"]


def test_summary_and_info(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    (summary,) = store.summary()
    assert summary.status == "complete"
    assert (summary.n, summary.dim, summary.n_spots, summary.n_tiles) == (49, 8, 40, 9)
    assert (summary.chunks_written, summary.n_chunks, summary.has_counts) == (4, 4, True)
    assert summary.nbytes > 0
    info = store.info()
    assert info.n_complete == 1
    assert info.nbytes == summary.nbytes
    assert info.fingerprint == FINGERPRINT
    assert info.created_with.startswith("tmescope ")


def test_tiles_only_and_spots_only_samples(store: CohortStore) -> None:
    data = make_sample(n_spots=0, n_tiles=5)
    write_sample(store, "grid", data, counts=False)
    assert set(store.read_kind("grid").tolist()) == {RowKind.TILE}


def test_an_empty_sample_round_trips(store: CohortStore) -> None:
    write_sample(store, "empty", make_sample(n_spots=0, n_tiles=0), counts=False)
    assert store.read_embeddings("empty").shape == (0, 8)
    assert store.verify() == []


def test_unknown_sample_is_a_clear_error(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    with pytest.raises(SampleNotFoundError, match=r"no sample 'S2'.*S1"):
        store.read_embeddings("S2")


def test_a_read_only_store_refuses_writes(store: CohortStore, sample: SampleData) -> None:
    write_sample(store, "S1", sample)
    reader = CohortStore.open(store.path)
    with pytest.raises(StoreError, match="read-only"):
        reader.remove_sample("S1")


def test_remove_sample(store: CohortStore, sample: SampleData, store_path: Path) -> None:
    write_sample(store, "S1", sample)
    write_sample(store, "S2", make_sample(seed=1, source_hash="h1"))
    store.remove_sample("S1")
    assert store.sample_ids() == ["S2"]
    assert sorted(p.name for p in (store_path / "samples").iterdir()) == ["S2", "zarr.json"]
    with pytest.raises(SampleNotFoundError):
        store.remove_sample("S1")
    assert store.verify() == []


def test_a_removal_cut_short_by_a_killed_process_is_finished_by_the_next_writer(
    store: CohortStore, sample: SampleData, store_path: Path
) -> None:
    write_sample(store, "S1", sample)
    write_sample(store, "S2", make_sample(seed=1, source_hash="h1"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip

    def cut_short(sample_id: str) -> Path:
        """What a removal killed between its rename and the end of its deletion leaves: the
        sample renamed away under the work name of a process of this host that is gone."""
        left = work_path(store_path / "samples" / sample_id, DOOMED)
        left = left.with_name(left.name.replace(f"-{os.getpid()}-", f"-{dead}-"))
        (store_path / "samples" / sample_id).rename(left)
        return left

    left = cut_short("S1")
    assert store.sample_ids(include_incomplete=True) == ["S2"]  # gone for readers at once
    assert store.verify() == []  # nothing to fix by hand
    assert store.finish_removals() == 1  # what store rm does first
    assert not left.exists()
    left = cut_short("S2")
    write_sample(store, "S3", make_sample(seed=3, source_hash="h3"))  # any sample's writer
    assert not left.exists()
    assert sorted(p.name for p in (store_path / "samples").iterdir()) == ["S3", "zarr.json"]


def test_the_store_room_loads_neither_torch_nor_anndata_on_import() -> None:
    code = "import sys, tmescope.store; print(sorted({'torch', 'anndata', 'faiss'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
