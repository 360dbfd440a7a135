"""``SampleWriter``: writes one sample's embeddings chunk by chunk, resumably.

A sample's rows are cut into row chunks of ``chunk_rows``; row chunk ``i`` is zarr chunk
``(i, 0)`` of ``embeddings``. The per-row tables (coords, barcodes …) are written whole when the
sample begins. Writing chunk ``i`` goes:

1. clear ``chunks_written[i]`` if it was set (so a rewrite cut short is not taken as done);
2. write the embeddings chunk, then ``fsync`` its file and folder;
3. set ``chunks_written[i]``, then ``fsync`` it.

So a set flag always means durable data, whatever kills the process (or the power) in between:
a chunk whose flag is unset, absent or unreadable is pending and is written again on resume.
``finish`` writes the counts, makes the whole sample durable, and flips ``status`` to
``complete`` last: readers never see a sample before all of it is on disk.

A sample with sub-spot bins (see ``bins.py``) writes each row chunk's bin features into its own
zarr chunk of ``bin_features`` in step 2, beside the embeddings: one flag covers both.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import numpy as np
import zarr

from tmescope.errors import IncompleteSampleError, InvalidParameterError, StoreError
from tmescope.store.bins import (
    BIN_CELLS,
    BIN_COORDS,
    BIN_FEATURES,
    BIN_OFFSETS,
    BIN_OWNER,
    SampleBins,
    chunk_bin_rows,
)
from tmescope.store.durable import fsync, fsync_file, fsync_tree
from tmescope.store.locking import NameLock
from tmescope.store.rows import SampleRows
from tmescope.store.schema import (
    BARCODES,
    CHUNKS_WRITTEN,
    COORDS,
    COUNTS,
    EMBEDDINGS,
    KIND,
    TISSUE_FRACTION,
    SampleRecord,
    SampleStatus,
    now,
    sample_array,
)

if TYPE_CHECKING:
    import anndata as ad

log = logging.getLogger(__name__)

_FLOAT16_MAX = float(np.finfo(np.float16).max)


class SampleWriter:
    """Writes the chunks of one sample while holding its lock; made by ``CohortStore.begin_sample``.

    Use it as a context manager: leaving the block releases the lock, and a sample not yet
    finished stays ``writing``, ready to resume.
    """

    def __init__(self, group: zarr.Group, record: SampleRecord, lock: NameLock, directory: Path):
        self._group = group
        self._record = record
        self._lock = lock
        self._directory = directory
        self._embeddings = sample_array(group, EMBEDDINGS)
        self._written = sample_array(group, CHUNKS_WRITTEN)
        self._bin_features = sample_array(group, BIN_FEATURES) if record.bins else None
        self._bin_offsets = np.asarray(sample_array(group, BIN_OFFSETS)[:]) if record.bins else None

    @property
    def sample_id(self) -> str:
        return self._record.sample_id

    @property
    def n_rows(self) -> int:
        return self._record.n

    @property
    def dim(self) -> int:
        return self._record.dim

    @property
    def chunk_rows(self) -> int:
        return self._record.chunk_rows

    @property
    def n_chunks(self) -> int:
        return self._record.n_chunks

    @property
    def closed(self) -> bool:
        return not self._lock.held

    def rows(self, chunk: int) -> slice:
        """The rows of the sample (and of its coords, barcodes …) that chunk ``chunk`` holds."""
        self._check_chunk(chunk)
        return self._record.rows(chunk)

    @property
    def has_bins(self) -> bool:
        """Whether each chunk also carries the features of the sub-spot bins it owns."""
        return self._record.bins is not None

    def bin_range(self, chunk: int) -> slice:
        """The bins (rows of the bin tables) whose features row chunk ``chunk`` carries."""
        self._check_chunk(chunk)
        if self._record.bins is None or self._bin_offsets is None:
            raise InvalidParameterError(f"sample {self.sample_id!r} has no sub-spot bins")
        return chunk_bin_rows(self._record.bins, self._bin_offsets, chunk)[0]

    def pending_chunks(self) -> list[int]:
        """The row chunks not yet durably written, in order."""
        return [i for i, done in enumerate(written_flags(self._written)) if not done]

    def write_chunk(
        self, chunk: int, embeddings: np.ndarray, bins: np.ndarray | None = None
    ) -> None:
        """Write row chunk ``chunk``: ``embeddings`` ``(rows, dim)``, rows as :meth:`rows` says,
        and, for a sample with sub-spot bins, ``bins`` ``(n, k)``: the features of the bins
        :meth:`bin_range` names.

        Values must be finite and within float16's ±65504: they are stored as float16.
        Writing a chunk again replaces it.
        """
        self._check_open()
        rows = self.rows(chunk)
        values = _checked(embeddings, (rows.stop - rows.start, self.dim), chunk)
        features = None
        if self._record.bins is not None:
            if bins is None:
                raise InvalidParameterError(
                    f"sample {self.sample_id!r} has sub-spot bins: chunk {chunk} needs their "
                    "features too"
                )
            span = self.bin_range(chunk)
            shape = (span.stop - span.start, self._record.bins.dim)
            features = _checked(bins, shape, chunk, what="sub-spot features").astype(np.float16)
        elif bins is not None:
            raise InvalidParameterError(
                f"sample {self.sample_id!r} was begun without sub-spot bins; begin it with them"
            )
        self._write_chunk(chunk, rows, values.astype(np.float16), features)

    def finish(self, counts: ad.AnnData | None = None) -> None:
        """Write ``counts`` (spots × genes, or none), then mark the sample ``complete``.

        Raises :class:`IncompleteSampleError` while chunks are pending. Releases the lock.
        """
        self._check_open()
        pending = self.pending_chunks()
        if pending:
            raise IncompleteSampleError(
                f"sample {self.sample_id!r} cannot be finished: row chunks {pending} of "
                f"{self.n_chunks} are not written yet"
            )
        if counts is not None:
            import anndata as ad  # only here: a sample of tiles alone never needs it

            if not isinstance(counts, ad.AnnData):
                raise InvalidParameterError(
                    f"counts must be an AnnData or None, got {type(counts)}"
                )
        self._finish(counts)

    def close(self) -> None:
        """Release the sample's lock; an unfinished sample stays ``writing``."""
        self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _write_chunk(
        self, chunk: int, rows: slice, values: np.ndarray, features: np.ndarray | None
    ) -> None:
        flag = self._chunk_path(self._written, CHUNKS_WRITTEN, (chunk,))
        if written_flags(self._written)[chunk]:
            self._written[chunk] = False  # an unset flag deletes its file: see the module docstring
            fsync(flag.parent)
        self._embeddings[rows] = values
        fsync_file(self._chunk_path(self._embeddings, EMBEDDINGS, (chunk, 0)))
        # A chunk that owns no bins has nothing to write (an all-fill chunk leaves no file).
        if features is not None and len(features) and self._bin_features is not None:
            assert self._record.bins is not None and self._bin_offsets is not None
            # The whole zarr chunk, padded with the fill: one file, written in one piece.
            capacity = self._record.bins.capacity
            padded = np.full((capacity, features.shape[1]), np.nan, dtype=np.float16)
            padded[: len(features)] = features
            self._bin_features[chunk * capacity : (chunk + 1) * capacity] = padded
            fsync_file(self._chunk_path(self._bin_features, BIN_FEATURES, (chunk, 0)))
        self._written[chunk] = True
        fsync_file(flag)

    def _finish(self, counts: ad.AnnData | None) -> None:
        if COUNTS in self._group:  # left by a finish that was cut short
            del self._group[COUNTS]
        if counts is not None:
            import anndata as ad

            # Not sharded: counts are written once, whole, by this one writer. (The setting is
            # newer than anndata 0.12.0, which does not shard anyway.)
            unsharded = (
                ad.settings.override(auto_shard_zarr_v3=False)
                if hasattr(ad.settings, "auto_shard_zarr_v3")
                else contextlib.nullcontext()
            )
            with unsharded:
                ad.io.write_elem(self._group, COUNTS, counts)
        fsync_tree(self._directory)
        self._group.attrs.update(
            {
                "status": SampleStatus.COMPLETE.value,
                "completed": now(),
                "has_counts": counts is not None,
            }
        )
        fsync(self._directory / "zarr.json")
        fsync(self._directory)
        log.info("sample %s complete (%d rows)", self.sample_id, self.n_rows)
        self.close()

    def _chunk_path(self, array: zarr.Array, name: str, coords: tuple[int, ...]) -> Path:
        return self._directory / name / array.metadata.encode_chunk_key(coords)

    def _check_chunk(self, chunk: int) -> None:
        if not (isinstance(chunk, int | np.integer) and 0 <= chunk < self.n_chunks):
            raise InvalidParameterError(
                f"chunk {chunk!r} is out of range: sample {self.sample_id!r} has "
                f"{self.n_chunks} row chunks of {self.chunk_rows} rows"
            )

    def _check_open(self) -> None:
        if self.closed:
            raise StoreError(
                f"the writer of sample {self.sample_id!r} is closed; begin the sample again"
            )


