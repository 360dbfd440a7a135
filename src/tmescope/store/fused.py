"""Fused embeddings in the store: a trained head's view of every spot and tile, kept per model.

The head's hidden representation (image + neighbourhood) and its TME-state predictions are
written back beside the raw embeddings, one set per model, so niches can be clustered and the
fused space searched without running the model again::

    fused/                          a Zarr v3 group
      <model_id>/                   attrs["tmescope_fused"]: model_id, model_dir, dim, genes,
                                    state_names, fingerprint (the store's encoder), created
        <sample_id>/                attrs: n, sample_hash, sample_completed, grid, created
          rows        (n,)    int64    the sample's store rows these rows are (spots, then tiles)
          fused       (n, d)  float16  the head's hidden representation (members side by side)
          states      (n, S)  float32  predicted TME states (ensemble mean)
          states_std  (n, S)  float32  their uncertainty
          expression  (n, G)  float16  predicted target genes (ensemble mean)
        _index/                     the fused space's FAISS index (laid out as the store's
                                    ``index/``; a sample id cannot start with ``_``)

A sample's set is written into a hidden folder beside it and swapped into place in one step
(``atomic.write_atomically``), so a reader sees the old set or the new one, whole; two writers
of the same set cannot mix (each puts a whole, equal set in place). A set is *fresh* while the sample's source hash and completion time match
the ones recorded: re-embedding a sample makes its fused set stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from tmescope.errors import InvalidParameterError, StoreError
from tmescope.store.atomic import write_atomically
from tmescope.store.durable import fsync_tree
from tmescope.store.model_sets import (
    check_writable,
    ensure_group,
    fresh_sets,
    model_folder,
    read_description,
    remove_sample_sets,
    sample_stamp,
    verify_model_sets,
    visible,
    write_group,
)
from tmescope.store.schema import now

if TYPE_CHECKING:
    from tmescope.store.feature_store import CohortStore

FUSED = "fused"
FUSED_ATTR = "tmescope_fused"
FUSED_INDEX = "_index"
ARRAYS = ("rows", "fused", "states", "states_std", "expression")


@dataclass(frozen=True)
class FusedModelInfo:
    """What a fused set was made by: the model's id and directory, its outputs' names."""

    model_id: str
    model_dir: str
    dim: int
    genes: tuple[str, ...]
    state_names: tuple[str, ...]
    fingerprint: Mapping[str, Any]
    created: str = ""

    def to_attrs(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_dir": self.model_dir,
            "dim": self.dim,
            "genes": list(self.genes),
            "state_names": list(self.state_names),
            "fingerprint": dict(self.fingerprint),
            "created": self.created or now(),
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> FusedModelInfo:
        return cls(
            model_id=str(attrs["model_id"]),
            model_dir=str(attrs["model_dir"]),
            dim=int(attrs["dim"]),
            genes=tuple(attrs["genes"]),
            state_names=tuple(attrs["state_names"]),
            fingerprint=dict(attrs["fingerprint"]),
            created=str(attrs.get("created", "")),
        )


@dataclass(frozen=True)
class FusedSample:
    """One sample's fused rows, read back (or about to be written)."""

    rows: np.ndarray  # (n,) int64 store rows
    fused: np.ndarray  # (n, d)
    states: np.ndarray  # (n, S)
    states_std: np.ndarray  # (n, S)
    expression: np.ndarray  # (n, G)

    @property
    def n(self) -> int:
        return int(self.rows.size)


__all__ = ["sample_stamp"]  # re-exported: where fused sets' freshness was first defined


def model_directory(store: CohortStore, model_id: str) -> Path:
    """``fused/<model_id>`` of ``store`` (which may not exist yet)."""
    return model_folder(store, FUSED, model_id)


def read_model_info(store: CohortStore, model_id: str) -> FusedModelInfo | None:
    """The description of ``model_id``'s fused sets, or ``None`` when there are none."""
    path = model_directory(store, model_id) / "zarr.json"
    attrs = read_description(path, FUSED_ATTR)
    try:
        return None if attrs is None else FusedModelInfo.from_attrs(attrs)
    except (KeyError, ValueError, TypeError) as error:
        raise StoreError(
            f"{path} is unreadable ({error!r}); remove {path.parent} and run the command again"
        ) from error


def fused_models(store: CohortStore) -> list[FusedModelInfo]:
    """Every model with fused sets in ``store``."""
    root = store.path / FUSED
    if not root.is_dir():
        return []
    infos = [read_model_info(store, p.name) for p in sorted(root.iterdir()) if visible(p)]
    return [info for info in infos if info is not None]


