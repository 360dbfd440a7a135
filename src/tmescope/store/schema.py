"""The cohort store's format: names, versions, array layouts and the attributes of each node.

Everything a reader without tmescope needs to know lives here and in ``docs/store-format.md``::

    cohort.zarr/                    attrs: tmescope = {schema_version, fingerprint, created_with, created}
      samples/<sample_id>/          attrs: status, n, dim, chunk_rows, mpp, patch_um, patch_px, …
        embeddings      (n, dim)    float16  chunks (chunk_rows, dim)  fill NaN
        coords          (n, 2)      float32  chunks (chunk_rows, 2)    fill NaN  (x, y) full-res px
        barcodes        (n,)        string   chunks (chunk_rows,)      fill ""
        tissue_fraction (n,)        float32  chunks (chunk_rows,)      fill NaN
        kind            (n,)        uint8    chunks (chunk_rows,)      fill 255  0 spot, 1 tile
        chunks_written  (n_chunks,) bool     chunks (1,)               fill False
        counts/                     AnnData (anndata's own zarr encoding), spots × genes
        bin_*                       sub-spot bins and their features, when embedded with them
                                    (see ``bins.py``; attrs: ``bins``)
      index/                        reserved for the FAISS index

Fill values are ones real data never takes (inputs are validated finite, non-empty, 0 or 1), so
every written chunk has a file and an unwritten one reads as NaN / "" / 255.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np
import zarr

from tmescope.errors import InvalidParameterError, StoreError
from tmescope.store.bins import BinLayout, bin_array_specs
from tmescope.store.fingerprint import as_json_mapping, normalise_fingerprint

SCHEMA_VERSION = 1
ROOT_ATTR = "tmescope"  # the root group's attribute that marks a tmescope store
SAMPLES = "samples"
INDEX = "index"  # reserved: the FAISS index and its row → (sample, row) map

EMBEDDINGS = "embeddings"
COORDS = "coords"
BARCODES = "barcodes"
TISSUE_FRACTION = "tissue_fraction"
KIND = "kind"
CHUNKS_WRITTEN = "chunks_written"
COUNTS = "counts"
# Keys of a sample's ``extra`` attributes that readers rely on.
METADATA = "metadata"  # the sample sheet's metadata columns (column → value, text)
MPP_SOURCE = "mpp_source"  # where the µm/px came from (spot-pitch, tiff:XResolution, --mpp …)

DEFAULT_CHUNK_ROWS = 512  # 512 × 1536 float16 ≈ 1.5 MiB: the ≥ 1 MB chunk zarr advises
KIND_FILL = 255

_SAMPLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class SampleStatus(StrEnum):
    """``writing`` until the last chunk and the counts land, then ``complete``."""

    WRITING = "writing"
    COMPLETE = "complete"


class RowKind(IntEnum):
    """What a row of a sample's tables is: a spot with counts, a tile of a dense grid (``--grid``),
    or a cover patch, cut only so that the sub-spot bins of tissue beyond every spot's patch have
    features (``--subspot``). Commands on spots or on grid tiles leave cover patches out."""

    SPOT = 0
    TILE = 1
    COVER = 2


def row_kind_names(kind: np.ndarray) -> np.ndarray:
    """``(n,)`` str names (``spot``, ``tile``, ``cover``) of :class:`RowKind` codes."""
    names = np.array([k.name.lower() for k in sorted(RowKind)])
    return names[np.asarray(kind, dtype=np.int64)]


@dataclass(frozen=True)
class ArraySpec:
    """Shape, chunking, dtype and fill value of one array of a sample."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str  # a numpy dtype name, or "string" for zarr's variable-length UTF-8
    fill_value: Any


@dataclass(frozen=True)
class SampleMeta:
    """What a sample's embeddings were computed from: its inputs and the patch geometry.

    ``source_hash`` is a content hash of the inputs (Space Ranger outputs and image): a sample
    id written again from other inputs is refused unless overwritten. ``mpp`` is µm per
    full-resolution pixel; each patch covers ``patch_um`` µm, resampled to ``patch_px`` pixels.
    ``extra`` holds any further JSON values worth keeping beside the sample.
    """

    source_path: str
    source_hash: str
    mpp: float
    patch_um: float
    patch_px: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.source_hash:
            raise InvalidParameterError(
                "source_hash must be a non-empty content hash of the inputs"
            )
        for name in ("mpp", "patch_um"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidParameterError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(self.patch_px, int) and self.patch_px > 0):
            raise InvalidParameterError(f"patch_px must be a positive int, got {self.patch_px!r}")
        # Normalised here so that a bad value fails before anything is written.
        extra = as_json_mapping(self.extra, what="SampleMeta.extra", allow_empty=True)
        object.__setattr__(self, "extra", extra)