def create_sample_group(samples: zarr.Group, record: SampleRecord) -> zarr.Group:
    """A new sample group under ``samples``: its attributes and its (empty) arrays."""
    group = samples.create_group(record.sample_id, attributes=record.to_attrs())
    for name, spec in record.array_specs().items():
        group.create_array(
            name,
            shape=spec.shape,
            chunks=spec.chunks,
            dtype=str if spec.dtype == "string" else spec.dtype,
            fill_value=spec.fill_value,
        )
    return group


def write_rows(group: zarr.Group, rows: SampleRows, bins: SampleBins | None = None) -> None:
    """Write a sample's per-row (and per-bin) tables whole (again, on resume: they are cheap)."""
    sample_array(group, COORDS)[:] = rows.coords
    sample_array(group, BARCODES)[:] = rows.barcodes
    sample_array(group, KIND)[:] = rows.kind
    sample_array(group, TISSUE_FRACTION)[:] = rows.tissue_fraction
    if bins is not None:
        sample_array(group, BIN_COORDS)[:] = bins.coords
        sample_array(group, BIN_CELLS)[:] = bins.cells
        sample_array(group, BIN_OWNER)[:] = bins.owner
        sample_array(group, BIN_OFFSETS)[:] = bins.offsets


def arrays_intact(group: zarr.Group, record: SampleRecord) -> bool:
    """Whether every array of the sample exists with its shape and chunks."""
    for name, spec in record.array_specs().items():
        node = group.get(name)
        if (
            not isinstance(node, zarr.Array)
            or node.shape != spec.shape
            or node.chunks != spec.chunks
        ):
            return False
    return True


