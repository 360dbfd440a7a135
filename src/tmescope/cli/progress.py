"""Progress of per-sample work on stderr: the sample just finished, how many are done, and an
estimate of the time left (the mean time per finished sample so far, times those left)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console


def sample_progress(what: str, console: Console | None = None) -> Callable[[str, int, int], None]:
    """A ``progress(sample_id, done, total)`` callback for the Python twins that prints one line
    per finished sample: ``what: S3 done (3/40), about 0:12:30 left``."""
    console = console or Console(stderr=True, highlight=False)
    start = time.monotonic()

    def report(sample_id: str, done: int, total: int) -> None:
        elapsed = time.monotonic() - start
        left = total - done
        eta = f", about {_clock(elapsed / max(done, 1) * left)} left" if left else ""
        console.print(f"[dim]{what}: {sample_id} done ({done}/{total}){eta}[/dim]")

    return report


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
