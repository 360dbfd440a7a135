"""Kill a writer with SIGKILL at random moments, then check what it left and that it resumes.

A :class:`Writer` is one tmescope command that writes something (a sample into the store, the
index, a model directory, a report …), the old state it starts from, and a *digest* of what a
reader sees (``None`` when it sees nothing). :func:`kill_trials` runs the command once to the
end for the reference (the new state, and how long a run takes), then, trial after trial, lays
out the old state afresh, starts the command, kills it at a random moment of a run (of the part
after it began to write, for a writer that says when that is: ``Writer.begun``), and checks:

- ``tmescope store verify`` finds nothing wrong but work left to resume (``Writer.resumable``);
- what a reader sees is the old state or the new one, never a mix (the digest is one of the two);
- running the command again finishes, and gives exactly the reference's digest, with a warning
  where it took over a lock left by the killed run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RUN_TIMEOUT_S = 600
# Children run torch and BLAS on one thread: a run is then bit-reproducible (and the machine is
# shared with the test's other workers).
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
             "TMESCOPE_THREADS": "1", "PYTHONWARNINGS": "ignore"}  # fmt: skip


@dataclass(frozen=True)
class Writer:
    """One writing command, the state it starts from and what a reader sees of its work."""

    name: str
    prepare: Callable[[Path], None]  # lays out the old state in an empty folder
    command: Callable[[Path], list[str]]  # the command's arguments, run in that folder
    digest: Callable[[Path], object]  # what a reader sees there (a dict: unit by unit)
    store: str | None = "store.zarr"  # the store to verify, relative to the folder
    resumable: Callable[[str], bool] = lambda problem: False  # problems that only mean "resume"
    # For a writer whose writing is a sliver of its run (start-up and exit are most of a short
    # command): true once it has begun to change the folder, and once it has finished; kills
    # then fall between the two (and a little after).
    begun: Callable[[Path], bool] | None = None
    finished: Callable[[Path], bool] = lambda folder: False  # default: when the process ends


@dataclass
class Outcome:
    """What the trials of one writer saw."""

    counts: Counter[str] = field(default_factory=Counter)
    reference_s: float = 0.0
    writing_s: float | None = None  # of the reference run: ``Writer.begun`` to ``finished``


def run_command(args: list[str], cwd: Path, *, timeout: float = RUN_TIMEOUT_S) -> tuple[str, float]:
    """Run ``tmescope ARGS`` in ``cwd`` to the end; its stderr and seconds. Fails on exit ≠ 0."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tmescope", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **CHILD_ENV},
    )  # fmt: skip
    assert done.returncode == 0, f"tmescope {' '.join(args)} failed: {done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr, time.perf_counter() - start


def kill_trials(writer: Writer, root: Path, trials: int, rng: np.random.Generator) -> Outcome:
    """The reference run, then ``trials`` runs killed at random moments, each resumed."""
    outcome = Outcome()
    reference = root / "reference"
    reference.mkdir(parents=True)
    writer.prepare(reference)
    old = writer.digest(reference)
    if writer.begun is None:
        _, outcome.reference_s = run_command(writer.command(reference), reference)
    else:
        outcome.reference_s, outcome.writing_s = _time_writing(writer, reference)
    new = writer.digest(reference)
    assert new != old, f"{writer.name}: the command changed nothing a reader sees"
    _check_verify(writer, reference, resumable_ok=False)
    for trial in range(trials):
        folder = root / f"trial-{trial}"
        folder.mkdir()
        writer.prepare(folder)
        if outcome.writing_s is None:
            # Anywhere in a run, start-up included: a kill before the first write is a case too.
            delay = float(rng.uniform(0.05, 1.0)) * outcome.reference_s
            killed = _run_and_kill(writer.command(folder), folder, delay)
        else:  # anywhere from the first change to a little past the reference's end
            delay = float(rng.uniform(0.0, 1.2)) * outcome.writing_s
            killed = _run_and_kill(writer.command(folder), folder, delay, writer.begun)
        outcome.counts["kills injected" if killed else "finished before the kill"] += 1
        outcome.counts["work left for the next run"] += _leaves_work(folder)
        _check_verify(writer, folder, resumable_ok=True)
        outcome.counts["store verify passed"] += writer.store is not None
        seen = writer.digest(folder)
        where = f"{writer.name}, trial {trial} (kill at {delay:.2f} s)"
        outcome.counts[_old_or_new(seen, old, new, where)] += 1
        stderr, _ = run_command(writer.command(folder), folder)
        outcome.counts["stale locks taken over"] += "took over the lock" in stderr
        assert writer.digest(folder) == new, f"{writer.name}, trial {trial}: resumed ≠ reference"
        _check_verify(writer, folder, resumable_ok=False)
        outcome.counts["resumed identical"] += 1
        shutil.rmtree(folder)
    return outcome


