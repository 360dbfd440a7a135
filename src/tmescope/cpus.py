"""The cores this process may really use, and every thread pool sized to them.

A machine's core count is not what a process may use: a CPU affinity mask (``taskset``, SLURM's
binding), a cgroup quota (a container's ``--cpus``, a systemd ``CPUQuota``) and SLURM's
``SLURM_CPUS_PER_TASK`` each give it less. :func:`usable_cpus` is the smallest of them.

The thread budget (:func:`thread_budget`) is, first found: the number given (the CLI's
``--threads``), ``TMESCOPE_THREADS``, ``OMP_NUM_THREADS`` (the user's usual way of saying it),
else :func:`usable_cpus`. :func:`configure_threads` gives it to every pool: torch's intra- and
inter-op threads, BLAS and OpenMP (threadpoolctl), and, for libraries not loaded yet and for child
processes, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` (set only where
the user has not; not ``NUMBA_NUM_THREADS``: numba re-reads it and refuses any change once its
threads run, and its work here is light). The embedding's reader threads
(:func:`reader_threads`) and Dask workers (``jobs/embed_dask.py``) take their share of the same
budget.

Waiting threads spin briefly, then sleep: unless the user chose a wait policy (``OMP_WAIT_POLICY``
or ``GOMP_SPINCOUNT``), ``GOMP_SPINCOUNT`` is set to :data:`SPIN_COUNT`. torch's OpenMP threads
(GNU libgomp in the PyPI wheels for Linux) otherwise spin up to 300,000 times at every barrier
waiting for each other; when another process holds one of the cores, the spinning thread holds
the core its partner needs. 1,000 spins is what libgomp itself uses once it knows the threads
outnumber the cores. Measured on 2 cores (``benchmarks/under_load.py``, docs/benchmarks.md):
beside one busy process a GATv2 fold ran ~2× faster than with the default spin, at ~15 % cost on
an idle machine; ``OMP_WAIT_POLICY=PASSIVE`` (no spin) was faster still under load but ~1.8×
slower idle, so it is left to users on shared machines. OpenMP reads these once, when it loads,
so they take effect where torch is imported after :func:`configure_threads` (the CLI; the Python
jobs that train or embed, which call :func:`ensure_threads` before they import torch).

Nothing here runs at import: torch is never imported by :func:`configure_threads`, only set when
it is already loaded; :func:`ensure_threads` is for code about to use it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from tmescope.errors import InvalidParameterError

log = logging.getLogger(__name__)

THREADS_ENV = "TMESCOPE_THREADS"
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
SPIN_COUNT_ENV = "GOMP_SPINCOUNT"
SPIN_COUNT = 1000  # libgomp's own count when threads outnumber cores (its default: 300,000)
# Read by OpenMP, MKL, OpenBLAS and numba (squidpy's kernels) when they load: libraries loaded
# later, child processes. numba's default is every core of the host, whatever the quota.
POOL_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MAX_READERS = 2  # patch-reading threads: the default before the budget existed, now capped by it

_PROC_SELF = Path("/proc/self")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_CPU_DIRS = ("cpu,cpuacct", "cpu", "cpuacct,cpu")

_configured: int | None = None  # the budget configure_threads last gave the pools


def usable_cpus(
    *,
    environ: Mapping[str, str] | None = None,
    proc_self: Path = _PROC_SELF,
    cgroup_root: Path = _CGROUP_ROOT,
) -> int:
    """The cores this process may use: the smallest of its affinity mask, its cgroup's CPU
    quota (rounded down, at least 1) and ``SLURM_CPUS_PER_TASK``; never less than 1."""
    environ = os.environ if environ is None else environ
    limits = [_affinity()]
    quota = cgroup_cpu_quota(proc_self=proc_self, cgroup_root=cgroup_root)
    if quota is not None:
        limits.append(max(1, math.floor(quota)))
    slurm = _positive_int(environ.get("SLURM_CPUS_PER_TASK"))
    if slurm is not None:
        limits.append(slurm)
    return max(1, min(limits))


def cgroup_cpu_quota(
    *, proc_self: Path = _PROC_SELF, cgroup_root: Path = _CGROUP_ROOT
) -> float | None:
    """CPUs' worth of time this process's cgroup (or an ancestor of it) may use per period:
    cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``; ``None`` when unlimited
    or unknown. ``proc_self`` and ``cgroup_root`` are parameters for tests."""
    try:
        lines = (proc_self / "cgroup").read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2, the unified hierarchy
            quotas += [_v2_quota(d) for d in _ancestors(cgroup_root, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1, the cpu controller's hierarchy
            mount = next(
                (cgroup_root / d for d in _V1_CPU_DIRS if (cgroup_root / d).is_dir()), None
            )
            if mount is not None:
                quotas += [_v1_quota(d) for d in _ancestors(mount, path)]
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def thread_budget(n: int | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Threads to give the pools: ``n``, else ``TMESCOPE_THREADS``, else ``OMP_NUM_THREADS``,
    else :func:`usable_cpus`. A bad ``n`` or ``TMESCOPE_THREADS`` is an
    :class:`~tmescope.errors.InvalidParameterError`."""
    environ = os.environ if environ is None else environ
    if n is not None:
        return _check_threads(n, "--threads")
    if environ.get(THREADS_ENV, "").strip():
        return _check_threads(environ[THREADS_ENV], THREADS_ENV)
    # OMP_NUM_THREADS may be a list for nested levels ("4,2"): the first is the outer level.
    omp = _positive_int(environ.get("OMP_NUM_THREADS", "").split(",")[0])
    return omp if omp is not None else usable_cpus(environ=environ)


