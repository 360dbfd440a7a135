"""What the reliability tests tried and how it ended, counted for docs/reliability.md's table.

Each test counts its trials with :func:`count` (``count("reader", "positions v1", read=1)``);
``tests/reliability/conftest.py`` writes each worker's counts, as JSON lines, to the file named by
``TMESCOPE_RELIABILITY_LOG`` when the session ends, and ``tests/reliability/table.py`` sums them
into the table. ``TMESCOPE_RELIABILITY=full`` (``make reliability``) runs every scenario at its
full size; ``make test`` runs the light version (:func:`trials` picks the size).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

LEVEL_VARIABLE = "TMESCOPE_RELIABILITY"
LOG_VARIABLE = "TMESCOPE_RELIABILITY_LOG"
AREAS = ("reader", "writer", "concurrent", "viewer")

_counts: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)


def full() -> bool:
    """Whether this run is ``make reliability``'s full matrix."""
    return os.environ.get(LEVEL_VARIABLE, "light") == "full"


def trials(light: int, full_size: int) -> int:
    """``light`` trials in ``make test``, ``full_size`` in ``make reliability``."""
    return full_size if full() else light


def count(area: str, subject: str, **outcomes: int) -> None:
    """Add ``outcomes`` (name → how many) to the counts of ``subject`` in ``area``."""
    if area not in AREAS:
        raise ValueError(f"area must be one of {AREAS}, not {area!r}")
    _counts[(area, subject)].update(outcomes)


def flush() -> None:
    """Append this process's counts to the log (one JSON line per subject), then forget them."""
    log = os.environ.get(LOG_VARIABLE)
    if log and _counts:
        lines = "".join(
            json.dumps({"area": area, "subject": subject, "outcomes": dict(outcomes)}) + "\n"
            for (area, subject), outcomes in sorted(_counts.items())
        )
        # One write on an O_APPEND file: lines of concurrent workers never interleave.
        fd = os.open(Path(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
    _counts.clear()
