"""Sub-spot bins of a sample in the store: their layout, their tables, their features.

A sample embedded with sub-spot features also holds, beside its rows, one entry per tissue bin
(a square of ``bin_um`` on a lattice anchored at full-resolution pixel (0, 0)). Bins are sorted
by the row of the patch that owns them, so the bins of row chunk ``c`` are the contiguous range
``offsets[c]:offsets[c + 1]``. Their features are written with that row chunk, into zarr chunk
``c`` of ``bin_features``, which holds room for ``capacity`` bins: writing a row chunk touches
its own chunk files only, and a resumed run rewrites exactly the chunks whose flag is unset.

    bin_coords   (n_bins, 2)              float32  bin centres (x, y), full-resolution px
    bin_cells    (n_bins, 2)              int32    (column, row) on the sample's lattice
    bin_owner    (n_bins,)                int64    the patch row the bin is pooled from
    bin_offsets  (n_chunks + 1,)          int64    bins of row chunk c: offsets[c]:offsets[c+1]
    bin_features (n_chunks × capacity, k) float16  row chunk c's bins first in zarr chunk c
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tmescope.errors import InvalidParameterError, StoreError

BIN_COORDS = "bin_coords"
BIN_CELLS = "bin_cells"
BIN_OWNER = "bin_owner"
BIN_OFFSETS = "bin_offsets"
BIN_FEATURES = "bin_features"
TABLE_CHUNK = 65_536  # rows per chunk of the per-bin tables: written whole, read whole


@dataclass(frozen=True)
class BinLayout:
    """How a sample's sub-spot bins are stored; ``spec`` says how their features were made.

    ``spec`` is the embedder's description (bin and token size, token width, reduction and its
    seed): every sample of a store must share it, so that features of two samples compare.
    """

    bin_um: float
    bin_px: float
    dim: int
    n_bins: int
    capacity: int
    spec: Mapping[str, Any]

    def to_attrs(self) -> dict[str, Any]:
        return {
            "bin_um": self.bin_um, "bin_px": self.bin_px, "dim": self.dim,
            "n_bins": self.n_bins, "capacity": self.capacity, "spec": dict(self.spec),
        }  # fmt: skip

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> BinLayout:
        return cls(
            bin_um=float(attrs["bin_um"]), bin_px=float(attrs["bin_px"]), dim=int(attrs["dim"]),
            n_bins=int(attrs["n_bins"]), capacity=int(attrs["capacity"]),
            spec=dict(attrs["spec"]),
        )  # fmt: skip

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the one it resumes."""
        return {"bins": self.n_bins, "bin size": self.bin_um, "bin features": dict(self.spec)}


@dataclass(frozen=True, eq=False)
class SampleBins:
    """The per-bin tables of a sample, known before any feature is computed.

    ``coords`` ``(n_bins, 2)`` bin centres; ``cells`` ``(n_bins, 2)`` lattice (column, row);
    ``owner`` ``(n_bins,)`` ascending patch rows; ``offsets`` ``(n_chunks + 1,)``.
    """

    coords: np.ndarray
    cells: np.ndarray
    owner: np.ndarray
    offsets: np.ndarray
    bin_um: float
    bin_px: float

    def __post_init__(self) -> None:
        n = len(self.owner)
        coords, cells = np.asarray(self.coords), np.asarray(self.cells)
        owner, offsets = np.asarray(self.owner), np.asarray(self.offsets)
        if coords.shape != (n, 2) or cells.shape != (n, 2) or not np.isfinite(coords).all():
            raise InvalidParameterError(
                f"bin coords and cells must be ({n}, 2) finite arrays, got {coords.shape} and "
                f"{cells.shape}"
            )
        if n and (np.diff(owner) < 0).any():
            raise InvalidParameterError("bins must be sorted by the row of their owning patch")
        if offsets.ndim != 1 or offsets.size < 2 or offsets[0] != 0 or offsets[-1] != n:
            raise InvalidParameterError(
                f"bin offsets must run from 0 to {n} over the row chunks, got {offsets[:3]}…"
            )
        if (np.diff(offsets) < 0).any():
            raise InvalidParameterError("bin offsets must not decrease")
        if not (self.bin_um > 0 and self.bin_px > 0):
            raise InvalidParameterError(f"bin size must be positive, got {self.bin_um} µm")
        object.__setattr__(self, "coords", coords.astype(np.float32))
        object.__setattr__(self, "cells", cells.astype(np.int32))
        object.__setattr__(self, "owner", owner.astype(np.int64))
        object.__setattr__(self, "offsets", offsets.astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.owner.size)

    @property
    def capacity(self) -> int:
        """Room for the most bins any row chunk owns (at least one)."""
        return max(1, int(np.diff(self.offsets).max()))

    def layout(self, *, dim: int, spec: Mapping[str, Any]) -> BinLayout:
        return BinLayout(
            bin_um=float(self.bin_um), bin_px=float(self.bin_px), dim=int(dim), n_bins=self.n,
            capacity=self.capacity, spec=dict(spec),
        )  # fmt: skip


def bin_array_specs(layout: BinLayout, n_chunks: int) -> dict[str, tuple[Any, ...]]:
    """``name → (shape, chunks, dtype, fill)`` of a sample's bin arrays."""
    n, k, cap = layout.n_bins, layout.dim, layout.capacity
    table = max(1, min(TABLE_CHUNK, n))
    return {
        BIN_COORDS: ((n, 2), (table, 2), "float32", math.nan),
        BIN_CELLS: ((n, 2), (table, 2), "int32", 0),
        BIN_OWNER: ((n,), (table,), "int64", -1),
        BIN_OFFSETS: ((n_chunks + 1,), (n_chunks + 1,), "int64", -1),
        BIN_FEATURES: ((n_chunks * cap, k), (cap, k), "float16", math.nan),
    }


def chunk_bin_rows(layout: BinLayout, offsets: np.ndarray, chunk: int) -> tuple[slice, slice]:
    """Row chunk ``chunk``'s bins: their range in the tables and their rows in ``bin_features``."""
    start, stop = int(offsets[chunk]), int(offsets[chunk + 1])
    base = chunk * layout.capacity
    return slice(start, stop), slice(base, base + stop - start)


def gather_features(stored: np.ndarray, offsets: np.ndarray, capacity: int) -> np.ndarray:
    """``(n_bins, k)``: each row chunk's bins, taken from the front of its padded chunk."""
    counts = np.diff(offsets)
    rows = np.concatenate(
        [c * capacity + np.arange(n) for c, n in enumerate(counts.tolist())] or [np.empty(0, int)]
    )
    if rows.size and rows.max() >= len(stored):
        raise StoreError("bin_features is shorter than its offsets say: the sample is damaged")
    return stored[rows.astype(np.int64)]
