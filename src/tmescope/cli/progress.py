"""Progress of per-sample work on stderr: the sample just finished, how many are done, and an
estimate of the time left (the mean time per finished sample so far, times those left).

A command with several per-sample stages (fused sets, then each sample's statistics) reports
each stage from 1 again: the estimate then starts over from the end of the previous stage."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console

from tmescope.progress import Eta


def sample_progress(what: str, console: Console | None = None) -> Callable[[str, int, int], None]:
    """A ``progress(sample_id, done, total)`` callback for the Python twins that prints one line
    per finished sample: ``what: S3 done (3 of 40), about 12 min 30 s left``."""
    console = console or Console(stderr=True, highlight=False)
    eta = Eta(0)
    clock = {"last": time.monotonic(), "done": 0}

    def report(sample_id: str, done: int, total: int) -> None:
        if done <= clock["done"] or total != eta.total:  # a new stage: it began as the last ended
            eta.total = total
            eta.start = clock["last"]
        clock["last"], clock["done"] = time.monotonic(), done
        console.print(f"[dim]{what}: {eta.status(f'{sample_id} done', done)}[/dim]")

    return report
