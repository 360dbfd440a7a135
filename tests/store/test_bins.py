"""Sub-spot bins in the store: written with their row chunks, resumed, verified, refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cohort_factories import SampleData, make_sample, write_sample

from tmescope.errors import (
    IncompleteSampleError,
    InvalidParameterError,
    MissingBinsError,
    SampleConflictError,
)
from tmescope.store import CohortStore
from tmescope.store.bins import SampleBins

SPEC = {"bin_um": 16.0, "token_um": 16.0, "token_dim": 4, "dim": 4, "reduction": "none"}
CHUNK_ROWS = 16


def make_bins(data: SampleData, *, seed: int = 0, skip_rows: tuple[int, ...] = ()) -> SampleBins:
    """Three bins per row (none for ``skip_rows``), sorted by owner, cut by 16-row chunks."""
    rng = np.random.default_rng(seed)
    owner = np.array([r for r in range(data.rows.n) if r not in skip_rows for _ in range(3)])
    edges = np.r_[np.arange(0, data.rows.n, CHUNK_ROWS), data.rows.n]
    return SampleBins(
        coords=rng.uniform(0, 5000, (owner.size, 2)),
        cells=rng.integers(0, 300, (owner.size, 2)),
        owner=owner,
        offsets=np.searchsorted(owner, edges),
        bin_um=16.0,
        bin_px=40.0,
    )


def features_of(bins: SampleBins, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(bins.n, dim)).astype(np.float32)


def begin_with_bins(
    store: CohortStore, sample_id: str, data: SampleData, bins: SampleBins,
    spec: dict[str, object] | None = None,
) -> Any:  # fmt: skip
    return store.begin_sample(
        sample_id, rows=data.rows, meta=data.meta, dim=data.embeddings.shape[1],
        chunk_rows=CHUNK_ROWS, bins=bins, bin_dim=4, bin_spec=spec or SPEC,
    )  # fmt: skip


def write_with_bins(
    store: CohortStore, sample_id: str, data: SampleData, bins: SampleBins,
    *, chunks: list[int] | None = None, spec: dict[str, object] | None = None,
) -> None:  # fmt: skip
    features = features_of(bins)
    writer = begin_with_bins(store, sample_id, data, bins, spec)
    assert writer is not None and writer.has_bins
    with writer:
        for i in writer.pending_chunks() if chunks is None else chunks:
            writer.write_chunk(i, data.embeddings[writer.rows(i)], features[writer.bin_range(i)])
        if chunks is None:
            writer.finish(data.counts)


def test_bins_and_their_features_read_back_in_bin_order(
    store: CohortStore, sample: SampleData
) -> None:
    bins = make_bins(sample, skip_rows=tuple(range(16, 32)))  # row chunk 1 owns no bin
    write_with_bins(store, "S1", sample, bins)
    back = store.read_bins("S1")
    np.testing.assert_array_equal(back.owner, bins.owner)
    np.testing.assert_array_equal(back.coords, bins.coords)
    np.testing.assert_array_equal(back.offsets, bins.offsets)
    np.testing.assert_array_equal(
        store.read_bin_features("S1"), features_of(bins).astype(np.float16)
    )
    assert store.has_bins("S1") and store.verify() == []
    (summary,) = store.summary()
    assert summary.n_bins == bins.n and summary.bin_um == 16.0


def test_a_resumed_sample_writes_only_the_missing_chunks_and_reads_the_same(
    store: CohortStore, sample: SampleData, tmp_path: Path
) -> None:
    bins = make_bins(sample)
    write_with_bins(store, "S1", sample, bins, chunks=[0, 2])
    with pytest.raises(IncompleteSampleError):
        store.read_bin_features("S1")
    assert any("stuck in 'writing'" in p for p in store.verify())
    writer = begin_with_bins(store, "S1", sample, bins)
    assert writer is not None
    with writer:
        assert writer.pending_chunks() == [1, 3]
    write_with_bins(store, "S1", sample, bins)
    clean = CohortStore.open(tmp_path / "clean.zarr", mode="a", fingerprint=store.fingerprint)
    write_with_bins(clean, "S1", sample, bins)
    np.testing.assert_array_equal(
        store.read_bin_features("S1").view(np.uint16), clean.read_bin_features("S1").view(np.uint16)
    )


def test_verify_names_a_missing_bin_chunk(store: CohortStore, sample: SampleData) -> None:
    write_with_bins(store, "S1", sample, make_bins(sample))
    (store.sample_path("S1") / "bin_features" / "c" / "1" / "0").unlink()
    problems = store.verify()
    assert len(problems) == 1 and "bin_features: 1 of 4 chunks missing (1)" in problems[0]


def test_bins_are_checked_against_the_rows_and_the_store(
    store: CohortStore, sample: SampleData
) -> None:
    bins = make_bins(sample)
    with pytest.raises(InvalidParameterError, match="row chunks"):
        store.begin_sample(
            "S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=8,
            bins=bins, bin_dim=4, bin_spec=SPEC,
        )  # fmt: skip
    write_with_bins(store, "S1", sample, bins)
    other = make_sample(seed=2, source_hash="h2")
    with pytest.raises(SampleConflictError, match="sub-spot features made otherwise"):
        write_with_bins(store, "S2", other, make_bins(other), spec={**SPEC, "bin_um": 32.0})
    assert store.sample_ids(include_incomplete=True) == ["S1"]  # refused before writing
    # The same sample asked for again without bins is another layout, not a resume.
    with pytest.raises(SampleConflictError, match="sub-spot bins"):
        store.begin_sample("S1", rows=sample.rows, meta=sample.meta, dim=8, chunk_rows=16)


def test_chunk_features_must_match_the_bins_the_chunk_owns(
    store: CohortStore, sample: SampleData
) -> None:
    bins = make_bins(sample)
    writer = begin_with_bins(store, "S1", sample, bins)
    assert writer is not None
    with writer:
        with pytest.raises(InvalidParameterError, match="needs their features"):
            writer.write_chunk(0, sample.embeddings[writer.rows(0)])
        with pytest.raises(InvalidParameterError, match="sub-spot features of chunk 0"):
            writer.write_chunk(0, sample.embeddings[writer.rows(0)], np.zeros((2, 4)))


def test_a_sample_without_bins_says_which_flag_adds_them(
    store: CohortStore, sample: SampleData
) -> None:
    write_sample(store, "S1", sample)
    assert not store.has_bins("S1")
    with pytest.raises(MissingBinsError, match="--subspot 16"):
        store.read_bins("S1")
