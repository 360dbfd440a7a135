"""An exclusive, non-blocking lock on one name in a store, held by a live process.

Built on ``flock(2)`` on a small lock file: the kernel drops the lock when its holder dies
(Ctrl-C, ``kill -9``, a node lost), so an interrupted run never leaves a stale lock behind and
can resume at once. ``flock`` locks an open file description, so a second attempt in the same
process is refused too.

The lock file is removed on release, so a store at rest holds only Zarr nodes. That is safe
with the usual check: the holder unlinks the path *before* unlocking, and whoever locks a file
confirms afterwards that the path still names the inode it locked (else it locked an orphan
and tries again).

A lock file that is still there, names its holder, and can be locked nonetheless was left by a
writer that died holding it (``kill -9``, an out-of-memory kill, a scheduler's time limit): the
kernel has already let go of it, so it is taken over at once, with a :class:`StaleLockWarning`
that names the process that is gone, and its unfinished work resumes.
"""

from __future__ import annotations

import errno
import os
import socket
import warnings
from pathlib import Path
from typing import IO

from tmescope.errors import StaleLockWarning, StoreError, StoreLockedError, StoreNotWritableError


class NameLock:
    """An exclusive lock on ``path`` (a lock file), taken at once or refused."""

    def __init__(self, path: Path, *, what: str) -> None:
        self._path = path
        self._what = what  # "sample 'S1' in /data/cohort.zarr", for messages
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StoreLockedError` naming the live holder."""
        try:
            import fcntl
        except ImportError as error:  # Windows
            raise StoreError(
                "writing a cohort store needs POSIX file locks (Linux, macOS)"
            ) from error
        if self._file is not None:
            raise StoreLockedError(f"{self._what} is already locked by this writer")
        while True:
            try:
                handle = self._path.open("a+b")
            except OSError as error:
                raise StoreNotWritableError(
                    f"cannot create the lock file {self._path} for {self._what}: {error}"
                ) from error
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as error:
                holder = self._holder()
                handle.close()
                raise StoreLockedError(
                    f"{self._what} is being written by another live process{holder}; wait for "
                    "it to finish or stop it, then run again (an interrupted run resumes)"
                ) from error
            except OSError as error:
                handle.close()
                if error.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise StoreError(
                        f"the file system under {self._path.parent} does not support file locks "
                        f"({error.strerror}); put the store on a local disk or a file system "
                        "mounted with locking (e.g. Lustre with -o flock)"
                    ) from error
                raise
            if self._names_inode_of(handle):
                break
            handle.close()  # the previous holder removed the file as we locked it: go again
        handle.seek(0)
        left_by = _parse_holder(handle.read(256))
        if left_by is not None:
            pid, host = left_by
            warnings.warn(
                f"took over the lock on {self._what} left by pid {pid} on {host}, which is gone "
                "(killed or crashed while writing); its unfinished work resumes",
                StaleLockWarning,
                stacklevel=2,
            )
        handle.seek(0)
        handle.truncate(0)
        handle.write(f"{os.getpid()}@{socket.gethostname()}\n".encode())
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Give the lock back (a no-op when not held)."""
        if self._file is None:
            return
        # Unlink while still holding: see the module docstring.
        self._path.unlink(missing_ok=True)
        self._file.close()
        self._file = None

    def _names_inode_of(self, handle: IO[bytes]) -> bool:
        try:
            on_path = os.stat(self._path)
        except FileNotFoundError:
            return False
        held = os.fstat(handle.fileno())
        return (on_path.st_dev, on_path.st_ino) == (held.st_dev, held.st_ino)

    def _holder(self) -> str:
        try:
            holder = _parse_holder(self._path.read_bytes()[:256])
        except OSError:
            return ""
        return f" (pid {holder[0]} on {holder[1]})" if holder else ""


def _parse_holder(content: bytes) -> tuple[int, str] | None:
    """``(pid, host)`` from a lock file's ``pid@host`` line, or ``None`` (empty, or not ours)."""
    pid, at, host = content.decode("utf-8", "replace").strip().partition("@")
    return (int(pid), host) if at and pid.isdigit() and host else None