def written_flags(array: zarr.Array) -> np.ndarray:
    """``chunks_written`` as booleans; a flag that cannot be read counts as unwritten."""
    try:
        return np.asarray(array[:], dtype=bool)
    except Exception:  # a flag file torn by a power cut: read the flags one by one
        log.warning("some chunk flags of %s are unreadable; those chunks will be rewritten", array)
    flags = np.zeros(array.shape, dtype=bool)
    for i in range(flags.size):
        try:
            flags[i] = bool(array[i])
        except Exception:  # this one is torn: its chunk is pending
            flags[i] = False
    return flags


def _checked(
    embeddings: np.ndarray, shape: tuple[int, int], chunk: int, *, what: str = "embeddings"
) -> np.ndarray:
    values = np.asarray(embeddings)
    what = f"{what} of chunk {chunk}"
    if values.shape != shape:
        raise InvalidParameterError(f"{what} must have shape {shape}, got {values.shape}")
    if values.dtype.kind not in "fiu":
        raise InvalidParameterError(f"{what} must be numbers, got dtype {values.dtype}")
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)[:5].tolist()
        raise InvalidParameterError(f"{what} hold NaN or infinite values (rows {bad} of the chunk)")
    if values.size and float(np.abs(values).max()) > _FLOAT16_MAX:
        raise InvalidParameterError(
            f"{what} exceed the float16 range (±{_FLOAT16_MAX:g}) the store keeps; normalise "
            "or rescale them first"
        )
    return values
