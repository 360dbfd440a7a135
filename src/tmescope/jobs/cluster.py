"""Per-sample work on a Dask cluster, or in turn in this process: one task per sample.

``--scheduler local:N`` starts a :class:`dask.distributed.LocalCluster` of N worker processes;
any other value is the address of a running scheduler, for example one started by dask-jobqueue's
``SLURMCluster`` on an HPC system or dask-cuda's ``LocalCUDACluster`` on a multi-GPU node (see
docs/cluster.md). ``embed``, ``predict``, ``interactions``, ``niches`` and ``export`` share this
start-up and the sizing of each worker's thread pools. A task writes its own outputs (its sample's
maps or fused set in the store, its figures, its exported files) and returns something small; the
same task function runs serially without a scheduler, so a run on a cluster gives what a run in
one process gives.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from tmescope.cpus import (
    THREADS_ENV,
    configure_threads,
    configured_threads,
    ensure_threads,
    thread_budget,
    usable_cpus,
    worker_environ,
)
from tmescope.errors import InvalidParameterError, MissingDependencyError

log = logging.getLogger(__name__)

R = TypeVar("R")
_LOCAL = re.compile(r"^local:(\d+)$")
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://|^[\w.-]+:\d+$")


def worker_threads(nthreads: int) -> int:
    """torch threads of a worker: ``TMESCOPE_THREADS`` in its environment (a ``local:N``
    worker's share, or the user's), else its Dask threads, at most the cores it may use.

    Not ``OMP_NUM_THREADS``: Dask's nanny sets it to 1 in every worker it starts.
    """
    if os.environ.get(THREADS_ENV, "").strip():
        return thread_budget()
    return max(1, min(nthreads, usable_cpus()))


_sized = False  # whether this worker process has sized its thread pools


def run_on_worker(task: Callable[..., R], item: Any, *args: Any) -> R:
    """``task(item, *args)`` on a Dask worker, its thread pools (torch, BLAS) sized first: once
    per worker process, before the first task loads torch (whose OpenMP reads them once)."""
    global _sized
    if not _sized:
        from distributed import get_worker

        worker = get_worker()
        # A worker in the client's own process (inproc://) shares the client's pools as they are.
        if not str(worker.address).startswith("inproc://"):
            configure_threads(worker_threads(int(getattr(worker.state, "nthreads", 1) or 1)))
            ensure_threads()
        _sized = True
    return task(item, *args)


def check_scheduler(scheduler: str | None) -> None:
    """Refuse, before any work, a ``--scheduler`` that is neither ``local:N`` nor an address."""
    if scheduler is None:
        return
    match = _LOCAL.match(scheduler)
    if match and int(match.group(1)) < 1:
        raise InvalidParameterError(f"--scheduler local:N needs N >= 1, got {scheduler!r}")
    if not match and not _ADDRESS.match(scheduler):
        raise InvalidParameterError(
            f"--scheduler must be local:N or a scheduler address like tcp://host:8786, got "
            f"{scheduler!r}"
        )


@contextmanager
def dask_client(scheduler: str) -> Iterator[Any]:
    """A client on ``local:N`` (a fresh LocalCluster of N processes) or a scheduler address."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a core dependency
        raise MissingDependencyError("--scheduler needs dask[distributed]") from exc
    check_scheduler(scheduler)
    match = _LOCAL.match(scheduler)
    if match:
        n = int(match.group(1))
        # The workers share this process's thread budget: N × torch threads ≤ the cores.
        share = max(1, configured_threads() // n)
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env=worker_environ(share),
                # Its start and stop chatter (a worker slow to exit is killed: harmless) is not
                # the user's business; errors still show.
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise InvalidParameterError(
            f"could not reach the Dask scheduler at {scheduler} ({exc}); is it running?"
        ) from exc
    with client:
        yield client


class SampleRunner:
    """Runs a task once per sample: in turn here, or as Dask tasks on a client it holds open
    (a command with several per-sample stages reuses one cluster for all of them)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def distributed(self) -> bool:
        return self._client is not None

    def map(
        self,
        task: Callable[..., R],
        items: Sequence[Any],
        *args: Any,
        name: str = "sample",
        on_done: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """``[task(item, *args) for item in items]``, in the items' order whatever order they
        finish in; ``on_done(i, result)`` as each finishes. A task's error is raised here."""
        if self._client is None:
            results = []
            for i, item in enumerate(items):
                results.append(task(item, *args))
                if on_done is not None:
                    on_done(i, results[-1])
            return results
        from distributed import as_completed

        run = uuid.uuid4().hex[:8]
        futures = {
            self._client.submit(
                run_on_worker, task, item, *args, key=f"tmescope-{name}-{run}-{i}", pure=False
            ): i
            for i, item in enumerate(items)
        }
        done: dict[int, R] = {}
        for future in as_completed(futures):
            done[futures[future]] = future.result()  # re-raises a worker's TmescopeError here
            if on_done is not None:
                on_done(futures[future], done[futures[future]])
        return [done[i] for i in range(len(items))]


@contextmanager
def sample_runner(scheduler: str | None) -> Iterator[SampleRunner]:
    """A :class:`SampleRunner`: serial without ``scheduler``, else on its Dask cluster."""
    if scheduler is None:
        yield SampleRunner()
        return
    with dask_client(scheduler) as client:
        log.info("per-sample tasks on the Dask scheduler %s", client.scheduler.address)
        yield SampleRunner(client)