def configure_threads(n: int | None = None) -> int:
    """Size every thread pool to :func:`thread_budget` ``(n)``; returns it.

    Sets torch's threads if torch is loaded (it is never imported here), limits the BLAS and
    OpenMP libraries already loaded, and sets the environment variables the others read when
    they load (only those the user has not set; ``GOMP_SPINCOUNT`` only when the user set no
    wait policy either).
    """
    global _configured
    threads = thread_budget(n)
    for name in POOL_ENVS:
        os.environ.setdefault(name, str(threads))
    if WAIT_POLICY_ENV not in os.environ:  # GOMP_SPINCOUNT would override the user's policy
        os.environ.setdefault(SPIN_COUNT_ENV, str(SPIN_COUNT))
    _limit_loaded_pools(threads)
    _configured = threads
    log.info("thread pools sized to %d (usable cores: %d)", threads, usable_cpus())
    return threads


def ensure_threads() -> int:
    """For code about to compute with torch: the budget, applied to torch (imported here).

    The first call in a process configures the pools (:func:`configure_threads`) unless
    something did already (the CLI's root command, the user); a user who set torch's threads
    before calling tmescope keeps that number.
    """
    threads = _configured
    if threads is None:
        threads = configure_threads(_torch_threads_set_by_user())
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # refused once inter-op work has started
        torch.set_num_interop_threads(threads)
    return threads


def configured_threads() -> int:
    """The budget :func:`configure_threads` gave the pools, else the one it would give."""
    return _configured if _configured is not None else thread_budget()


def reader_threads(threads: int | None = None) -> int:
    """Patch-reading threads for a budget of ``threads`` (default: the configured one): at
    most :data:`MAX_READERS`, and never more than the budget."""
    budget = threads if threads is not None else configured_threads()
    return max(1, min(MAX_READERS, budget))


def worker_environ(threads: int) -> dict[str, str]:
    """Environment for a child process (a Dask worker) given ``threads`` threads: it overrides
    what Dask's nanny sets (``OMP_NUM_THREADS=1``) and passes on the OpenMP wait settings."""
    env = {name: str(threads) for name in (THREADS_ENV, *POOL_ENVS)}
    env.update({k: os.environ[k] for k in (WAIT_POLICY_ENV, SPIN_COUNT_ENV) if k in os.environ})
    return env


def _limit_loaded_pools(threads: int) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # kept: called, not entered as a context


def _torch_threads_set_by_user() -> int | None:
    """torch's threads when torch is loaded and they differ from torch's own default."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "get_num_threads"):
        return None
    omp = _positive_int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    current = int(torch.get_num_threads())
    return current if current != (omp or _affinity()) else None


def _check_threads(value: object, name: str) -> int:
    number = _positive_int(value)
    if number is None:
        raise InvalidParameterError(
            f"{name} must be a positive whole number of threads, got {value!r}; leave it unset "
            f"to use the cores this process may use ({usable_cpus()} here)"
        )
    return number


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _ancestors(root: Path, path: str) -> list[Path]:
    """``root/path`` and each of its parents up to ``root``: the limit is the tightest."""
    parts = [p for p in path.strip().split("/") if p]
    return [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_quota(directory: Path) -> float | None:
    try:
        quota, _, period = (directory / "cpu.max").read_text().strip().partition(" ")
    except OSError:
        return None
    return _ratio(quota, period or "100000")


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    """CPUs of a quota; ``None`` for no limit (``max``, ``-1``) or text that is not one."""
    try:
        q, p = float(quota), float(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None
