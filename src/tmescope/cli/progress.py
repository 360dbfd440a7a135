"""Progress of per-sample work on stderr: the sample just finished, how many are done, and an
estimate of the time left (the mean time per finished sample so far, times those left).

A command with several per-sample stages (fused sets, then each sample's statistics) reports
each stage from 1 again: the estimate then starts over from the end of the previous stage."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console


def sample_progress(what: str, console: Console | None = None) -> Callable[[str, int, int], None]:
    """A ``progress(sample_id, done, total)`` callback for the Python twins that prints one line
    per finished sample: ``what: S3 done (3/40), about 0:12:30 left``."""
    console = console or Console(stderr=True, highlight=False)
    clock = {"start": time.monotonic(), "last": time.monotonic(), "done": 0}

    def report(sample_id: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done <= clock["done"]:  # a new stage: it began when the last one ended
            clock["start"] = clock["last"]
        clock["last"], clock["done"] = now, done
        left = total - done
        mean = (now - clock["start"]) / max(done, 1)
        eta = f", about {_clock(mean * left)} left" if left else ""
        console.print(f"[dim]{what}: {sample_id} done ({done}/{total}){eta}[/dim]")

    return report


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
