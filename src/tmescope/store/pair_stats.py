"""Pair statistics of a sample's saved sub-spot maps, kept beside them.

``tmescope interactions --resolution`` draws hundreds of toroidal shifts per sample; what it
finds for one sample is kept in that sample's maps set, so that a run killed part-way (or the
report after it) takes up the finished samples instead of drawing their shifts again::

    maps/<model_id>/<sample_id>/pairs/<key>/   attrs: params, names, radius, n, n_shifts,
                                               maps_version, created
        ratio, null_mean, null_std, zscore, pvalue   (P, P) float64

``key`` names everything else that changes them (:func:`pair_stats_key`); the maps they were
computed from are named by their ``version``, and a set written again (its sample embedded
again) starts with no statistics, since the whole set folder is replaced. Each entry is written
into a hidden sibling and renamed into place, like the sets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from tmescope.store.atomic import write_atomically
from tmescope.store.durable import fsync_tree
from tmescope.store.maps import PAIRS, maps_directory
from tmescope.store.model_sets import check_writable, ensure_group, group_attrs
from tmescope.store.schema import now

if TYPE_CHECKING:
    from tmescope.store.feature_store import CohortStore

MATRICES = ("ratio", "null_mean", "null_std", "zscore", "pvalue")


def pair_stats_key(params: Mapping[str, Any]) -> str:
    """A folder name for the parameters that change the statistics (radius, shifts, seed …)."""
    text = json.dumps(dict(params), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pair_stats_path(store: CohortStore, model_id: str, sample_id: str, key: str) -> Path:
    return maps_directory(store, model_id) / sample_id / PAIRS / key


def write_pair_stats(
    store: CohortStore,
    model_id: str,
    sample_id: str,
    *,
    params: Mapping[str, Any],
    maps_version: str,
    matrices: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> None:
    """Keep one sample's pair statistics, computed from the maps of version ``maps_version``."""
    check_writable(store)
    target = pair_stats_path(store, model_id, sample_id, pair_stats_key(params))
    if not target.parent.parent.is_dir():
        return  # the maps set is gone (removed with its sample): nothing to attach them to
    ensure_group(target.parent)

    def write(partial: Path) -> None:
        group = zarr.open_group(LocalStore(partial), mode="w", zarr_format=3)
        for name in MATRICES:
            group.create_array(name, data=np.ascontiguousarray(matrices[name], dtype=np.float64))
        group.attrs.update(
            {**dict(attrs), "params": dict(params), "maps_version": maps_version, "created": now()}
        )
        fsync_tree(partial)

    write_atomically(target, write)


def read_pair_stats(
    store: CohortStore,
    model_id: str,
    sample_id: str,
    *,
    params: Mapping[str, Any],
    maps_version: str,
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The kept statistics (matrices, attributes) of these maps and parameters; ``None`` when
    there are none, they belong to an older version of the maps, or they cannot be read."""
    path = pair_stats_path(store, model_id, sample_id, pair_stats_key(params))
    attrs = group_attrs(path) if path.is_dir() else None
    if attrs is None or attrs.get("maps_version") != maps_version:
        return None
    if attrs.get("params") != json.loads(json.dumps(dict(params))):
        return None  # a key collision, however unlikely, must not pass for a match
    try:
        group = zarr.open_group(LocalStore(path, read_only=True), mode="r")
        matrices = {name: np.asarray(group[name][...]) for name in MATRICES}  # type: ignore[index]
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return None  # damaged: computed again and written over
    return matrices, attrs
