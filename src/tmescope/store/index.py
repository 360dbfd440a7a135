"""The cohort's similarity index: a FAISS index over every complete sample's embeddings.

Cosine similarity: embeddings (float16 in the store) are cast to float32, L2-normalised and
searched by inner product. Three kinds, built in ``vector_index.py``: ``flat`` (exact,
``IndexFlatIP``), ``ivf`` (``IndexIVFScalarQuantizer`` holding float16 rows, nlist the power of
two nearest √N, nprobe tuned for recall) and ``hnsw`` (``IndexHNSWFlat``, M=32, efSearch tuned); ``auto`` is flat up to 100,000
rows, IVF above. On disk, inside the store::

    index/
      zarr.json                 a Zarr v3 group whose attrs["tmescope_index"] describe the index:
                                kind, params, n, dim, generation, files, covered samples
                                ({sample_id, n, completed}) and the store's encoder fingerprint
      faiss-<generation>.index  the FAISS index (faiss.write_index)
      rows-<generation>.npz     row → (sample, row, barcode, x, y): arrays sample (int32, an index
                                into the covered samples), row (int64), barcode (str), x, y (float32)
      .lock                     held while an index is being written

A :class:`VectorSpace` says which vectors an index holds: the raw embeddings (``index/``, the
default) or one trained model's fused embeddings (``fused/<model_id>/_index/``, same layout,
``space: "fused:<model_id>"`` in its attributes).

A build writes its two data files (each through a temporary file and ``os.replace``) under a
fresh generation name, then commits by replacing ``zarr.json`` the same way, then deletes the
files of older generations: a reader sees the old index or the new one, never a mix, and an
interrupted build leaves the old index working. FAISS is imported inside functions only, and
no FAISS object leaves this module: callers get :class:`SearchResult`.
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tmescope.errors import (
    IndexMissingError,
    InvalidParameterError,
    StaleIndexWarning,
    StoreError,
)
from tmescope.store.atomic import sweep_folder, write_atomically
from tmescope.store.fingerprint import field_differences
from tmescope.store.locking import NameLock
from tmescope.store.schema import INDEX, now
from tmescope.store.vector_index import (
    GPU_MAX_K,
    faiss_module,
    make_vector_index,
    on_search_device,
    search_parameters,
)

if TYPE_CHECKING:
    import pandas as pd

    from tmescope.store.feature_store import CohortStore

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
IndexState = Literal["fresh", "stale", "missing"]

INDEX_ATTR = "tmescope_index"
INDEX_FORMAT = 1
FLAT_MAX_ROWS = 100_000  # ``auto`` stays exact up to here: a flat search is fast enough
BUILD_COMMAND = "tmescope index STORE"


@dataclass(frozen=True)
class CoveredSample:
    """A sample the index holds: its id, row count and when it was completed."""

    sample_id: str
    n: int
    completed: str | None


@dataclass(frozen=True)
class VectorSpace:
    """Which vectors an index holds: the raw embeddings (``model_id=None``) or one trained
    model's fused embeddings (``fused/<model_id>/``, see ``store/fused.py``)."""

    model_id: str | None = None

    @property
    def name(self) -> str:
        return "raw" if self.model_id is None else f"fused:{self.model_id}"

    @property
    def build_command(self) -> str:
        if self.model_id is None:
            return BUILD_COMMAND
        return f"{BUILD_COMMAND} --space fused --model MODEL_DIR"

    def directory(self, store: CohortStore) -> Path:
        if self.model_id is None:
            return store.path / INDEX
        from tmescope.store.fused import FUSED_INDEX, model_directory

        return model_directory(store, self.model_id) / FUSED_INDEX

    def samples(self, store: CohortStore) -> dict[str, CoveredSample]:
        """The samples this space can index now, in the store's order."""
        if self.model_id is None:
            return _complete_samples(store)
        from tmescope.store.fused import fresh_samples

        fresh = fresh_samples(store, self.model_id)
        return {
            sid: CoveredSample(sid, int(fresh[sid]["n"]), str(fresh[sid]["created"]))
            for sid in store.sample_ids()
            if sid in fresh
        }

    def vectors(self, store: CohortStore, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, store_rows)`` of one sample in this space."""
        if self.model_id is None:
            vectors = store.read_embeddings(sample_id)
            return vectors, np.arange(vectors.shape[0], dtype=np.int64)
        from tmescope.store.fused import read_fused_sample

        data = read_fused_sample(store, self.model_id, sample_id)
        return data.fused, data.rows


RAW = VectorSpace()


@dataclass(frozen=True)
class IndexInfo:
    """What an index holds and how it was built (the attributes of ``index/``)."""

    kind: Literal["flat", "ivf", "hnsw"]
    params: Mapping[str, Any]
    n: int
    dim: int
    samples: tuple[CoveredSample, ...]
    fingerprint: Mapping[str, Any]
    built: str
    generation: str
    files: Mapping[str, str] = field(default_factory=dict)
    space: str = "raw"

    def to_attrs(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "kind": self.kind,
            "params": dict(self.params),
            "n": self.n,
            "dim": self.dim,
            "samples": [
                {"sample_id": s.sample_id, "n": s.n, "completed": s.completed} for s in self.samples
            ],
            "fingerprint": dict(self.fingerprint),
            "built": self.built,
            "generation": self.generation,
            "files": dict(self.files),
            "space": self.space,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> IndexInfo:
        try:
            return cls(
                kind=attrs["kind"],
                params=dict(attrs["params"]),
                n=int(attrs["n"]),
                dim=int(attrs["dim"]),
                samples=tuple(
                    CoveredSample(str(s["sample_id"]), int(s["n"]), s.get("completed"))
                    for s in attrs["samples"]
                ),
                fingerprint=dict(attrs["fingerprint"]),
                built=str(attrs["built"]),
                generation=str(attrs["generation"]),
                files={str(k): str(v) for k, v in attrs["files"].items()},
                space=str(attrs.get("space", "raw")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise IndexMissingError(
                f"the index's attributes are malformed ({error!r}); build it again with "
                f"`{BUILD_COMMAND}`"
            ) from error


@dataclass(frozen=True)
class SearchResult:
    """One hit: its rank (1 = most similar), where it is, and its cosine similarity."""

    rank: int
    sample_id: str
    barcode: str
    x: float
    y: float
    score: float


class CohortIndex:
    """A loaded index: search it with :meth:`search` (load once, query many times)."""

    def __init__(self, info: IndexInfo, faiss_index: Any, rows: Mapping[str, np.ndarray]):
        self.info = info
        self._index = faiss_index
        self._sample = rows["sample"]
        self._row = rows["row"]
        self._barcode = rows["barcode"]
        self._x = rows["x"]
        self._y = rows["y"]
        self._sample_ids = [s.sample_id for s in info.samples]
        self._device_index: Any = None  # a GPU copy, made on the first search that can use it

    @property
    def n(self) -> int:
        return self.info.n

    def search(
        self, queries: np.ndarray, *, k: int, exclude_sample: str | None = None
    ) -> list[list[SearchResult]]:
        """The ``k`` most similar rows to each query (``(q, dim)`` or ``(dim,)``), best first.

        With ``exclude_sample``, rows of that sample are skipped and ``k`` rows of the other
        samples are returned.
        """
        x = _as_queries(queries, self.info.dim)
        excluded = -1
        available = self.n
        if exclude_sample is not None and exclude_sample in self._sample_ids:
            excluded = self._sample_ids.index(exclude_sample)
            available -= self.info.samples[excluded].n
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 < k <= available:
            where = f" outside sample {exclude_sample!r}" if excluded >= 0 else ""
            raise InvalidParameterError(
                f"k must be an int from 1 to {available} (the rows in the index{where}), got {k!r}"
            )
        k = int(k)
        fetch = k if excluded < 0 else min(self.n, 2 * k + 16)
        while True:
            scores, labels = self._search(x, fetch)
            hits = [self._keep(s, lab, excluded, k) for s, lab in zip(scores, labels, strict=True)]
            if fetch >= self.n or all(len(h) >= k for h in hits):
                break
            fetch = min(self.n, fetch * 4)
        return hits

    def _search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k <= GPU_MAX_K:
            if self._device_index is None:
                self._device_index = on_search_device(self._index, self.info.kind, self.info.params)
            if self._device_index is not self._index:
                scores, labels = self._device_index.search(x, k)
                return scores, labels
        params: Any = None
        if self.info.kind == "hnsw":
            params = search_parameters("efSearch", max(int(self.info.params["efSearch"]), k))
        elif self.info.kind == "ivf":
            params = search_parameters("nprobe", int(self.info.params["nprobe"]))
        scores, labels = self._index.search(x, k, params=params)
        return scores, labels

    def _keep(
        self, scores: np.ndarray, labels: np.ndarray, excluded: int, k: int
    ) -> list[SearchResult]:
        hits: list[SearchResult] = []
        for score, label in zip(scores.tolist(), labels.tolist(), strict=True):
            if label < 0 or (excluded >= 0 and self._sample[label] == excluded):
                continue
            hits.append(
                SearchResult(
                    rank=len(hits) + 1,  # 1 is the best hit, as people count
                    sample_id=self._sample_ids[self._sample[label]],
                    barcode=str(self._barcode[label]),
                    x=float(self._x[label]),
                    y=float(self._y[label]),
                    score=float(score),
                )
            )
            if len(hits) == k:
                break
        return hits


def results_frame(results: Sequence[Sequence[SearchResult]]) -> pd.DataFrame:
    """Search results as one table: query, rank, sample_id, barcode, x, y, score."""
    import pandas as pd

    records = [{"query": q, **vars(hit)} for q, hits in enumerate(results) for hit in hits]
    columns = ["query", "rank", "sample_id", "barcode", "x", "y", "score"]
    return pd.DataFrame.from_records(records, columns=columns)


# --- building ---------------------------------------------------------------------------------


def build_index(
    store: CohortStore, *, kind: IndexKind = "auto", seed: int = 0, space: VectorSpace = RAW
) -> IndexInfo:
    """Build the index over every complete sample of ``store`` (opened with ``mode="a"``)."""
    _check_kind(kind)
    _check_writable(store)
    with _index_lock(store, space):
        return _build(store, kind, seed, space)


def refresh_index(store: CohortStore, *, seed: int = 0, space: VectorSpace = RAW) -> IndexInfo:
    """Bring the index up to date: add new samples to a flat index, else rebuild it.

    A missing index is built (``auto``); a fresh one is left alone. A flat index whose covered
    samples are all unchanged gets the new samples' rows appended; anything else (a sample
    removed or rewritten, an IVF or HNSW index, a flat one grown past the ``auto`` limit when
    it was chosen automatically) is rebuilt with the same kind choice.
    """
    _check_writable(store)
    with _index_lock(store, space):
        info = _read_info(store, space)
        if info is None or not _files_present(store, info, space):
            requested_kind: IndexKind = (
                "auto" if info is None else info.params.get("requested", info.kind)
            )
            return _build(store, requested_kind, seed, space)
        current = space.samples(store)
        if _is_fresh(store, info, current):
            return info
        requested: IndexKind = info.params.get("requested", info.kind)
        covered = {s.sample_id: s for s in info.samples}
        unchanged = all(s.sample_id in current and current[s.sample_id] == s for s in info.samples)
        added = [s for sid, s in current.items() if sid not in covered]
        n_after = info.n + sum(s.n for s in added)
        auto_flat = requested != "auto" or n_after <= FLAT_MAX_ROWS
        if info.kind != "flat" or not unchanged or not auto_flat or not _same_encoder(store, info):
            return _build(store, requested, seed, space)
        loaded = _load(store, info, space)
        faiss = faiss_module()

        index = loaded._index
        rows = {
            "sample": [loaded._sample],
            "row": [loaded._row],
            "barcode": [loaded._barcode],
            "x": [loaded._x],
            "y": [loaded._y],
        }
        samples = list(info.samples)
        for sample in added:
            vectors, extra = _sample_rows(store, sample, len(samples), space)
            faiss.normalize_L2(vectors)
            index.add(vectors)
            for key, value in extra.items():
                rows[key].append(value)
            samples.append(sample)
        merged = {key: np.concatenate(parts) for key, parts in rows.items()}
        new = IndexInfo(
            kind="flat",
            params=dict(info.params),
            n=int(index.ntotal),
            dim=info.dim,
            samples=tuple(samples),
            fingerprint=store.fingerprint,
            built=now(),
            generation=uuid.uuid4().hex[:12],
            space=space.name,
        )
        log.info("index of %s: added %d samples (%d rows)", store.path, len(added), new.n)
        return _write(store, new, index, merged, space)


def _build(store: CohortStore, kind: IndexKind, seed: int, space: VectorSpace) -> IndexInfo:
    faiss = faiss_module()

    samples = list(space.samples(store).values())
    if not samples:
        what = "complete sample" if space.model_id is None else f"fused set of {space.name}"
        raise StoreError(f"{store.path} holds no {what}: write one before building the index")
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("sample", "row", "barcode", "x", "y")}
    # One float32 array filled sample by sample: no second copy of the whole cohort.
    first, _ = space.vectors(store, samples[0].sample_id)
    dim = int(first.shape[1])
    x = np.empty((sum(s.n for s in samples), dim), dtype=np.float32)
    filled = 0
    for position, sample in enumerate(samples):
        vectors, extra = _sample_rows(store, sample, position, space)
        x[filled : filled + len(vectors)] = vectors
        filled += len(vectors)
        for key, value in extra.items():
            rows[key].append(value)
    if not np.isfinite(x).all():
        raise StoreError("the store holds non-finite embeddings; run `tmescope verify STORE`")
    faiss.normalize_L2(x)
    n, dim = x.shape
    chosen = kind if kind != "auto" else ("flat" if n <= FLAT_MAX_ROWS else "ivf")
    params: dict[str, Any] = {"requested": kind, "metric": "inner_product", "normalised": True}
    index, built = make_vector_index(x, chosen, rng=np.random.default_rng(seed))
    params.update(built)
    merged = {key: np.concatenate(parts) for key, parts in rows.items()}
    info = IndexInfo(
        kind=chosen,
        params=params,
        n=n,
        dim=dim,
        samples=tuple(samples),
        fingerprint=store.fingerprint,
        built=now(),
        generation=uuid.uuid4().hex[:12],
        space=space.name,
    )
    log.info("built a %s index of %d rows over %d samples", chosen, n, len(samples))
    return _write(store, info, index, merged, space)


def _sample_rows(
    store: CohortStore, sample: CoveredSample, position: int, space: VectorSpace
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    raw, store_rows = space.vectors(store, sample.sample_id)
    vectors = np.ascontiguousarray(raw, dtype=np.float32)
    coords = store.read_coords(sample.sample_id)[store_rows]
    n = vectors.shape[0]
    if n != sample.n:
        raise StoreError(
            f"sample {sample.sample_id!r} has {n} embeddings but n={sample.n}; run "
            "`tmescope verify STORE`"
        )
    return vectors, {
        "sample": np.full(n, position, dtype=np.int32),
        "row": store_rows,
        "barcode": store.read_barcodes(sample.sample_id)[store_rows],
        "x": np.asarray(coords[:, 0], dtype=np.float32),
        "y": np.asarray(coords[:, 1], dtype=np.float32),
    }


def _write(
    store: CohortStore,
    info: IndexInfo,
    index: Any,
    rows: Mapping[str, np.ndarray],
    space: VectorSpace,
) -> IndexInfo:
    faiss = faiss_module()

    directory = space.directory(store)
    directory.mkdir(parents=True, exist_ok=True)
    names = {"faiss": f"faiss-{info.generation}.index", "rows": f"rows-{info.generation}.npz"}
    _replace(directory / names["faiss"], lambda tmp: faiss.write_index(index, str(tmp)))
    _replace(directory / names["rows"], lambda tmp: _save_rows(tmp, rows))
    info = replace(info, files=names)
    metadata = {"zarr_format": 3, "node_type": "group", "attributes": {INDEX_ATTR: info.to_attrs()}}
    _replace(
        directory / "zarr.json",
        lambda tmp: tmp.write_text(json.dumps(metadata, indent=2), encoding="utf-8"),
    )
    keep = {*names.values(), "zarr.json"}
    for path in directory.iterdir():
        if path.is_file() and path.name not in keep and not path.name.startswith("."):
            path.unlink()  # files of older generations (or of killed builds), now unreferenced
    sweep_folder(directory)  # temporary files of killed builds
    return info


def _save_rows(path: Path, rows: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(
            handle,
            sample=rows["sample"],
            row=rows["row"],
            barcode=rows["barcode"],
            x=rows["x"],
            y=rows["y"],
        )


def _replace(target: Path, write: Any) -> None:
    """Write ``target`` through a temporary file beside it, flushed, then renamed into place."""
    write_atomically(target, write, durable=True)


# --- reading ----------------------------------------------------------------------------------


def read_index_info(store: CohortStore, space: VectorSpace = RAW) -> IndexInfo | None:
    """The index's description, or ``None`` when the store has no index."""
    return _read_info(store, space)


