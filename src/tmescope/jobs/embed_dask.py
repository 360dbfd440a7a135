"""Embedding on a Dask cluster: one task per sample, the model loaded once per worker.

``--scheduler local:N`` starts a :class:`dask.distributed.LocalCluster` of N worker processes;
any other value is the address of a running scheduler, for example one started by dask-jobqueue's
``SLURMCluster`` on an HPC system or dask-cuda's ``LocalCUDACluster`` on a multi-GPU node (see
docs/cluster.md). Each worker builds the encoder once (a worker plugin) and writes its own
sample groups; a task returns only a small summary.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

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
from tmescope.jobs.embed import (
    EmbedSettings,
    EmbedSummary,
    SampleInput,
    SlideInput,
    embed_sample_into_store,
)

log = logging.getLogger(__name__)

PLUGIN_NAME = "tmescope-encoder"
_LOCAL = re.compile(r"^local:(\d+)$")


@dataclass(frozen=True)
class EncoderRecipe:
    """How a worker builds the encoder: picklable, unlike the model itself."""

    name: str
    weights: Path | None
    device: str

    def build(self) -> tuple[Any, Any]:
        """The loaded encoder and the torch device it runs on."""
        from tmescope.embed.pipeline import resolve_device
        from tmescope.embed.registry import create_encoder

        device = resolve_device(self.device)
        return create_encoder(self.name, weights=self.weights, device=str(device)), device


class EncoderPlugin(WorkerPlugin):
    """A Dask worker plugin that sizes the worker's thread pools and builds the encoder once
    when the worker starts."""

    name = PLUGIN_NAME

    def __init__(self, recipe: EncoderRecipe) -> None:
        self.recipe = recipe

    def setup(self, worker: Any) -> None:
        configure_threads(worker_threads(int(getattr(worker.state, "nthreads", 1) or 1)))
        ensure_threads()
        worker.tmescope_encoder = self.recipe.build()

    def teardown(self, worker: Any) -> None:
        worker.tmescope_encoder = None


def worker_threads(nthreads: int) -> int:
    """torch threads of a worker: ``TMESCOPE_THREADS`` in its environment (a ``local:N``
    worker's share, or the user's), else its Dask threads, at most the cores it may use.

    Not ``OMP_NUM_THREADS``: Dask's nanny sets it to 1 in every worker it starts.
    """
    if os.environ.get(THREADS_ENV, "").strip():
        return thread_budget()
    return max(1, min(nthreads, usable_cpus()))


def _embed_on_worker(
    item: SampleInput | SlideInput, store_path: Path, recipe: EncoderRecipe, settings: EmbedSettings
) -> EmbedSummary:
    from distributed import get_worker

    worker = get_worker()
    loaded = getattr(worker, "tmescope_encoder", None)
    if loaded is None:  # a worker that joined after the plugin was registered
        loaded = recipe.build()
        worker.tmescope_encoder = loaded  # type: ignore[attr-defined]
    encoder, device = loaded
    return embed_sample_into_store(
        item, store_path=store_path, encoder=encoder, device=device, settings=settings
    )


def embed_on_dask(
    items: Sequence[SampleInput | SlideInput],
    *,
    scheduler: str,
    store_path: Path,
    recipe: EncoderRecipe,
    settings: EmbedSettings,
    on_done: Callable[[EmbedSummary], None] | None = None,
) -> list[EmbedSummary]:
    """One Dask task per sample; summaries in the order the samples were given."""
    from distributed import as_completed

    with dask_client(scheduler) as client:
        client.register_plugin(EncoderPlugin(recipe), name=PLUGIN_NAME)
        futures = {
            client.submit(
                _embed_on_worker, item, store_path, recipe, settings,
                key=f"tmescope-embed-{i}-{item.path.name}", pure=False,
            ): i
            for i, item in enumerate(items)
        }  # fmt: skip
        results: dict[int, EmbedSummary] = {}
        for future in as_completed(futures):
            summary = future.result()  # re-raises a worker's TmescopeError here
            results[futures[future]] = summary
            if on_done is not None:
                on_done(summary)
    return [results[i] for i in range(len(items))]


@contextmanager
def dask_client(scheduler: str) -> Iterator[Any]:
    """A client on ``local:N`` (a fresh LocalCluster of N processes) or a scheduler address."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a core dependency
        raise MissingDependencyError("--scheduler needs dask[distributed]") from exc
    match = _LOCAL.match(scheduler)
    if match:
        n = int(match.group(1))
        if n < 1:
            raise InvalidParameterError(f"--scheduler local:N needs N >= 1, got {scheduler!r}")
        # The workers share this process's thread budget: N × torch threads ≤ the cores.
        share = max(1, configured_threads() // n)
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env=worker_environ(share),
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    if not re.match(r"^(tcp|tls|ucx|inproc)://|^[\w.-]+:\d+$", scheduler):
        raise InvalidParameterError(
            f"--scheduler must be local:N or a scheduler address like tcp://host:8786, got "
            f"{scheduler!r}"
        )
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise InvalidParameterError(
            f"could not reach the Dask scheduler at {scheduler} ({exc}); is it running?"
        ) from exc
    with client:
        yield client
