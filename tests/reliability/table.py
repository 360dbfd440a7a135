"""Sum the reliability suite's counts into one table per area; print it, and put it in the docs.

    python tests/reliability/table.py LOG.jsonl [--docs docs/reliability.md] [--seconds S]

LOG is what ``tests/reliability_tally.py`` wrote (``make reliability`` names it). With
``--docs``, the text between the ``reliability-table`` markers of that file is replaced by the
table, with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections import Counter, defaultdict
from pathlib import Path

BEGIN, END = "<!-- reliability-table:begin -->", "<!-- reliability-table:end -->"
TITLES = {
    "reader": ("Readers fuzzed", "reader"),
    "writer": ("Writers killed with SIGKILL at random moments", "writer"),
    "concurrent": ("Writers side by side", "scenario"),
    "viewer": ("The viewer under abuse (loopback)", "requests"),
}
# Columns in this order where present; others follow in the order first seen.
ORDER = ("read", "refused", "kills injected", "finished before the kill",
         "work left for the next run", "store verify passed", "old state seen", "new state seen",
         "part old, part new (whole units)", "stale locks taken over", "resumed identical",
         "runs", "served")  # fmt: skip
# Figures that are a worst case, not a count: the largest value seen is kept, not the sum.
WORST = ("max_", "peak_", "worst_", "rss_growth")


def read_counts(log: Path) -> dict[str, dict[str, Counter[str]]]:
    """area → subject → outcome → total over every line of the log."""
    areas: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        outcomes = areas[entry["area"]][entry["subject"]]
        for key, value in entry["outcomes"].items():
            if key.startswith(WORST):
                outcomes[key] = max(outcomes[key], value)
            else:
                outcomes[key] += value
    return areas


def render(areas: dict[str, dict[str, Counter[str]]]) -> str:
    """Markdown: a table per area, outcomes as columns, and a total row."""
    parts = []
    for area, (title, first) in TITLES.items():
        subjects = areas.get(area)
        if not subjects:
            continue
        seen = dict.fromkeys(k for c in subjects.values() for k in c)
        columns = [c for c in ORDER if c in seen] + [c for c in seen if c not in ORDER]
        head = f"| {first} | " + " | ".join(c.replace("_", " ") for c in columns) + " |"
        rule = "| --- |" + " ---: |" * len(columns)
        rows = [
            f"| {subject} | " + " | ".join(_cell(counts.get(c)) for c in columns) + " |"
            for subject, counts in sorted(subjects.items())
        ]
        total = Counter[str]()
        for counts in subjects.values():
            for key, value in counts.items():
                total[key] = max(total[key], value) if key.startswith(WORST) else total[key] + value
        rows.append(
            "| **all** | " + " | ".join(f"**{_cell(total.get(c))}**" for c in columns) + " |"
        )
        parts.append(f"### {title}\n\n" + "\n".join([head, rule, *rows]))
    return "\n\n".join(parts) + "\n"


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        kb = next(int(line.split()[1]) for line in lines if line.startswith("MemTotal"))
        memory = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return (
        f"{platform.machine()}, {cores} cores{memory}, CPU only, Python {platform.python_version()}"
    )


def put_in_docs(docs: Path, table: str, seconds: float | None) -> None:
    text = docs.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"{docs} lacks the {BEGIN} … {END} markers")
    took = f" in {seconds / 60:.0f} min" if seconds else ""
    stamp = (f"Last full run (`make reliability`){took}: {datetime.date.today():%Y-%m-%d}, "
             f"{machine()}.\n\n")  # fmt: skip
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    docs.write_text(f"{head}{BEGIN}\n{stamp}{table}{END}{tail}", encoding="utf-8")


def _cell(value: int | float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--docs", type=Path)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    if not args.log.is_file():
        sys.exit(f"no counts at {args.log}: run the reliability suite first (make reliability)")
    table = render(read_counts(args.log))
    sys.stdout.write(table)
    if args.docs:
        put_in_docs(args.docs, table, args.seconds)


if __name__ == "__main__":
    main()