def index_status(store: CohortStore, space: VectorSpace = RAW) -> IndexState:
    """``fresh`` when the index covers exactly the complete samples, ``stale``, or ``missing``."""
    info = _read_info(store, space)
    if info is None or not _files_present(store, info, space):
        return "missing"
    return "fresh" if _is_fresh(store, info, space.samples(store)) else "stale"


def load_index(
    store: CohortStore, *, warn_stale: bool = True, space: VectorSpace = RAW
) -> CohortIndex:
    """Load the index; warns (:class:`StaleIndexWarning`) when it is out of date."""
    info = _read_info(store, space)
    command = space.build_command
    if info is None:
        raise IndexMissingError(
            f"{store.path} has no similarity index of the {space.name} space; build it with "
            f"`{command}`"
        )
    if warn_stale and not _is_fresh(store, info, space.samples(store)):
        warnings.warn(
            f"the {space.name} index of {store.path} does not cover the store's current "
            f"samples (samples were added, removed or rewritten since it was built); run "
            f"`{command}` again to bring it up to date",
            StaleIndexWarning,
            stacklevel=2,
        )
    return _load(store, info, space)


def _load(store: CohortStore, info: IndexInfo, space: VectorSpace = RAW) -> CohortIndex:
    faiss = faiss_module()

    if not _files_present(store, info, space):
        raise IndexMissingError(
            f"the index files of {store.path} are missing; build it again with "
            f"`{space.build_command}`"
        )
    directory = space.directory(store)
    index = faiss.read_index(str(directory / info.files["faiss"]))
    with np.load(directory / info.files["rows"], allow_pickle=False) as data:
        rows = {key: data[key] for key in ("sample", "row", "barcode", "x", "y")}
    if index.ntotal != info.n or index.d != info.dim or len(rows["row"]) != info.n:
        raise IndexMissingError(
            f"the index of {store.path} is inconsistent ({index.ntotal} vectors, "
            f"{len(rows['row'])} rows, {info.n} expected); build it again with `{BUILD_COMMAND}`"
        )
    return CohortIndex(info, index, rows)


