"""Flushing to disk: what makes a write survive a power cut, not only a killed process."""

from __future__ import annotations

import os
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk."""
    if os.name != "posix":  # folders cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file put in place by a rename, and its folder entry."""
    fsync(path)
    fsync(path.parent)


def fsync_tree(directory: Path) -> None:
    """Flush every file and folder under ``directory``."""
    for folder, _, files in os.walk(directory):
        for name in files:
            fsync(Path(folder, name))
        fsync(Path(folder))
