"""Summaries of a store and its samples: what ``tmescope store ls`` and ``info`` show."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmescope.errors import StoreError
from tmescope.store.schema import CHUNKS_WRITTEN, SampleStatus, sample_array
from tmescope.store.writer import written_flags

if TYPE_CHECKING:
    from tmescope.store.feature_store import CohortStore

DAMAGED = "damaged"  # the status shown for a sample whose attributes cannot be read


@dataclass(frozen=True)
class SampleSummary:
    """One sample at a glance. ``status`` is ``complete``, ``writing`` or ``damaged``."""

    sample_id: str
    status: str
    n: int
    dim: int
    n_spots: int
    n_tiles: int
    chunks_written: int
    n_chunks: int
    has_counts: bool
    nbytes: int  # on disk
    created: str | None
    completed: str | None
    n_bins: int = 0  # sub-spot bins (0: embedded without them)
    bin_um: float | None = None
    n_cover: int = 0  # cover patches: rows cut for the sub-spot bins only
    mpp: float | None = None  # µm per full-resolution pixel
    mpp_source: str | None = None  # where mpp came from: spot-pitch, tiff:XResolution, --mpp …
    metadata: dict[str, str] = field(default_factory=dict, hash=False)  # the sheet's columns


@dataclass(frozen=True)
class StoreInfo:
    """A store's header and the summaries of all its samples, unfinished ones included."""

    path: Path
    schema_version: int
    fingerprint: Mapping[str, Any]
    created_with: str
    created: str | None
    samples: tuple[SampleSummary, ...]

    @property
    def n_complete(self) -> int:
        return sum(s.status == SampleStatus.COMPLETE for s in self.samples)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.samples)


def summarise_sample(store: CohortStore, sample_id: str) -> SampleSummary:
    """The summary of one sample; a damaged one is reported, not raised."""
    nbytes = disk_usage(store.sample_path(sample_id))
    try:
        record = store.sample_record(sample_id)
        flags = written_flags(sample_array(store.sample_group(sample_id), CHUNKS_WRITTEN))
    except StoreError:
        return SampleSummary(sample_id, DAMAGED, 0, 0, 0, 0, 0, 0, False, nbytes, None, None)
    return SampleSummary(
        sample_id=sample_id,
        status=record.status.value,
        n=record.n,
        dim=record.dim,
        n_spots=record.n_spots,
        n_tiles=record.n_tiles,
        chunks_written=int(flags.sum()),
        n_chunks=record.n_chunks,
        has_counts=record.has_counts,
        nbytes=nbytes,
        created=record.created,
        completed=record.completed,
        n_bins=record.bins.n_bins if record.bins is not None else 0,
        bin_um=record.bins.bin_um if record.bins is not None else None,
        n_cover=record.n_cover,
        mpp=record.meta.mpp,
        mpp_source=record.mpp_source,
        metadata=record.metadata,
    )


def summarise_store(store: CohortStore) -> StoreInfo:
    """The store's header and every sample's summary."""
    return StoreInfo(
        path=store.path,
        schema_version=store.schema_version,
        fingerprint=store.fingerprint,
        created_with=store.created_with,
        created=store.created,
        samples=tuple(store.summary()),
    )


def disk_usage(path: Path) -> int:
    """Bytes of all files under ``path``."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # a temporary file renamed away as we walked
                continue
    return total
