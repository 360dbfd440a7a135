"""The sub-spot head's training rows: the bins in each spot's disc, in memory or on disk.

The head learns only from bins inside the discs of spots whose composition is known (see
:mod:`tmescope.fusion.bin_head`). A sample's rows are those bins' inputs grouped by spot, with
where each spot's bins begin and what the spot measured::

    x       (m, d)      float32  inputs of the disc bins, spot by spot
    starts  (s + 1,)    int64    spot i's bins are x[starts[i]:starts[i + 1]]
    shares  (s, P)      float32  spot i's measured composition (rows sum to 1)
    area    (m,)        float32  each bin's weight in its spot's disc (its share of the disc's
                                 area; a spot's weights sum to 1)

A cohort's rows never need to sit in memory at once: :class:`DiskRows` keeps each sample's rows
in a scratch folder and reads a minibatch's spots from memory-mapped files that are closed again
at once, so a step holds one batch, whatever the number of samples. :class:`MemoryRows` holds
them in memory (small cohorts, tests); both give the same batches for the same spots.

Discs of one array do not overlap (55 µm spots 100 µm apart): a bin lies under one disc at most,
so its weight there is all the disc operator needs to keep.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError
from tmescope.fusion.subspot_data import BinSample

ROW_FILES = ("x.npy", "starts.npy", "shares.npy", "area.npy")


@dataclass(frozen=True, eq=False)
class SpotRows:
    """One sample's training rows (see the module docstring)."""

    sample_id: str
    x: np.ndarray
    starts: np.ndarray
    shares: np.ndarray
    area: np.ndarray

    def __post_init__(self) -> None:
        s = self.shares.shape[0]
        if self.area.shape != (self.x.shape[0],):
            raise InvalidParameterError(
                f"sample {self.sample_id!r}: area must be ({self.x.shape[0]},), one weight per "
                f"row of x, got {self.area.shape}"
            )
        if self.starts.shape != (s + 1,) or self.starts[-1] != self.x.shape[0]:
            raise InvalidParameterError(
                f"sample {self.sample_id!r}: starts must be ({s + 1},) ending at the "
                f"{self.x.shape[0]} rows of x, got {self.starts.shape} ending at "
                f"{self.starts[-1] if self.starts.size else None}"
            )

    @property
    def n_spots(self) -> int:
        return int(self.shares.shape[0])


@dataclass(frozen=True, eq=False)
class Batch:
    """A minibatch: ``x`` ``(r, d)`` bin inputs, ``owner`` ``(r,)`` the batch spot each bin
    belongs to, ``area`` ``(r,)`` its weight in that spot's disc, ``shares`` ``(b, P)`` those
    spots' compositions, ``weights`` ``(b,)`` each spot's weight in the loss (one over its
    sample's number of spots: every sample counts alike, as when its spots' mean loss is summed
    over samples)."""

    x: np.ndarray
    owner: np.ndarray
    shares: np.ndarray
    weights: np.ndarray
    area: np.ndarray


class RowSource(Protocol):
    """Where a trainer gets its rows: how many spots each sample has, and any batch of them."""

    @property
    def spots_per_sample(self) -> np.ndarray: ...

    @property
    def dim(self) -> int: ...

    @property
    def n_populations(self) -> int: ...

    def batch(self, picks: Sequence[np.ndarray]) -> Batch:
        """The rows of spots ``picks[i]`` (ascending indices) of each sample ``i``."""
        ...


def disc_rows(sample: BinSample) -> SpotRows:
    """A sample's training rows: the bins under the discs of spots with a composition (the rows
    of ``sample.discs``, bins in their own order within each spot, with their weights there);
    spots without a composition or without bins are left out."""
    shares = np.asarray(sample.measured, dtype=np.float32)
    discs = sp.csr_matrix(sample.discs)
    known = np.flatnonzero(np.isfinite(shares).all(axis=1) & (np.diff(discs.indptr) > 0))
    picked = discs[known]
    picked.sort_indices()
    return SpotRows(
        sample_id=sample.sample_id,
        x=np.ascontiguousarray(sample.x[picked.indices], dtype=np.float32),
        starts=picked.indptr.astype(np.int64),
        shares=np.ascontiguousarray(shares[known]),
        area=picked.data.astype(np.float32),
    )


def spot_weights(spots_per_sample: np.ndarray) -> np.ndarray:
    """``(n_samples,)`` float64: each spot's weight, one over its sample's number of spots."""
    counts = np.asarray(spots_per_sample, dtype=np.float64)
    return np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)