def _old_or_new(seen: object, old: object, new: object, where: str) -> str:
    """Which state a reader sees; a dict digest (unit → digest, e.g. one per sample) is checked
    unit by unit: each unit is written whole on its own, so a cohort may be part-way."""
    if isinstance(seen, dict) and isinstance(old, dict) and isinstance(new, dict):
        units = {*seen, *old, *new}
        mixed = [u for u in units if seen.get(u) not in (old.get(u), new.get(u))]
        assert not mixed, f"{where}: {mixed} are neither their old state nor their new one"
        if seen in (old, new):
            return "old state seen" if seen == old else "new state seen"
        return "part old, part new (whole units)"
    assert seen in (old, new), f"{where}: neither the old state nor the new one"
    return "old state seen" if seen == old else "new state seen"


def _time_writing(writer: Writer, cwd: Path) -> tuple[float, float]:
    """The reference run of a writer with ``begun``: its seconds, and those it spent writing
    (from ``begun`` to ``finished``, or to its end)."""
    assert writer.begun is not None
    start = time.perf_counter()
    child = _start(writer.command(cwd), cwd)
    begun_at = _wait_until(writer.begun, cwd, child)
    finished_at = _wait_until(writer.finished, cwd, child)
    child.wait(timeout=RUN_TIMEOUT_S)
    end = time.perf_counter()
    assert child.returncode == 0, f"{writer.name}: the reference run failed"
    assert begun_at is not None, f"{writer.name}: never seen to begin (Writer.begun)"
    return end - start, (finished_at or end) - begun_at


def _wait_until(
    condition: Callable[[Path], bool], cwd: Path, child: subprocess.Popen[bytes]
) -> float | None:
    """The moment ``condition(cwd)`` turns true (polled), or ``None`` if ``child`` ends first
    without it."""
    while child.poll() is None:
        if condition(cwd):
            return time.perf_counter()
        time.sleep(0.0005)
    return time.perf_counter() if condition(cwd) else None


def _start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tmescope", *args], cwd=cwd, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, **CHILD_ENV},
    )  # fmt: skip


def _run_and_kill(
    args: list[str], cwd: Path, delay: float, begun: Callable[[Path], bool] | None = None
) -> bool:
    """Kill the command ``delay`` seconds after its start, or after ``begun`` turned true."""
    child = _start(args, cwd)
    try:
        if begun is not None and _wait_until(begun, cwd, child) is None:
            return False  # ended without beginning: nothing to kill
        child.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        return True
    finally:
        child.kill()


def _leaves_work(folder: Path) -> bool:
    """Whether a killed run left hidden work paths (``store.atomic``) for the next one to sweep:
    the kill landed while a file or folder was being written, swapped or deleted."""
    from tmescope.store.atomic import is_work_path

    return any(is_work_path(name) for _, dirs, files in os.walk(folder) for name in dirs + files)


def _check_verify(writer: Writer, folder: Path, *, resumable_ok: bool) -> None:
    if writer.store is None or not (folder / writer.store).exists():
        return
    from tmescope.store import CohortStore

    problems = CohortStore.open(folder / writer.store).verify()
    left = [p for p in problems if not (resumable_ok and writer.resumable(p))]
    assert left == [], f"{writer.name}: store verify found {left}"


def array_digest(*arrays: np.ndarray) -> str:
    """A short hash of arrays' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.shape}{array.dtype}".encode())
        h.update(array.tobytes() if array.dtype != object else repr(array.tolist()).encode())
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str | None:
    """A short hash of a file's bytes, ``None`` when it is absent."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None
