"""Putting a file or a folder in place whole: written beside its target, then renamed over it.

Every output a killed process could leave half-written (models, fused sets, reports, exports,
predictions) goes through :func:`write_atomically`: readers see the old version or the new
one, never a mix. A file is renamed over the old one (``rename(2)`` is atomic). A folder cannot
be renamed over a non-empty one, so on Linux the two are swapped in one ``renameat2(2)``
``RENAME_EXCHANGE``; elsewhere (or on a file system without it) the old one is moved aside
first and, should the process die between the two renames, put back by the next writer.

Work in progress is named ``.<target>.partial-<host>-<pid>-<random>``, so that a later writer
can tell the leftovers of a killed process (its pid is gone on this host) from the work of a
live one, and remove them rather than let them pile up.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tmescope.store.durable import fsync, fsync_tree

log = logging.getLogger(__name__)

T = TypeVar("T")
# Kinds of work path: a version being written, an old one moved aside for a moment (put back if
# its writer died), one being deleted (finished off if its writer died).
PARTIAL, ASIDE, DOOMED = "partial", "old", "removed"
KINDS = (PARTIAL, ASIDE, DOOMED)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def work_path(target: Path, kind: str = PARTIAL) -> Path:
    """A hidden sibling of ``target`` that names this process: ``.<name>.<kind>-<host>-<pid>-<r>``."""
    return target.with_name(f".{target.name}.{kind}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_atomically(target: Path, write: Callable[[Path], T], *, durable: bool = False) -> T:
    """Call ``write(path)`` on a hidden sibling of ``target``, then put it in place as ``target``.

    ``write`` makes a file or a folder at ``path``. When it raises, nothing changes at
    ``target`` and the work in progress is removed. ``durable`` flushes what was written to disk
    before it is put in place (it then survives a power cut, not only a killed process).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(target)
    partial = work_path(target)
    try:
        result = write(partial)
        if durable:
            (fsync_tree if partial.is_dir() else fsync)(partial)
        replace_path(partial, target)
    finally:
        _remove(partial)
    return result


def replace_path(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, replacing what is there whole; ``source`` is gone after."""
    if not source.is_dir() or not target.is_dir():
        os.replace(source, target)  # a file, or a folder where there was none
    elif _exchange(source, target):
        _remove(source)  # now holds the old version
    else:
        aside = work_path(target, ASIDE)
        os.replace(target, aside)
        os.replace(source, target)  # a kill just before this is undone by sweep_leftovers
        _remove(aside)
    fsync(target.parent)


def sweep_leftovers(target: Path) -> list[Path]:
    """Remove the work of killed writers of ``target`` (on this host); put back an old version
    moved aside by one killed between two renames. Returns what was removed."""
    target = Path(target)
    paths = target.parent.glob(f".{glob.escape(target.name)}.*-*-*-*")
    return _sweep({target.name: target}, sorted(paths))


def sweep_folder(folder: Path) -> list[Path]:
    """:func:`sweep_leftovers` for every target in ``folder``."""
    paths = sorted(p for p in Path(folder).glob(".*") if is_work_path(p.name))
    targets: dict[str, Path] = {}
    for path in paths:
        name = path.name[1:].rsplit(".", 1)[0]  # ".<name>.<kind>-<host>-<pid>-<r>"
        targets.setdefault(name, Path(folder) / name)
    return _sweep(targets, paths)


def _sweep(targets: dict[str, Path], paths: list[Path]) -> list[Path]:
    removed = []
    for path in paths:
        name = path.name[1:].rsplit(".", 1)[0]
        target = targets.get(name)
        if target is None:
            continue
        kind, owner = _owner(path, target.name)
        if kind is None or owner is None or _alive(owner):
            continue
        if kind == ASIDE and not target.exists():
            os.replace(path, target)
            log.warning("put back %s, moved aside by a writer that was killed", target)
            continue
        _remove(path)
        removed.append(path)
    if removed:
        log.info("removed %d leftover(s) of killed writers in %s", len(removed), paths[0].parent)
    return removed


def remove_atomically(target: Path, *, durable: bool = False) -> None:
    """Remove a folder (or file) at once for readers: renamed away, then deleted. A process
    killed while deleting leaves a work path that the next writer's sweep finishes off.
    ``durable`` flushes the rename to disk before the deletion starts."""
    doomed = work_path(target, DOOMED)
    os.replace(target, doomed)
    if durable:
        fsync(target.parent)
    _remove(doomed)


def is_work_path(name: str) -> bool:
    """Whether ``name`` is a hidden work path of this module (in progress, or a leftover)."""
    return name.startswith(".") and any(f".{kind}-" in name for kind in KINDS)


def _owner(path: Path, name: str) -> tuple[str | None, int | None]:
    """``(kind, pid)`` of a work path of this host, else ``(kind or None, None)``."""
    tail = path.name[len(name) + 2 :]  # "<kind>-<host>-<pid>-<random>"
    kind, _, rest = tail.partition("-")
    parts = rest.rsplit("-", 2)
    if kind not in KINDS or len(parts) != 3 or not parts[1].isdigit():
        return None, None
    return kind, int(parts[1]) if parts[0] == _host() else None


def _host() -> str:
    """This host's name, with the separators of work names (``-`` and ``.``) replaced."""
    return socket.gethostname().replace("-", "_").replace(".", "_") or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); ``False`` where that cannot be done."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    status = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if status == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # not supported here: fall back to two renames
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