def gather(x: np.ndarray, starts: np.ndarray, spots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``spots`` (ascending) and, per row, its position in ``spots``.

    ``x`` may be a memory map: only the rows asked for are read.
    """
    begin, end = starts[spots], starts[spots + 1]
    lengths = end - begin
    owner = np.repeat(np.arange(spots.size), lengths)
    # Row r of the batch is begin[owner[r]] + (r - first row of its spot in the batch).
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    index = np.arange(int(lengths.sum())) - np.repeat(first - begin, lengths)
    return np.asarray(x[index], dtype=np.float32), owner


def _assemble(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    weights: Sequence[float],
) -> Batch:
    """One batch from per-sample ``(x, owner, shares, area)`` parts; owners renumbered
    batch-wide."""
    xs, owners, shares, spot_w, areas = [], [], [], [], []
    offset = 0
    for (x, owner, share, area), weight in zip(parts, weights, strict=True):
        xs.append(x)
        owners.append(owner + offset)
        shares.append(share)
        areas.append(area)
        spot_w.append(np.full(len(share), weight))
        offset += len(share)
    return Batch(
        x=np.concatenate(xs) if xs else np.zeros((0, 0), np.float32),
        owner=np.concatenate(owners).astype(np.int64),
        shares=np.concatenate(shares).astype(np.float32),
        weights=np.concatenate(spot_w).astype(np.float32),
        area=np.concatenate(areas).astype(np.float32) if areas else np.zeros(0, np.float32),
    )


class MemoryRows:
    """Rows of a few samples held in memory."""

    def __init__(self, rows: Sequence[SpotRows]) -> None:
        _check_alike([(r.sample_id, r.x.shape[1], r.shares.shape[1]) for r in rows])
        self.rows = tuple(rows)

    @property
    def spots_per_sample(self) -> np.ndarray:
        return np.array([r.n_spots for r in self.rows], dtype=np.int64)

    @property
    def dim(self) -> int:
        return int(self.rows[0].x.shape[1])

    @property
    def n_populations(self) -> int:
        return int(self.rows[0].shares.shape[1])

    def batch(self, picks: Sequence[np.ndarray]) -> Batch:
        weights = spot_weights(self.spots_per_sample)
        parts, kept = [], []
        for i, spots in enumerate(picks):
            if spots.size:
                x, owner = gather(self.rows[i].x, self.rows[i].starts, spots)
                area, _ = gather(self.rows[i].area, self.rows[i].starts, spots)
                parts.append((x, owner, self.rows[i].shares[spots], area))
                kept.append(float(weights[i]))
        return _assemble(parts, kept)


class DiskRows:
    """Rows of any number of samples, each in a folder of ``.npy`` files (:func:`write_rows`)."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = tuple(Path(f) for f in folders)
        self._starts = [np.load(f / "starts.npy") for f in self.folders]  # small: (s + 1,) each
        shapes = []
        for folder in self.folders:
            x = np.load(folder / "x.npy", mmap_mode="r")
            shares = np.load(folder / "shares.npy", mmap_mode="r")
            shapes.append((folder.name, int(x.shape[1]), int(shares.shape[1])))
            del x, shares
        _check_alike(shapes)
        self._dim, self._populations = shapes[0][1], shapes[0][2]

    @property
    def spots_per_sample(self) -> np.ndarray:
        return np.array([len(s) - 1 for s in self._starts], dtype=np.int64)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def n_populations(self) -> int:
        return self._populations

    def batch(self, picks: Sequence[np.ndarray]) -> Batch:
        weights = spot_weights(self.spots_per_sample)
        parts, kept = [], []
        for i, spots in enumerate(picks):
            if not spots.size:
                continue
            # Mapped for this batch only: pages of a file kept mapped would count in the
            # process's resident memory once read, and the whole cohort would end up there.
            x = np.load(self.folders[i] / "x.npy", mmap_mode="r")
            shares = np.load(self.folders[i] / "shares.npy", mmap_mode="r")
            area = np.load(self.folders[i] / "area.npy", mmap_mode="r")
            rows, owner = gather(x, self._starts[i], spots)
            weight, _ = gather(area, self._starts[i], spots)
            parts.append((rows, owner, np.array(shares[spots], dtype=np.float32), weight))
            kept.append(float(weights[i]))
            del x, shares, area
        return _assemble(parts, kept)


def write_rows(folder: Path, rows: SpotRows) -> Path:
    """Write ``rows`` to ``folder`` whole: into a sibling first, renamed into place at the end,
    so a folder that exists is complete (a killed run leaves at most a ``.tmp-*`` sibling)."""
    folder = Path(folder)
    partial = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    values = (rows.x, rows.starts, rows.shares, rows.area)
    for name, value in zip(ROW_FILES, values, strict=True):
        np.save(partial / name, value)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
    return folder


def has_rows(folder: Path) -> bool:
    """Whether ``folder`` holds a complete set written by :func:`write_rows`."""
    return all((Path(folder) / name).is_file() for name in ROW_FILES)


def project_rows(source: Path, target: Path, *, mean: np.ndarray, components: np.ndarray) -> Path:
    """Write the rows of ``source`` with ``x`` reduced to ``(x - mean) @ components`` into
    ``target`` (whole, as :func:`write_rows`), reading ``x`` in blocks."""
    starts = np.load(source / "starts.npy")
    shares = np.load(source / "shares.npy")
    area = np.load(source / "area.npy")
    x = np.load(source / "x.npy", mmap_mode="r")
    reduced = np.empty((x.shape[0], components.shape[1]), dtype=np.float32)
    block = 65_536
    for begin in range(0, x.shape[0], block):
        chunk = np.asarray(x[begin : begin + block], dtype=np.float32)
        reduced[begin : begin + block] = (chunk - mean) @ components
    del x
    return write_rows(target, SpotRows(target.name, reduced, starts, shares, area))


def _check_alike(shapes: Sequence[tuple[str, int, int]]) -> None:
    if not shapes:
        raise InvalidParameterError("no training sample given: the sub-spot head needs one")
    first = shapes[0]
    for name, dim, populations in shapes:
        if (dim, populations) != first[1:]:
            raise InvalidParameterError(
                f"sample {name!r} has {dim} inputs and {populations} populations, sample "
                f"{first[0]!r} {first[1]} and {first[2]}: every sample needs the same"
            )
