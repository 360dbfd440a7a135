"""Checking a store against its format: every sample whole, consistent and of the store's encoder.

Read-only. Each problem is one line that names the sample and says how to fix it; an empty list
means the store is sound. Chunks are checked by listing the chunk files of every array and
comparing them with the chunk grid its shape implies.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from tmescope.errors import StoreError
from tmescope.store.atomic import is_work_path
from tmescope.store.bins import BIN_FEATURES, BIN_OFFSETS
from tmescope.store.fingerprint import field_differences
from tmescope.store.schema import (
    CHUNKS_WRITTEN,
    COUNTS,
    EMBEDDINGS,
    SAMPLES,
    ArraySpec,
    SampleRecord,
    SampleStatus,
)
from tmescope.store.writer import written_flags

if TYPE_CHECKING:
    from tmescope.store.feature_store import CohortStore


def verify_store(store: CohortStore) -> list[str]:
    """Every problem found in ``store``, one line each; empty when all is well."""
    problems = []
    samples = store.path / SAMPLES
    for name in sorted(os.listdir(samples)):
        if not (samples / name).is_dir():
            continue  # the group's zarr.json, and the lock files of running writers
        if is_work_path(name):
            continue  # a removal in progress, or cut short: the next writer's sweep finishes it
        if name.endswith(".removing"):  # how removals were named before work paths
            problems.append(f"{SAMPLES}/{name}: left by an interrupted removal; delete it")
        elif not (samples / name / "zarr.json").is_file():
            problems.append(
                f"{SAMPLES}/{name}: a folder without zarr.json (a sample cut short as it was "
                "created); remove it or embed the sample again"
            )
    for sample_id in store.sample_ids(include_incomplete=True):
        problems.extend(f"sample {sample_id!r}: {p}" for p in _verify_sample(store, sample_id))
    from tmescope.store.fused import verify_fused
    from tmescope.store.maps import verify_maps

    return problems + verify_fused(store) + verify_maps(store)


def _verify_sample(store: CohortStore, sample_id: str) -> list[str]:
    try:
        record = store.sample_record(sample_id)
    except StoreError as error:
        return [str(error)]
    problems = []
    differences = field_differences(store.fingerprint, record.fingerprint)
    if differences:
        problems.append(
            f"embedded with another encoder than the store's ({'; '.join(differences)}); "
            "remove it and embed it again"
        )
    if record.n_spots + record.n_tiles + record.n_cover != record.n:
        problems.append(
            f"n_spots + n_tiles + n_cover ≠ n ({record.n_spots} + {record.n_tiles} + "
            f"{record.n_cover} ≠ {record.n})"
        )
    group = store.sample_group(sample_id)
    directory = store.sample_path(sample_id)
    arrays: dict[str, zarr.Array] = {}
    for name, spec in record.array_specs().items():
        node = group.get(name)
        if not isinstance(node, zarr.Array):
            problems.append(f"array {name!r} is missing; remove the sample and embed it again")
        elif not _matches(node, spec):
            problems.append(
                f"{name} is {node.shape} {node.dtype} in chunks {node.chunks}; expected "
                f"{spec.shape} {spec.dtype} in chunks {spec.chunks}"
            )
        else:
            arrays[name] = node
    owning = _chunks_owning_bins(record, arrays, problems)
    if CHUNKS_WRITTEN in arrays:
        problems.extend(_verify_progress(record, arrays, directory, owning))
    if record.has_counts and not _is_anndata(group.get(COUNTS)):
        problems.append("its counts are missing or not an AnnData; embed the sample again")
    return problems


def _chunks_owning_bins(
    record: SampleRecord, arrays: dict[str, zarr.Array], problems: list[str]
) -> set[int]:
    """The row chunks whose bin-feature chunk must exist (those owning bins); checks offsets."""
    if record.bins is None or BIN_OFFSETS not in arrays:
        return set()
    offsets = np.asarray(arrays[BIN_OFFSETS][:])
    counts = np.diff(offsets)
    if (
        offsets.size != record.n_chunks + 1
        or offsets[0] != 0
        or offsets[-1] != record.bins.n_bins
        or (counts < 0).any()
        or counts.max(initial=0) > record.bins.capacity
    ):
        problems.append(
            f"{BIN_OFFSETS} do not cut its {record.bins.n_bins} bins by its {record.n_chunks} "
            "row chunks; embed the sample again with overwrite"
        )
        return set()
    return set(np.flatnonzero(counts > 0).tolist())


def _verify_progress(
    record: SampleRecord, arrays: dict[str, zarr.Array], directory: Path, owning: set[int]
) -> list[str]:
    flags = written_flags(arrays[CHUNKS_WRITTEN])
    if record.status is SampleStatus.WRITING:
        # The data behind each flag must be there; unflagged chunks are simply still to come.
        flagged = set(np.flatnonzero(flags).tolist())
        missing = {
            name: sorted(
                (flagged & owning if name == BIN_FEATURES else flagged)
                & _missing_chunks(arrays[name], directory / name)
            )
            for name in (EMBEDDINGS, BIN_FEATURES)
            if name in arrays
        }
        lines = [
            f"{name}: chunks {_show(chunks)} are flagged as written but missing"
            for name, chunks in missing.items()
            if chunks
        ]
        return [
            *lines,
            f"stuck in 'writing' ({int(flags.sum())} of {record.n_chunks} chunks written): if no "
            "embedding of it is running, run it again to resume, or remove the sample",
        ]
    lines = []
    if not flags.all():
        lines.append(
            f"complete, but chunks {_show(np.flatnonzero(~flags).tolist())} are not flagged as written"
        )
    for name, array in arrays.items():
        absent = _missing_chunks(array, directory / name)
        if name == BIN_FEATURES:
            absent &= owning  # a row chunk that owns no bin writes no feature chunk
        missing_chunks = sorted(absent)
        if missing_chunks:
            lines.append(
                f"{name}: {len(missing_chunks)} of {array.nchunks} chunks missing "
                f"({_show(missing_chunks)}); embed the sample again with overwrite"
            )
    return lines


def _missing_chunks(array: zarr.Array, directory: Path) -> set[int]:
    """Row-chunk indices of the grid whose chunk file is absent or empty."""
    present = {
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file() and path.stat().st_size > 0
    }
    grid = [range(math.ceil(s / c)) for s, c in zip(array.shape, array.chunks, strict=True)]
    return {
        coords[0]
        for coords in itertools.product(*grid)
        if array.metadata.encode_chunk_key(coords) not in present
    }


def _matches(array: zarr.Array, spec: ArraySpec) -> bool:
    if array.shape != spec.shape or array.chunks != spec.chunks:
        return False
    if spec.dtype == "string":
        return array.dtype.kind in "TUO"
    return bool(array.dtype == np.dtype(spec.dtype))


def _is_anndata(node: object) -> bool:
    return isinstance(node, zarr.Group) and node.attrs.get("encoding-type") == "anndata"


def _show(chunks: list[int]) -> str:
    return ", ".join(map(str, chunks[:8])) + (" …" if len(chunks) > 8 else "")
