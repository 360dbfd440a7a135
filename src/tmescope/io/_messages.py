"""Quoting another library's error inside one of ours, which the CLI prints as one line."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message, else its type's name: pandas, h5py and
    scipy messages may span lines or end with a newline."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
