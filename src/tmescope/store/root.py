"""The store's root: created atomically, recognised without writing a byte.

A new store is built in a hidden folder beside its path and renamed into place, so readers see
no store or a whole one, and of two processes creating it at once exactly one wins (the other
then checks the winner's fingerprint). To recognise a store, the root's ``zarr.json`` is read as
plain JSON (small, its layout fixed by the Zarr v3 spec), so that every way a path can fail to
be our store gets its own message.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import zarr
from zarr.storage import LocalStore

from tmescope.errors import (
    NotAStoreError,
    SchemaVersionError,
    StoreNotFoundError,
    StoreNotWritableError,
)
from tmescope.store.durable import fsync, fsync_tree
from tmescope.store.schema import ROOT_ATTR, SAMPLES, SCHEMA_VERSION, root_attrs

log = logging.getLogger(__name__)


def is_vacant(path: Path) -> bool:
    """Whether a store may be created at ``path``: nothing there, or an empty folder."""
    if not path.exists():
        return True
    return path.is_dir() and next(path.iterdir(), None) is None


def read_header(path: Path) -> dict[str, Any]:
    """The root's ``tmescope`` attributes, after checking ``path`` holds a store we can read."""
    if not path.exists():
        raise StoreNotFoundError(
            f"no cohort store at {path}: check the path, or create the store by embedding "
            "samples into it"
        )
    if not path.is_dir():
        raise NotAStoreError(f"{path} is a file, not a cohort store (a Zarr folder)")
    metadata_file = path / "zarr.json"
    if not metadata_file.is_file():
        what = "an empty folder" if is_vacant(path) else "a folder without zarr.json"
        raise NotAStoreError(
            f"{path} is {what}, not a tmescope cohort store; give the path of a store, or a new "
            "path to create one"
        )
    try:
        metadata = json.loads(metadata_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotAStoreError(f"{metadata_file} is not readable Zarr metadata: {error}") from error
    if not (
        isinstance(metadata, dict)
        and metadata.get("zarr_format") == 3
        and metadata.get("node_type") == "group"
    ):
        raise NotAStoreError(
            f"{path} is not a tmescope cohort store: its root is not a Zarr v3 group"
        )
    header = (metadata.get("attributes") or {}).get(ROOT_ATTR)
    if not isinstance(header, dict):
        raise NotAStoreError(
            f"{path} is a Zarr group but not a tmescope cohort store (its attributes have no "
            f"{ROOT_ATTR!r} entry); give a store's path, or a new path to create one"
        )
    version = header.get("schema_version")
    if not isinstance(version, int) or not isinstance(header.get("fingerprint"), dict):
        raise NotAStoreError(
            f"{path} has a malformed {ROOT_ATTR!r} attribute (schema_version and fingerprint "
            "are required)"
        )
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} uses store format v{version} ({header.get('created_with', 'a newer tmescope')}); "
            f"this tmescope reads up to v{SCHEMA_VERSION}: upgrade tmescope"
        )
    if not (path / SAMPLES / "zarr.json").is_file():
        raise NotAStoreError(f"{path} is a damaged cohort store: its {SAMPLES}/ group is missing")
    return header


def check_writable(path: Path) -> None:
    """Raise :class:`StoreNotWritableError` unless this process may add samples to the store."""
    for folder in (path, path / SAMPLES):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreNotWritableError(
                f"cannot write to the cohort store {path}: {folder} is read-only for this user "
                "(or on a read-only file system); fix its permissions, or open it with mode='r'"
            )


def check_creatable(path: Path) -> None:
    """Raise :class:`StoreNotWritableError` unless a store could be created at ``path``."""
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreNotWritableError(
            f"cannot create a cohort store at {path}: {ancestor} is not a writable folder"
        )


def create_store(root: Path, fingerprint: dict[str, Any]) -> None:
    """Create an empty store at ``root`` atomically; quietly lose a race to another creator."""
    staging = root.parent / f".{root.name}.{uuid.uuid4().hex[:12]}.creating"
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        group = zarr.open_group(LocalStore(staging), mode="w-", attributes=root_attrs(fingerprint))
        group.create_group(SAMPLES)
        fsync_tree(staging)
        try:
            staging.rename(root)  # replaces an empty folder; fails if another process won
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            log.debug("another process created %s first", root)
        else:
            fsync(root.parent)
            log.info("created cohort store %s", root)
    except OSError as error:
        raise StoreNotWritableError(
            f"cannot create a cohort store at {root}: {error.strerror or error}"
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