def fresh_samples(store: CohortStore, model_id: str) -> dict[str, dict[str, Any]]:
    """The samples whose fused set of ``model_id`` is whole and fresh → their attributes."""
    return fresh_sets(store, model_directory(store, model_id))


def write_model_info(store: CohortStore, info: FusedModelInfo) -> None:
    """Write (or rewrite) ``fused/<model_id>/zarr.json``, atomically."""
    check_writable(store)
    ensure_group(store.path / FUSED)
    write_group(model_directory(store, info.model_id), {FUSED_ATTR: info.to_attrs()})


def write_fused_sample(
    store: CohortStore, model_id: str, sample_id: str, data: FusedSample, *, grid: bool
) -> None:
    """Write one sample's fused set; a whole set replaces the old one in one rename."""
    check_writable(store)
    _check_shapes(data)
    directory = model_directory(store, model_id)
    if read_model_info(store, model_id) is None:
        raise StoreError(f"write the model's description (write_model_info) before {sample_id!r}")

    def write(partial: Path) -> None:
        group = zarr.open_group(LocalStore(partial), mode="w", zarr_format=3)
        for name in ARRAYS:
            value = getattr(data, name)
            dtype = np.float16 if name in ("fused", "expression") else value.dtype
            array = np.ascontiguousarray(value, dtype=dtype)
            chunks = (min(max(array.shape[0], 1), 65536), *array.shape[1:])
            group.create_array(name, data=array, chunks=chunks)
        group.attrs.update(
            {"n": data.n, "grid": grid, "created": now(), **sample_stamp(store, sample_id)}
        )
        fsync_tree(partial)

    # A whole set replaces the old one in one step; two writers of one set both write whole
    # (equal) sets, and the last one stays.
    write_atomically(directory / sample_id, write)


def read_fused_sample(store: CohortStore, model_id: str, sample_id: str) -> FusedSample:
    """One sample's fused set; a :class:`StoreError` when it is absent or damaged."""
    path = model_directory(store, model_id) / sample_id
    try:
        group = zarr.open_group(LocalStore(path, read_only=True), mode="r")
        arrays = {}
        for name in ARRAYS:
            node = group[name]
            if not isinstance(node, zarr.Array):
                raise KeyError(name)
            arrays[name] = np.asarray(node[...])
    except (FileNotFoundError, KeyError, ValueError) as error:
        raise StoreError(
            f"sample {sample_id!r} has no readable fused set of model {model_id} in "
            f"{store.path} ({error!r}); run `tmescope niches STORE MODEL_DIR` to write it"
        ) from error
    return FusedSample(
        rows=arrays["rows"].astype(np.int64),
        fused=arrays["fused"].astype(np.float32),
        states=arrays["states"].astype(np.float32),
        states_std=arrays["states_std"].astype(np.float32),
        expression=arrays["expression"].astype(np.float32),
    )


def remove_fused_sets(store: CohortStore, sample_id: str) -> int:
    """Delete every model's fused set of ``sample_id`` (renamed away first); how many."""
    return remove_sample_sets(store, FUSED, sample_id)


def verify_fused(store: CohortStore) -> list[str]:
    """Problems of the fused sets, one line each (the fused space's index aside), found as
    :func:`tmescope.store.model_sets.verify_model_sets` says."""
    return verify_model_sets(
        store, FUSED, read_info=read_model_info, verify_set=_verify_set,
        skip=frozenset({FUSED_INDEX}),
    )  # fmt: skip


def _verify_set(store: CohortStore, info: FusedModelInfo, sample_id: str, where: str) -> list[str]:
    try:
        data = read_fused_sample(store, info.model_id, sample_id)
    except StoreError:
        return [f"{where}: damaged (arrays missing or unreadable); delete it, the next command "
                "writes it again"]  # fmt: skip
    n = store.sample_record(sample_id).n
    shapes = {
        "fused": (data.n, info.dim), "states": (data.n, len(info.state_names)),
        "states_std": (data.n, len(info.state_names)), "expression": (data.n, len(info.genes)),
    }  # fmt: skip
    wrong = [k for k, shape in shapes.items() if getattr(data, k).shape != shape]
    if wrong or data.n == 0 or data.rows.min() < 0 or data.rows.max() >= n:
        what = ", ".join(wrong) or "rows"
        return [f"{where}: {what} do not fit the sample's {n} rows; delete it, the next command "
                "writes it again"]  # fmt: skip
    return []


def _check_shapes(data: FusedSample) -> None:
    n = data.n
    for name in ARRAYS[1:]:
        value = getattr(data, name)
        if value.ndim != 2 or value.shape[0] != n or not np.isfinite(value).all():
            raise InvalidParameterError(
                f"fused {name} must be a finite ({n}, k) array, got shape {value.shape}"
            )
