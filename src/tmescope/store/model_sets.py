"""What a trained model derives from each sample, kept in the store beside the embeddings.

Fused sets (``fused/``) and sub-spot maps (``maps/``) share one scheme: a folder per model
holding a description (``zarr.json``) and one Zarr group per sample, written whole into a hidden
sibling and swapped into place (:mod:`tmescope.store.atomic`). A sample's set is *fresh* while
the sample's source hash and completion time equal the ones the set recorded: embedding the
sample again makes it stale, and the next command that needs it writes it again.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmescope.errors import InvalidParameterError, StoreError
from tmescope.store.atomic import remove_atomically
from tmescope.store.durable import fsync, fsync_file

if TYPE_CHECKING:
    from tmescope.store.feature_store import CohortStore

GROUP = {"zarr_format": 3, "node_type": "group"}


def model_folder(store: CohortStore, root: str, model_id: str) -> Path:
    """``<root>/<model_id>`` of ``store`` (which may not exist yet); the id must be a plain name."""
    if not model_id or not all(c.isalnum() or c in "-_" for c in model_id):
        raise InvalidParameterError(f"model id {model_id!r} is not a plain name")
    return store.path / root / model_id


def sample_stamp(store: CohortStore, sample_id: str) -> dict[str, Any]:
    """What must still hold for a set of ``sample_id`` to be fresh."""
    record = store.sample_record(sample_id)
    return {"sample_hash": record.meta.source_hash, "sample_completed": record.completed}


def fresh_sets(store: CohortStore, directory: Path) -> dict[str, dict[str, Any]]:
    """The complete samples whose set in ``directory`` is whole and fresh → its attributes."""
    if not directory.is_dir():
        return {}
    complete = set(store.sample_ids())
    fresh = {}
    for path in sorted(directory.iterdir()):
        if not visible(path) or path.name not in complete:
            continue
        attrs = group_attrs(path)
        if attrs is not None and is_fresh(store, path.name, attrs):
            fresh[path.name] = attrs
    return fresh


def is_fresh(store: CohortStore, sample_id: str, attrs: Mapping[str, Any]) -> bool:
    """Whether a set with ``attrs`` still describes ``sample_id`` as the store holds it."""
    return all(attrs.get(k) == v for k, v in sample_stamp(store, sample_id).items())


def read_description(path: Path, key: str) -> dict[str, Any] | None:
    """``attributes[key]`` of the group metadata at ``path``; ``None`` when there is none."""
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
        return dict(metadata["attributes"][key])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreError(
            f"{path} is unreadable ({error!r}); remove {path.parent} and run the command again"
        ) from error


def write_group(directory: Path, attributes: Mapping[str, Any]) -> None:
    """Write (or rewrite) the group metadata of ``directory`` with ``attributes``, atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "zarr.json", {**GROUP, "attributes": dict(attributes)})


def ensure_group(directory: Path) -> None:
    """Make ``directory`` a Zarr group (with no attributes) unless it is one already."""
    if not (directory / "zarr.json").is_file():
        write_group(directory, {})


def remove_sample_sets(store: CohortStore, root: str, sample_id: str) -> int:
    """Delete every model's set of ``sample_id`` under ``root`` (renamed away first); how many."""
    folder = store.path / root
    removed = 0
    for model in sorted(folder.iterdir()) if folder.is_dir() else []:
        target = model / sample_id
        if visible(model) and target.is_dir():
            remove_atomically(target)
            removed += 1
    return removed


def group_attrs(path: Path) -> dict[str, Any] | None:
    """The attributes of the Zarr group at ``path``; ``None`` when unreadable."""
    try:
        metadata = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    attrs = metadata.get("attributes")
    return dict(attrs) if isinstance(attrs, dict) else None


def verify_model_sets(
    store: CohortStore,
    root: str,
    *,
    read_info: Callable[[CohortStore, str], Any | None],
    verify_set: Callable[[CohortStore, Any, str, str], list[str]],
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    """Problems of every model's sets under ``root``, one line each: an unreadable or missing
    description, a set of a sample the store no longer holds, and what ``verify_set(store, info,
    sample_id, where)`` finds in a set. Hidden work (in progress, or left by a killed writer: the
    next writer sweeps it) and the entries named in ``skip`` are no problem; neither is a stale
    set (its sample embedded again): the next command that needs it writes it again."""
    folder = store.path / root
    if not folder.is_dir():
        return []
    problems: list[str] = []
    samples = set(store.sample_ids(include_incomplete=True))
    for model in sorted(p for p in folder.iterdir() if p.is_dir()):
        where = f"{root}/{model.name}"
        try:
            info = read_info(store, model.name)
        except (StoreError, InvalidParameterError) as error:
            problems.append(f"{where}: {error}")
            continue
        if info is None:
            problems.append(f"{where}: no description (zarr.json); remove the folder")
            continue
        for entry in sorted(model.iterdir()):
            if not visible(entry) or entry.name in skip:
                continue
            if entry.name not in samples:
                problems.append(
                    f"{where}/{entry.name}: a set of a sample the store no longer holds; delete it"
                )
            else:
                problems.extend(verify_set(store, info, entry.name, f"{where}/{entry.name}"))
    return problems


def visible(path: Path) -> bool:
    """A folder that is not hidden work (in progress, or left by a killed writer)."""
    return path.is_dir() and not path.name.startswith(".")


def check_writable(store: CohortStore) -> None:
    if not store.writable:
        raise StoreError(f"{store.path} was opened read-only; open it with mode='a' to write")


def write_json(target: Path, payload: Mapping[str, Any]) -> None:
    """Write a JSON file through a temporary sibling and a rename, flushed."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        fsync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_file(target)
