"""Saved sub-spot maps: a sub-spot model's prediction of each sample, kept per model.

Predicting a sample's bins reads all its bin features and context rings, deconvolves its spots
and runs the ensemble; every later command (predictions, interactions, the report, the viewer,
exports) reads the result back instead::

    maps/                           a Zarr v3 group
      <model_id>/                   attrs["tmescope_maps"]: model_id, model_dir, bin_um,
                                    populations, populations_from, fingerprint, created
        <sample_id>/                attrs: n_bins, bin_um, temperature, spread (the strength of
                                    the spots' corrections between them; absent before
                                    2026-12-08: 1), measured_spots, created,
                                    version (a random id of this writing), sample_hash,
                                    sample_completed
          reconciled  (n_bins, P) float32  shares reconciled with the measured spots
          image       (n_bins, P) float32  the image's shares (ensemble mean)
          std         (n_bins, P) float32  their spread over the ensemble
          disc        (n_bins,)   int32    the spot (in the sample's spot order) whose disc
                                           holds the bin; -1 between spots
          pairs/<key>/                     pair statistics of these maps (``pair_stats.py``)

Expression is not kept: it is the shares times the model's reference profiles, recomputed on
reading. Sets are written and kept fresh as fused sets are (:mod:`tmescope.store.model_sets`).
"""

from __future__ import annotations

import uuid
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
    group_attrs,
    is_fresh,
    model_folder,
    read_description,
    remove_sample_sets,
    sample_stamp,
    verify_model_sets,
    write_group,
)
from tmescope.store.schema import now

if TYPE_CHECKING:
    from tmescope.store.feature_store import CohortStore

MAPS = "maps"
MAPS_ATTR = "tmescope_maps"
SHARES = ("reconciled", "image", "std")
PAIRS = "pairs"