def _read_info(store: CohortStore, space: VectorSpace = RAW) -> IndexInfo | None:
    path = space.directory(store) / "zarr.json"
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise IndexMissingError(
            f"{path} cannot be read ({error}); build the index again with `{BUILD_COMMAND}`"
        ) from error
    attrs = metadata.get("attributes", {}).get(INDEX_ATTR)
    return None if attrs is None else IndexInfo.from_attrs(attrs)


def _files_present(store: CohortStore, info: IndexInfo, space: VectorSpace = RAW) -> bool:
    directory = space.directory(store)
    return all((directory / info.files.get(k, "")).is_file() for k in ("faiss", "rows"))


def _complete_samples(store: CohortStore) -> dict[str, CoveredSample]:
    samples = {}
    for sample_id in store.sample_ids():
        record = store.sample_record(sample_id)
        samples[sample_id] = CoveredSample(sample_id, record.n, record.completed)
    return samples


def _is_fresh(store: CohortStore, info: IndexInfo, current: Mapping[str, CoveredSample]) -> bool:
    covered = {s.sample_id: s for s in info.samples}
    return covered == dict(current) and _same_encoder(store, info)


def _same_encoder(store: CohortStore, info: IndexInfo) -> bool:
    return not field_differences(store.fingerprint, dict(info.fingerprint))


def _check_kind(kind: object) -> None:
    if kind not in ("auto", "flat", "ivf", "hnsw"):
        raise InvalidParameterError(
            f"index kind must be one of auto, flat, ivf, hnsw; got {kind!r}"
        )


def _check_writable(store: CohortStore) -> None:
    if not store.writable:
        raise StoreError(
            f"{store.path} was opened read-only; open it with mode='a' to build its index"
        )


def _index_lock(store: CohortStore, space: VectorSpace = RAW) -> _Locked:
    directory = space.directory(store)
    directory.mkdir(parents=True, exist_ok=True)
    return _Locked(NameLock(directory / ".lock", what=f"the index of {store.path}"))


class _Locked:
    def __init__(self, lock: NameLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    x = np.array(queries, dtype=np.float32, copy=True)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise InvalidParameterError(
            f"queries must be an array of shape (q, {dim}) with q ≥ 1, got {np.shape(queries)}"
        )
    norms = np.linalg.norm(x, axis=1)
    if not np.isfinite(x).all() or (norms == 0).any():
        raise InvalidParameterError("queries must be finite and non-zero vectors")
    x /= norms[:, None]
    return np.ascontiguousarray(x)
