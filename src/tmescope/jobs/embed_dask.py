"""Embedding on a Dask cluster: one task per sample, the model loaded once per worker.

The cluster is started as for every per-sample command (:mod:`tmescope.jobs.cluster`: ``local:N``
or a scheduler address). Each worker builds the encoder once (a worker plugin) and writes its own
sample groups; a task returns only a small summary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from tmescope.cpus import configure_threads, ensure_threads
from tmescope.jobs.cluster import dask_client, worker_threads
from tmescope.jobs.embed import (
    EmbedInput,
    EmbedSettings,
    EmbedSummary,
    embed_sample_into_store,
)

log = logging.getLogger(__name__)

PLUGIN_NAME = "tmescope-encoder"


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


def _embed_on_worker(
    item: EmbedInput, store_path: Path, recipe: EncoderRecipe, settings: EmbedSettings
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
    items: Sequence[EmbedInput],
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
