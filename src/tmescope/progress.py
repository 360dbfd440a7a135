"""How long the rest of a long loop will take: one wording of the time left for every stage.

Jobs report progress through callbacks (the CLI prints on stderr; the library never prints).
:class:`Eta` turns "i of n done" into "sample X (i of n), about 3 min 10 s left", from the mean
time per item so far; jobs word their messages with it and the CLI its per-sample lines.
"""

from __future__ import annotations

import time


class Eta:
    """The time left in a loop of ``total`` items, from the items done so far."""

    def __init__(self, total: int) -> None:
        self.total = max(int(total), 0)
        self.start = time.monotonic()

    def left(self, done: int) -> float | None:
        """Seconds left after ``done`` items (``None`` before the first)."""
        if done <= 0 or self.total <= 0:
            return None
        elapsed = time.monotonic() - self.start
        return elapsed / done * max(self.total - done, 0)

    def worth_saying(self, done: int, *, lines: int = 20) -> bool:
        """Whether item ``done`` deserves a line: about ``lines`` in a loop, the last always."""
        return done >= self.total or done % max(1, self.total // lines) == 0

    def status(self, what: str, done: int) -> str:
        """``"<what> (done of total), <time> left"``; the time once one item is done."""
        left = self.left(done)
        tail = "" if left is None or done >= self.total else f", about {duration(left)} left"
        return f"{what} ({done} of {self.total}){tail}"


def duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 10 s"``, ``"2 h 05 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