@dataclass(frozen=True)
class MapsModelInfo:
    """What a model's saved maps are: its id and folder, bin size and populations."""

    model_id: str
    model_dir: str
    bin_um: float
    populations: tuple[str, ...]
    populations_from: str  # "reference" (shares of cells) or "markers" (of marker signal)
    fingerprint: Mapping[str, Any]
    created: str = ""

    def to_attrs(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "model_dir": self.model_dir, "bin_um": self.bin_um,
            "populations": list(self.populations), "populations_from": self.populations_from,
            "fingerprint": dict(self.fingerprint), "created": self.created or now(),
        }  # fmt: skip

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> MapsModelInfo:
        return cls(
            model_id=str(attrs["model_id"]), model_dir=str(attrs["model_dir"]),
            bin_um=float(attrs["bin_um"]), populations=tuple(attrs["populations"]),
            populations_from=str(attrs["populations_from"]),
            fingerprint=dict(attrs["fingerprint"]), created=str(attrs.get("created", "")),
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class SavedMaps:
    """One sample's maps, read back (or about to be written)."""

    reconciled: np.ndarray  # (n_bins, P) float32
    image: np.ndarray  # (n_bins, P) float32
    std: np.ndarray  # (n_bins, P) float32
    disc: np.ndarray  # (n_bins,) int32, -1 between spots
    temperature: float
    measured_spots: int
    bin_um: float
    version: str = ""
    spread: float = 1.0  # how much of the spots' corrections reached the bins between them  # a random id of the writing of the set: pair statistics name it

    @property
    def n_bins(self) -> int:
        return int(self.disc.size)


def maps_directory(store: CohortStore, model_id: str) -> Path:
    """``maps/<model_id>`` of ``store`` (which may not exist yet)."""
    return model_folder(store, MAPS, model_id)


def read_maps_info(store: CohortStore, model_id: str) -> MapsModelInfo | None:
    """The description of ``model_id``'s saved maps, or ``None`` when there are none."""
    path = maps_directory(store, model_id) / "zarr.json"
    attrs = read_description(path, MAPS_ATTR)
    try:
        return None if attrs is None else MapsModelInfo.from_attrs(attrs)
    except (KeyError, ValueError, TypeError) as error:
        raise StoreError(
            f"{path} is unreadable ({error!r}); remove {path.parent} and run the command again"
        ) from error


def write_maps_info(store: CohortStore, info: MapsModelInfo) -> None:
    """Write (or rewrite) ``maps/<model_id>/zarr.json``, atomically."""
    check_writable(store)
    ensure_group(store.path / MAPS)
    write_group(maps_directory(store, info.model_id), {MAPS_ATTR: info.to_attrs()})


def fresh_maps(store: CohortStore, model_id: str) -> dict[str, dict[str, Any]]:
    """The samples whose saved maps of ``model_id`` are whole and fresh → their attributes."""
    return fresh_sets(store, maps_directory(store, model_id))


def fresh_maps_version(store: CohortStore, model_id: str, sample_id: str) -> str | None:
    """The version of ``sample_id``'s whole, fresh set of ``model_id``'s maps; ``None`` when
    there is none (one sample only: what a per-sample task asks, without listing the cohort)."""
    path = maps_directory(store, model_id) / sample_id
    attrs = group_attrs(path) if path.is_dir() else None
    if attrs is None or not is_fresh(store, sample_id, attrs):
        return None
    return str(attrs.get("version", ""))


def write_maps(store: CohortStore, model_id: str, sample_id: str, maps: SavedMaps) -> str:
    """Write one sample's maps (a whole set replaces the old one in one rename); the set's
    ``version``, a random id that pair statistics computed from it record."""
    check_writable(store)
    _check_shapes(maps)
    if read_maps_info(store, model_id) is None:
        raise StoreError(f"write the maps' description (write_maps_info) before {sample_id!r}")
    version = uuid.uuid4().hex

    def write(partial: Path) -> None:
        group = zarr.open_group(LocalStore(partial), mode="w", zarr_format=3)
        for name in (*SHARES, "disc"):
            value = getattr(maps, name)
            array = np.ascontiguousarray(value, dtype=np.int32 if name == "disc" else np.float32)
            chunks = (min(max(array.shape[0], 1), 65536), *array.shape[1:])
            group.create_array(name, data=array, chunks=chunks)
        group.attrs.update(
            {"n_bins": maps.n_bins, "bin_um": maps.bin_um, "temperature": maps.temperature,
             "spread": maps.spread, "measured_spots": maps.measured_spots, "created": now(), "version": version,
             **sample_stamp(store, sample_id)}
        )  # fmt: skip
        fsync_tree(partial)

    write_atomically(maps_directory(store, model_id) / sample_id, write)
    return version


def read_maps(store: CohortStore, model_id: str, sample_id: str) -> SavedMaps:
    """One sample's saved maps; a :class:`StoreError` when they are absent or damaged."""
    path = maps_directory(store, model_id) / sample_id
    try:
        group = zarr.open_group(LocalStore(path, read_only=True), mode="r")
        arrays = {}
        for name in (*SHARES, "disc"):
            node = group[name]
            if not isinstance(node, zarr.Array):
                raise KeyError(name)
            arrays[name] = np.asarray(node[...])
        attrs: dict[str, Any] = dict(group.attrs.asdict())
        return SavedMaps(
            reconciled=arrays["reconciled"], image=arrays["image"], std=arrays["std"],
            disc=arrays["disc"], temperature=float(attrs["temperature"]),
            measured_spots=int(attrs["measured_spots"]), bin_um=float(attrs["bin_um"]),
            version=str(attrs["version"]), spread=float(attrs.get("spread", 1.0)),
        )  # fmt: skip
    except (FileNotFoundError, KeyError, ValueError, TypeError) as error:
        raise StoreError(
            f"sample {sample_id!r} has no readable sub-spot maps of model {model_id} in "
            f"{store.path} ({error!r}); run `tmescope predict STORE MODEL_DIR --resolution 16` "
            "to write them"
        ) from error


def remove_maps(store: CohortStore, sample_id: str) -> int:
    """Delete every model's saved maps of ``sample_id`` (renamed away first); how many."""
    return remove_sample_sets(store, MAPS, sample_id)


def verify_maps(store: CohortStore) -> list[str]:
    """Problems of the saved maps, one line each, found as
    :func:`tmescope.store.model_sets.verify_model_sets` says."""
    return verify_model_sets(store, MAPS, read_info=read_maps_info, verify_set=_verify_set)


def _verify_set(store: CohortStore, info: MapsModelInfo, sample_id: str, where: str) -> list[str]:
    try:
        maps = read_maps(store, info.model_id, sample_id)
    except StoreError:
        return [f"{where}: damaged (arrays missing or unreadable); delete it, the next command "
                "writes it again"]  # fmt: skip
    record = store.sample_record(sample_id)
    if not is_fresh(store, sample_id, group_attrs(store.path / where) or {}):
        return []  # stale: written again when next needed, whatever it holds
    n_bins = record.bins.n_bins if record.bins is not None else -1
    p = len(info.populations)
    wrong = [k for k in SHARES if getattr(maps, k).shape != (maps.n_bins, p)]
    if wrong or maps.n_bins != n_bins or maps.disc.max(initial=-1) >= record.n_spots:
        what = ", ".join(wrong) or "bins"
        return [f"{where}: {what} do not fit the sample's {n_bins} bins; delete it, the next "
                "command writes it again"]  # fmt: skip
    return []


def _check_shapes(maps: SavedMaps) -> None:
    n = maps.n_bins
    if maps.disc.ndim != 1:
        raise InvalidParameterError(f"disc must be (n_bins,), got shape {maps.disc.shape}")
    for name in SHARES:
        value = getattr(maps, name)
        if value.ndim != 2 or value.shape[0] != n or not np.isfinite(value).all():
            raise InvalidParameterError(
                f"maps {name} must be a finite ({n}, P) array, got shape {value.shape}"
            )