@dataclass(frozen=True)
class SampleRecord:
    """A sample's attributes as stored: its identity, layout and progress."""

    sample_id: str
    status: SampleStatus
    n: int
    dim: int
    chunk_rows: int
    n_spots: int
    n_tiles: int
    meta: SampleMeta
    fingerprint: Mapping[str, Any]
    created: str
    completed: str | None = None
    has_counts: bool = False
    bins: BinLayout | None = None  # sub-spot bins, when the sample was embedded with them
    n_cover: int = 0  # cover patches (RowKind.COVER), cut for the sub-spot bins only

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n / self.chunk_rows)

    @property
    def metadata(self) -> dict[str, str]:
        """The sample sheet's metadata of the sample (``extra["metadata"]``: ``patient``,
        ``group`` …, as text); empty when it was embedded without a sheet."""
        found = self.meta.extra.get(METADATA)
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}

    @property
    def mpp_source(self) -> str | None:
        """Where :attr:`SampleMeta.mpp` came from (``extra["mpp_source"]``), when recorded."""
        found = self.meta.extra.get(MPP_SOURCE)
        return None if found is None else str(found)

    def rows(self, chunk: int) -> slice:
        """The rows of row chunk ``chunk`` (the last one may be short)."""
        start = chunk * self.chunk_rows
        return slice(start, min(start + self.chunk_rows, self.n))

    def identity(self) -> dict[str, Any]:
        """What must match for a second write to be the same sample (and resume or skip)."""
        return {
            "source hash": self.meta.source_hash,
            "rows": self.n,
            "dim": self.dim,
            "chunk_rows": self.chunk_rows,
            "mpp": self.meta.mpp,
            "patch_um": self.meta.patch_um,
            "patch_px": self.meta.patch_px,
            "encoder fingerprint": dict(self.fingerprint),
            "sub-spot bins": self.bins.identity() if self.bins is not None else None,
        }

    def array_specs(self) -> dict[str, ArraySpec]:
        n, rows = self.n, self.chunk_rows
        return {
            EMBEDDINGS: ArraySpec((n, self.dim), (rows, self.dim), "float16", math.nan),
            COORDS: ArraySpec((n, 2), (rows, 2), "float32", math.nan),
            BARCODES: ArraySpec((n,), (rows,), "string", ""),
            TISSUE_FRACTION: ArraySpec((n,), (rows,), "float32", math.nan),
            KIND: ArraySpec((n,), (rows,), "uint8", KIND_FILL),
            CHUNKS_WRITTEN: ArraySpec((self.n_chunks,), (1,), "bool", False),
        } | {
            name: ArraySpec(*spec)
            for name, spec in (
                bin_array_specs(self.bins, self.n_chunks) if self.bins is not None else {}
            ).items()
        }

    def to_attrs(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "n": self.n,
            "dim": self.dim,
            "chunk_rows": self.chunk_rows,
            "n_spots": self.n_spots,
            "n_tiles": self.n_tiles,
            "n_cover": self.n_cover,
            "kind_codes": {kind.name.lower(): kind.value for kind in RowKind},
            "mpp": self.meta.mpp,
            "patch_um": self.meta.patch_um,
            "patch_px": self.meta.patch_px,
            "source": {"path": self.meta.source_path, "hash": self.meta.source_hash},
            "extra": dict(self.meta.extra),
            "fingerprint": dict(self.fingerprint),
            "has_counts": self.has_counts,
            "created": self.created,
            "completed": self.completed,
        } | ({"bins": self.bins.to_attrs()} if self.bins is not None else {})

    @classmethod
    def from_attrs(cls, sample_id: str, attrs: Mapping[str, Any]) -> SampleRecord:
        """Parse a sample group's attributes; :class:`StoreError` names what is missing."""
        try:
            source = attrs["source"]
            meta = SampleMeta(
                source_path=str(source["path"]),
                source_hash=str(source["hash"]),
                mpp=float(attrs["mpp"]),
                patch_um=float(attrs["patch_um"]),
                patch_px=int(attrs["patch_px"]),
                extra=dict(attrs.get("extra") or {}),
            )
            return cls(
                sample_id=sample_id,
                status=SampleStatus(attrs["status"]),
                n=int(attrs["n"]),
                dim=int(attrs["dim"]),
                chunk_rows=int(attrs["chunk_rows"]),
                n_spots=int(attrs["n_spots"]),
                n_tiles=int(attrs["n_tiles"]),
                meta=meta,
                fingerprint=dict(attrs["fingerprint"]),
                created=str(attrs["created"]),
                completed=attrs.get("completed"),
                has_counts=bool(attrs.get("has_counts", False)),
                bins=BinLayout.from_attrs(attrs["bins"]) if attrs.get("bins") else None,
                n_cover=int(attrs.get("n_cover", 0)),
            )
        except (KeyError, TypeError, ValueError, InvalidParameterError) as error:
            raise StoreError(
                f"sample {sample_id!r} has missing or malformed attributes ({error!r}); "
                "remove it and write it again"
            ) from error


def root_attrs(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of a new store's root group."""
    from tmescope._version import __version__

    return {
        ROOT_ATTR: {
            "schema_version": SCHEMA_VERSION,
            "fingerprint": normalise_fingerprint(fingerprint),
            "created_with": f"tmescope {__version__}",
            "created": now(),
        }
    }


def validate_sample_id(sample_id: object) -> str:
    """``sample_id`` if it is safe as a folder name: letters, digits, ``._-``; ≤ 128 chars."""
    if not isinstance(sample_id, str) or not _SAMPLE_ID.fullmatch(sample_id):
        raise InvalidParameterError(
            f"sample id {sample_id!r} is not usable as a store key: use 1–128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return sample_id


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def sample_array(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of a sample group, or :class:`StoreError` if it is not there."""
    node = group.get(name)
    if not isinstance(node, zarr.Array):
        raise StoreError(
            f"{group.path}/{name} is missing or not an array: the sample is damaged; remove it "
            "and write it again"
        )
    return node
