"""The whole ``tmescope demo`` beside one busy process: the code before thread sizing and now.

    python benchmarks/demo_under_load.py [--before REV] [--where busy,alone] [--json]

``before`` is the package as it was at ``REV`` (default ``870a996``, the last commit before
``tmescope.cpus``), checked out into a temporary git worktree and put first on ``PYTHONPATH``,
so both run in this environment with the same libraries; ``after`` is the working tree. Each
demo runs in a fresh process with the thread variables cleared (as a user's shell would have
them), writing into a temporary folder. *Busy* is beside one ``python -c "while True: pass"``.
Every stderr line of the demo is timestamped, so the steps' times can be read off afterwards
(the GATv2 folds are the ones that suffered). Prints each run's wall and CPU seconds, the
1-minute load average before and after, and the ratio before/after per background as JSON.

Needs a quiet machine for ~45 min on 2 cores (the old code beside a busy process: 18 min).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_CLEARED = ("OMP_WAIT_POLICY", "TMESCOPE_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "GOMP_SPINCOUNT")  # fmt: skip


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_demo(src: Path, out: Path, log: Path) -> dict[str, Any]:
    """One ``python -m tmescope demo`` with ``src`` first on the path; stderr timestamped."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["PYTHONPATH"] = str(src)
    env["COLUMNS"] = "120"
    command = [sys.executable, "-m", "tmescope", "demo", "--out", str(out)]
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as sink:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert child.stderr is not None
        for line in child.stderr:  # the demo's progress lines, each with its moment
            sink.write(f"{time.perf_counter() - start:8.1f}  {line.rstrip()}\n")
        code = child.wait()
    seconds = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise RuntimeError(f"the demo from {src} failed with exit {code}; see {log}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "seconds": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "log": str(log),
    }


def which_package(src: Path) -> str:
    """The file ``import tmescope`` loads with ``src`` first on the path (a guard, not a guess)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = "import tmescope; print(tmescope.__file__)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip


def measure(before: str, where: list[str], logs: Path) -> dict[str, Any]:
    logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as work:
        old_tree = Path(work) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree),
                        before], check=True, capture_output=True)  # fmt: skip
        try:
            sources = {"before": old_tree / "src", "after": ROOT / "src"}
            for name, src in sources.items():
                loaded = which_package(src)
                if not loaded.startswith(str(src)):
                    raise RuntimeError(f"{name}: tmescope loads from {loaded}, not {src}")
            for place in where:
                hog = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
                       if place == "busy" else None)  # fmt: skip
                try:
                    for name, src in sources.items():
                        key = f"{name}/{place}"
                        say(f"{key}: running the demo from {src} …")
                        out = Path(work) / f"demo-{name}-{place}"
                        run = run_demo(src, out, logs / f"{name}-{place}.log")
                        runs[key] = run
                        say(f"{key}: {run['seconds']} s wall, {run['cpu_s']} CPU s, "
                            f"load {run['load_1min']}")  # fmt: skip
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(old_tree)], check=False, capture_output=True)  # fmt: skip
    ratios = {
        place: round(runs[f"before/{place}"]["seconds"] / runs[f"after/{place}"]["seconds"], 2)
        for place in where
    }
    return {"before": before, "runs": runs, "before_over_after": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="870a996", help="the revision to compare with")
    parser.add_argument("--where", default="busy", help="of busy,alone")
    parser.add_argument("--logs", type=Path, default=Path("benchmarks/results/demo_under_load"),
                        help="folder for the demos' timestamped progress lines")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    where = [w for w in args.where.split(",") if w]
    unknown = sorted(set(where) - {"busy", "alone"})
    if unknown:
        parser.error(f"--where takes busy and/or alone, not {', '.join(unknown)}")
    result = measure(args.before, where, args.logs)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python " + (
        platform.python_version()
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, run in result["runs"].items():
            print(f"{key:14s} {run['seconds']:8.1f} s  {run['cpu_s']:8.1f} CPU s")
        print("before/after:", result["before_over_after"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
