"""``CohortStore``: an open cohort store — check it, list, read, write and remove its samples.

Public methods validate and say what went wrong; private ones act. Opening never writes: the
fingerprint and writability are checked by reading only, so a refused open leaves the store
byte-for-byte as it was. Concurrency rests on three facts (see ``docs/store-format.md``):

* the store is created in a hidden folder beside it and renamed into place, so two processes
  creating it at once cannot both win, and the loser then checks the winner's fingerprint;
* after creation nothing writes the root: each sample is its own group with its own chunks,
  written under its own lock, so writers of different samples never share a file;
* a sample is removed by renaming it away first, so readers see all of it or none.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr
from zarr.storage import LocalStore

from tmescope.errors import (
    IncompleteSampleError,
    InvalidParameterError,
    MissingBinsError,
    SampleConflictError,
    SampleNotFoundError,
    StoreError,
)
from tmescope.store.atomic import remove_atomically, sweep_folder, write_atomically
from tmescope.store.bins import (
    BIN_CELLS,
    BIN_COORDS,
    BIN_FEATURES,
    BIN_OFFSETS,
    BIN_OWNER,
    BinLayout,
    SampleBins,
    gather_features,
)
from tmescope.store.fingerprint import (
    as_json_mapping,
    check_fingerprint,
    field_differences,
    normalise_fingerprint,
)
from tmescope.store.locking import NameLock
from tmescope.store.root import (
    check_creatable,
    check_writable,
    create_store,
    is_vacant,
    read_header,
)
from tmescope.store.rows import SampleRows
from tmescope.store.schema import (
    BARCODES,
    COORDS,
    COUNTS,
    DEFAULT_CHUNK_ROWS,
    EMBEDDINGS,
    KIND,
    METADATA,
    SAMPLES,
    TISSUE_FRACTION,
    SampleMeta,
    SampleRecord,
    SampleStatus,
    now,
    sample_array,
    validate_sample_id,
)
from tmescope.store.writer import SampleWriter, arrays_intact, create_sample_group, write_rows

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.store.summary import SampleSummary, StoreInfo

log = logging.getLogger(__name__)

OpenMode = Literal["r", "a"]


class CohortStore:
    """A cohort store on disk, opened for reading (``"r"``) or appending (``"a"``).

    Made by :meth:`open`. Holds no file handles: every call reads the current state from disk,
    so several processes may use one store at once.
    """

    def __init__(self, path: Path, header: Mapping[str, Any], *, writable: bool, checked: bool):
        self._path = path
        self._header = dict(header)
        self._writable = writable
        self._checked = checked  # the caller's fingerprint matched: embeddings may be written
        self._zstore = LocalStore(path, read_only=not writable)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        mode: OpenMode = "r",
        fingerprint: Mapping[str, Any] | None = None,
    ) -> CohortStore:
        """Open the store at ``path``; ``mode="a"`` creates it (empty) when absent.

        ``fingerprint`` describes the encoder: creating a store needs it, writing embeddings
        needs it, and when given it must equal the store's (else
        :class:`FingerprintMismatchError`, with the store untouched).
        """
        if mode not in ("r", "a"):
            raise InvalidParameterError(f"mode must be 'r' or 'a', got {mode!r}")
        root = Path(path).expanduser()
        wanted = None if fingerprint is None else normalise_fingerprint(fingerprint)
        if mode == "a" and is_vacant(root):
            if wanted is None:
                raise InvalidParameterError(
                    f"no cohort store at {root} yet: creating one needs the encoder fingerprint"
                )
            create_store(root, wanted)
        header = read_header(root)
        if wanted is not None:
            check_fingerprint(header["fingerprint"], wanted, where=f"the cohort store {root}")
        if mode == "a":
            check_writable(root)
        return cls(root, header, writable=mode == "a", checked=wanted is not None)

    @staticmethod
    def check_compatible(path: str | os.PathLike[str], fingerprint: Mapping[str, Any]) -> None:
        """Check, writing nothing, that embeddings of ``fingerprint`` may be added at ``path``.

        Raises what ``open(path, mode="a", fingerprint=fingerprint)`` would; passes where no
        store exists yet but one can be created.
        """
        root = Path(path).expanduser()
        wanted = normalise_fingerprint(fingerprint)
        if is_vacant(root):
            check_creatable(root)
            return
        header = read_header(root)
        check_fingerprint(header["fingerprint"], wanted, where=f"the cohort store {root}")
        check_writable(root)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The encoder fingerprint every embedding in this store shares."""
        return dict(self._header["fingerprint"])

    @property
    def schema_version(self) -> int:
        return int(self._header["schema_version"])

    @property
    def created_with(self) -> str:
        return str(self._header.get("created_with", "unknown"))

    @property
    def created(self) -> str | None:
        return self._header.get("created")

    def __repr__(self) -> str:
        return f"CohortStore({str(self._path)!r}, mode={'a' if self._writable else 'r'!r})"

    def sample_ids(self, *, include_incomplete: bool = False) -> list[str]:
        """Sorted ids of the complete samples (and of the unfinished ones, on request)."""
        ids = []
        for name in sorted(os.listdir(self._path / SAMPLES)):
            if name.startswith(".") or not (self._path / SAMPLES / name / "zarr.json").is_file():
                continue  # locks, samples being removed, a crash between mkdir and metadata
            try:
                status = self._group(name).attrs.get("status")
            except FileNotFoundError:  # removed by another process since the listing
                continue
            if include_incomplete or status == SampleStatus.COMPLETE:
                ids.append(name)
        return ids

    def sample_status(self, sample_id: str) -> SampleStatus:
        return self.sample_record(sample_id).status

    def sample_record(self, sample_id: str) -> SampleRecord:
        """A sample's stored attributes: layout, inputs, fingerprint and status."""
        return SampleRecord.from_attrs(sample_id, self.sample_group(sample_id).attrs.asdict())

    def sample_group(self, sample_id: str) -> zarr.Group:
        """The sample's Zarr group, read-only (complete or not)."""
        validate_sample_id(sample_id)
        if not (self.sample_path(sample_id) / "zarr.json").is_file():
            known = ", ".join(self.sample_ids(include_incomplete=True)) or "none"
            raise SampleNotFoundError(f"no sample {sample_id!r} in {self._path} (samples: {known})")
        return self._group(sample_id)

    def sample_path(self, sample_id: str) -> Path:
        return self._path / SAMPLES / validate_sample_id(sample_id)

    def begin_sample(
        self,
        sample_id: str,
        *,
        rows: SampleRows,
        meta: SampleMeta,
        dim: int,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        overwrite: bool = False,
        bins: SampleBins | None = None,
        bin_dim: int | None = None,
        bin_spec: Mapping[str, Any] | None = None,
    ) -> SampleWriter | None:
        """Start (or resume) writing a sample; ``None`` when it is already complete.

        ``rows`` are the sample's per-row tables, ``meta`` its inputs and patch geometry, ``dim``
        the embedding width; embeddings follow chunk by chunk through the returned writer. With
        ``bins`` (their offsets cut by ``chunk_rows``), each chunk also carries the ``bin_dim``
        wide features of the sub-spot bins it owns, made as ``bin_spec`` says: every sample of a
        store must share that spec (:class:`SampleConflictError` otherwise). A
        sample begun before with the same inputs and layout resumes from its written chunks;
        with other inputs it is refused (:class:`SampleConflictError`) unless ``overwrite``,
        which also redoes a complete one. A sample another live process is writing is refused
        (:class:`StoreLockedError`).
        """
        self._check_can_write(embeddings=True)
        validate_sample_id(sample_id)
        if not isinstance(rows, SampleRows) or not isinstance(meta, SampleMeta):
            raise InvalidParameterError(
                f"rows must be a SampleRows and meta a SampleMeta, got {type(rows)}, {type(meta)}"
            )
        for name, value in (("dim", dim), ("chunk_rows", chunk_rows)):
            if not (isinstance(value, int | np.integer) and value > 0):
                raise InvalidParameterError(f"{name} must be a positive int, got {value!r}")
        layout = self._bin_layout(rows, bins, bin_dim, bin_spec, chunk_rows=int(chunk_rows))
        record = SampleRecord(
            sample_id=sample_id,
            status=SampleStatus.WRITING,
            n=rows.n,
            dim=int(dim),
            chunk_rows=int(chunk_rows),
            n_spots=rows.n_spots,
            n_tiles=rows.n_tiles,
            n_cover=rows.n_cover,
            meta=meta,
            fingerprint=self.fingerprint,
            created=now(),
            bins=layout,
        )
        lock = self._lock(sample_id)
        lock.acquire()
        try:
            return self._begin(record, rows, lock, overwrite=overwrite, bins=bins)
        except BaseException:
            lock.release()
            raise

    def update_sample_metadata(self, sample_id: str, metadata: Mapping[str, str]) -> bool:
        """Replace a sample's metadata (``extra["metadata"]``: a sample sheet's columns) without
        writing it again; ``False`` when it held these already.

        Taken under the sample's lock (refused while another process writes it); its attributes
        are replaced in one rename, so readers see the old metadata or the new, never a mix.
        """
        self._check_can_write(embeddings=False)
        wanted = check_metadata(metadata)
        self.sample_group(sample_id)  # raises SampleNotFoundError
        lock = self._lock(sample_id)
        lock.acquire()
        try:
            if self.sample_record(sample_id).metadata == wanted:
                return False
            target = self.sample_path(sample_id) / "zarr.json"
            node = json.loads(target.read_text(encoding="utf-8"))
            attributes = node.setdefault("attributes", {})
            attributes["extra"] = {**(attributes.get("extra") or {}), METADATA: wanted}
            text = json.dumps(node, indent=2)
            write_atomically(target, lambda path: path.write_text(text, encoding="utf-8"),
                             durable=True)  # fmt: skip
        finally:
            lock.release()
        log.info("sample %s: metadata updated in %s", sample_id, self._path)
        return True

    def finish_removals(self) -> int:
        """Delete what removals cut short by a killed process left (hidden, and invisible to
        readers already); how many. Writers of samples call it themselves."""
        self._check_can_write(embeddings=False)
        return len(sweep_folder(self._path / SAMPLES))

    def remove_sample(self, sample_id: str) -> None:
        """Delete a sample (refused while another process writes it)."""
        self._check_can_write(embeddings=False)
        if not self.sample_path(sample_id).is_dir():  # a damaged sample may be removed too
            self.sample_group(sample_id)  # raises SampleNotFoundError
        lock = self._lock(sample_id)
        lock.acquire()
        try:
            sweep_folder(self._path / SAMPLES)  # removals that killed processes left unfinished
            # A model's fused set (or saved maps) of a removed sample would only mislead a later
            # sample of the same id; they go first, so that a kill in between leaves a sample
            # without its sets (written again when needed), never sets without their sample.
            from tmescope.store.fused import remove_fused_sets
            from tmescope.store.maps import remove_maps

            remove_fused_sets(self, sample_id)
            remove_maps(self, sample_id)
            self._discard(sample_id)
        finally:
            lock.release()
        log.info("removed sample %s from %s", sample_id, self._path)

    def read_embeddings(self, sample_id: str) -> np.ndarray:
        """``(n, dim)`` float16 embeddings of a complete sample."""
        return self._read(sample_id, EMBEDDINGS)

    def read_coords(self, sample_id: str) -> np.ndarray:
        """``(n, 2)`` float32 patch centres (x, y) in full-resolution pixels."""
        return self._read(sample_id, COORDS)

    def read_barcodes(self, sample_id: str) -> np.ndarray:
        """``(n,)`` barcodes (spots) and ``tile_<i>`` names (tiles), as a numpy str array."""
        return np.array(self._read(sample_id, BARCODES).tolist(), dtype=str)

    def read_tissue_fraction(self, sample_id: str) -> np.ndarray:
        """``(n,)`` float32 fraction of each patch under tissue."""
        return self._read(sample_id, TISSUE_FRACTION)

    def read_kind(self, sample_id: str) -> np.ndarray:
        """``(n,)`` uint8 :class:`RowKind` of each row: 0 spot, 1 tile."""
        return self._read(sample_id, KIND)

    def has_bins(self, sample_id: str) -> bool:
        """Whether a sample holds sub-spot bins (embedded with ``--subspot``)."""
        return self.sample_record(sample_id).bins is not None

    def read_bins(self, sample_id: str) -> SampleBins:
        """The sub-spot bins of a complete sample: centres, lattice cells, owners, offsets.

        :class:`MissingBinsError` when the sample was embedded without them.
        """
        group = self._complete_group(sample_id)
        layout = self._layout_of(sample_id)
        return SampleBins(
            coords=np.asarray(sample_array(group, BIN_COORDS)[:]),
            cells=np.asarray(sample_array(group, BIN_CELLS)[:]),
            owner=np.asarray(sample_array(group, BIN_OWNER)[:]),
            offsets=np.asarray(sample_array(group, BIN_OFFSETS)[:]),
            bin_um=layout.bin_um,
            bin_px=layout.bin_px,
        )

    def read_bin_features(self, sample_id: str) -> np.ndarray:
        """``(n_bins, k)`` float16 features of a complete sample's bins, in the bins' order."""
        group = self._complete_group(sample_id)
        layout = self._layout_of(sample_id)
        offsets = np.asarray(sample_array(group, BIN_OFFSETS)[:])
        stored = np.asarray(sample_array(group, BIN_FEATURES)[:])
        return gather_features(stored, offsets, layout.capacity)

    def _layout_of(self, sample_id: str) -> BinLayout:
        layout = self.sample_record(sample_id).bins
        if layout is None:
            raise MissingBinsError(
                f"sample {sample_id!r} of {self._path} has no sub-spot features: it was embedded "
                "without them; embed it again with --subspot 16 (and --overwrite)"
            )
        return layout

    def read_counts(self, sample_id: str) -> ad.AnnData | None:
        """The sample's counts (spots × genes), or ``None`` if it was written without them."""
        import anndata as ad

        group = self._complete_group(sample_id)
        node = group.get(COUNTS)
        return None if node is None else ad.io.read_elem(node)

    def verify(self) -> list[str]:
        """Problems found in the store (shapes, status, fingerprints, chunks); empty if none."""
        from tmescope.store.verify import verify_store

        return verify_store(self)

    def summary(self) -> list[SampleSummary]:
        """One summary per sample, unfinished ones included."""
        from tmescope.store.summary import summarise_sample

        return [summarise_sample(self, s) for s in self.sample_ids(include_incomplete=True)]

    def info(self) -> StoreInfo:
        """The store's header and its samples' summaries."""
        from tmescope.store.summary import summarise_store

        return summarise_store(self)

    def _begin(
        self,
        record: SampleRecord,
        rows: SampleRows,
        lock: NameLock,
        *,
        overwrite: bool,
        bins: SampleBins | None = None,
    ) -> SampleWriter | None:
        sample_id = record.sample_id
        directory = self.sample_path(sample_id)
        sweep_folder(self._path / SAMPLES)  # removals that killed processes left unfinished
        if (directory / "zarr.json").is_file() and not overwrite:
            existing = self.sample_record(sample_id)
            differences = field_differences(existing.identity(), record.identity())
            if differences:
                raise SampleConflictError(
                    f"sample {sample_id!r} is already in {self._path} ({existing.status}) with "
                    f"other inputs or layout: {'; '.join(differences)}. Pass overwrite=True to "
                    "replace it, or use another sample id"
                )
            if existing.status is SampleStatus.COMPLETE:
                lock.release()
                log.info("sample %s is already complete: skipped", sample_id)
                return None
            group = self._group(sample_id, writable=True)
            if arrays_intact(group, existing):
                write_rows(group, rows, bins)  # cheap, and a crash may have cut them short
                wanted = record.meta.extra.get(METADATA)
                if isinstance(wanted, Mapping) and existing.metadata != wanted:
                    # Not yet visible to readers: set through the group the writer finishes.
                    group.attrs.update({"extra": {**existing.meta.extra, METADATA: wanted}})
                writer = SampleWriter(group, existing, lock, directory)
                log.info(
                    "resuming %s: %d of %d chunks to write",
                    sample_id,
                    len(writer.pending_chunks()),
                    writer.n_chunks,
                )
                return writer
        if directory.exists():
            self._discard(sample_id)  # overwritten, or an unfinished sample damaged by a crash
        group = create_sample_group(zarr.open_group(self._zstore, path=SAMPLES, mode="r+"), record)
        write_rows(group, rows, bins)
        return SampleWriter(group, record, lock, directory)

    def _bin_layout(
        self,
        rows: SampleRows,
        bins: SampleBins | None,
        dim: int | None,
        spec: Mapping[str, Any] | None,
        *,
        chunk_rows: int,
    ) -> BinLayout | None:
        """The bins' layout, checked against the rows and the store's other samples."""
        if bins is None:
            if dim is not None or spec is not None:
                raise InvalidParameterError("bin_dim and bin_spec go with bins")
            return None
        if not isinstance(bins, SampleBins) or not (isinstance(dim, int) and dim > 0) or not spec:
            raise InvalidParameterError(
                "bins must be a SampleBins, with bin_dim a positive int and bin_spec a mapping"
            )
        n_chunks = -(-rows.n // chunk_rows)
        if bins.offsets.size != n_chunks + 1 or (bins.n and bins.owner[-1] >= rows.n):
            raise InvalidParameterError(
                f"the bins' offsets must cut them by the {n_chunks} row chunks of {chunk_rows} "
                f"rows, and their owners be rows of the sample; got {bins.offsets.size - 1} "
                "chunks"
            )
        spec = as_json_mapping(spec, what="bin_spec", allow_empty=False)
        for other in self.sample_ids(include_incomplete=True):
            theirs = self.sample_record(other).bins
            if theirs is not None and dict(theirs.spec) != spec:
                raise SampleConflictError(
                    f"sample {other!r} of {self._path} holds sub-spot features made otherwise "
                    f"({'; '.join(field_differences(dict(theirs.spec), spec))}): the features of "
                    "one store must compare; embed with the same --subspot, or into another store"
                )
        return bins.layout(dim=dim, spec=spec)

    def _discard(self, sample_id: str) -> None:
        # Renamed away first: readers see the whole sample or none, even if the deletion is cut
        # short (what a killed process left is finished off by the next writer's sweep).
        remove_atomically(self.sample_path(sample_id), durable=True)

    def _read(self, sample_id: str, name: str) -> np.ndarray:
        return np.asarray(sample_array(self._complete_group(sample_id), name)[:])

    def _complete_group(self, sample_id: str) -> zarr.Group:
        group = self.sample_group(sample_id)
        status = group.attrs.get("status")
        if status != SampleStatus.COMPLETE:
            raise IncompleteSampleError(
                f"sample {sample_id!r} is {status!r}, not complete: its embedding was interrupted "
                "or is still running; run it again to resume, or remove the sample"
            )
        return group

    def _group(self, sample_id: str, *, writable: bool = False) -> zarr.Group:
        mode: Literal["r", "r+"] = "r+" if writable else "r"
        return zarr.open_group(self._zstore, path=f"{SAMPLES}/{sample_id}", mode=mode)

    def _lock(self, sample_id: str) -> NameLock:
        return NameLock(
            self._path / SAMPLES / f".{sample_id}.lock",
            what=f"sample {sample_id!r} in {self._path}",
        )

    def _check_can_write(self, *, embeddings: bool) -> None:
        if not self._writable:
            raise StoreError(f"{self._path} was opened read-only; open it with mode='a' to write")
        if embeddings and not self._checked:
            raise StoreError(
                "writing embeddings needs the encoder fingerprint, checked against the store's: "
                f"open it with CohortStore.open({str(self._path)!r}, mode='a', fingerprint=...)"
            )


def check_metadata(metadata: object) -> dict[str, str]:
    """``metadata`` as stored: a mapping of non-empty text keys to text values."""
    if not isinstance(metadata, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidParameterError(
            f"sample metadata must map column names to text values, got {metadata!r}"
        )
    return dict(metadata)
