"""Embedding (``tmescope embed``): one sample read, embedded and written into the cohort store.

This joins the rooms (io → embed → store), so it is a job, not part of ``embed`` (pure
compute) or ``store`` (pure persistence). The same function runs in-process and as one Dask
task per sample (see :mod:`tmescope.jobs.embed_dask`); :func:`embed_samples` is the twin of
``tmescope embed``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tmescope.cpus import ensure_threads
from tmescope.errors import InvalidParameterError
from tmescope.io import Sample
from tmescope.io.slide_sample import SlideSample

# The inputs live in embed_inputs; they are re-exported here, where callers have always met them.
from tmescope.jobs.embed_inputs import EmbedInput as EmbedInput
from tmescope.jobs.embed_inputs import SampleInput as SampleInput
from tmescope.jobs.embed_inputs import SlideInput as SlideInput
from tmescope.jobs.embed_inputs import TableInput as TableInput
from tmescope.jobs.embed_inputs import embed_input as embed_input
from tmescope.jobs.embed_inputs import open_input, stored_extra

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 512
DEFAULT_SUBSPOT_UM = 16.0  # sub-spot bins (the encoder's patch tokens pooled); 0 turns them off
_HASH_EDGE_BYTES = 1 << 20  # slides are hashed by size and their first and last MiB
_HASH_BLOCK_BYTES = 1 << 20  # other inputs are read a MiB at a time: a 2 µm matrix may be GBs
_ZARR_METADATA = frozenset({"zarr.json", ".zattrs", ".zarray", ".zgroup"})


@dataclass(frozen=True)
class EmbedSettings:
    """How to embed: everything but the encoder itself, picklable for Dask workers."""

    batch_size: int = 32
    precision: str = "auto"
    patch_um: float | None = None  # default: encoder input px × encoder µm/px
    grid_um: float | None = None
    readers: int | None = None  # patch-reading threads; None: sized from the thread budget
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    overwrite: bool = False
    subspot_um: float = DEFAULT_SUBSPOT_UM  # sub-spot bin size; 0: no sub-spot features
    cover: bool = False  # cover patches where tissue lies beyond every spot's (or tile's) patch

    def __post_init__(self) -> None:
        # Checked here, before any store is opened: a refused run must leave nothing behind.
        problems = []
        if self.batch_size < 1:
            problems.append(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            problems.append(f"--precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.patch_um is not None and not self.patch_um > 0:
            problems.append(
                f"--patch-um must be a positive field of view in µm, got {self.patch_um}"
            )
        if self.grid_um is not None and not self.grid_um > 0:
            problems.append(f"--grid must be a positive step in µm, got {self.grid_um}")
        if not (math.isfinite(self.subspot_um) and self.subspot_um >= 0):
            problems.append(
                f"--subspot must be a bin size in µm, or 0 for none, got {self.subspot_um}"
            )
        if (self.readers is not None and self.readers < 0) or self.chunk_rows < 1:
            problems.append(
                f"readers must be >= 0 and chunk_rows >= 1, got {self.readers}, {self.chunk_rows}"
            )
        if problems:
            raise InvalidParameterError("; ".join(problems))


@dataclass(frozen=True)
class EmbedSummary:
    """What one sample's embedding did (small: this is all a Dask task sends back)."""

    sample_id: str
    status: str  # "embedded" | "resumed" | "skipped" | "metadata updated" (skipped otherwise)
    n_spots: int
    n_tiles: int
    rows_written: int
    seconds: float
    patches_per_s: float
    n_cover: int = 0  # cover patches, cut so that every tissue bin has features
    n_bins: int = 0  # sub-spot bins

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProgressReporter(Protocol):
    """Receives progress: ``start(sample_id, total)`` then ``advance(n)`` per batch."""

    def start(self, sample_id: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


def embed_sample_into_store(
    item: EmbedInput,
    *,
    store_path: Path,
    encoder: Any,
    device: Any,
    settings: EmbedSettings,
    progress: ProgressReporter | None = None,
) -> EmbedSummary:
    """Embed one sample with ``encoder`` (a loaded registry encoder) into the store.

    The sample is read and planned before the store is touched, so bad input never leaves a
    half-written sample behind; chunks already written by an interrupted run are kept.
    """
    from tmescope.embed.patches import COVER, SPOT, TILE, plan_patches, plan_slide_tiles
    from tmescope.embed.pipeline import BatchReader, GridEmbedder, plan_batches, resolve_precision
    from tmescope.embed.registry import encoder_fingerprint
    from tmescope.embed.tissue_mask import TissueMask
    from tmescope.store import CohortStore, SampleMeta, SampleRows

    spec = encoder.spec
    # Everything that can refuse the run is resolved before the store is opened.
    autocast = resolve_precision(
        settings.precision,  # type: ignore[arg-type]
        model_precision=spec.precision,
        device=device,
    )
    start = time.perf_counter()
    with open_input(item) as sample:
        size_um = settings.patch_um or spec.input_px * spec.mpp
        mask = TissueMask.from_sample(sample)
        if isinstance(sample, SlideSample):
            plan = plan_slide_tiles(
                sample, size_um=size_um, size_px=spec.input_px, mask=mask,
                bin_um=settings.subspot_um or DEFAULT_SUBSPOT_UM,
            )  # fmt: skip
        else:
            plan = plan_patches(
                sample, size_um=size_um, size_px=spec.input_px, grid_step_um=settings.grid_um,
                mask=mask,
            )  # fmt: skip
        plan, bins = _plan_bins(encoder, sample, plan, mask, settings)
        store = CohortStore.open(store_path, mode="a", fingerprint=encoder_fingerprint(encoder))
        writer = store.begin_sample(
            sample.sample_id,
            rows=SampleRows(
                coords=plan.centres.astype(np.float32),
                barcodes=plan.ids,
                kind=plan.kind,
                tissue_fraction=plan.tissue_fraction,
            ),
            meta=SampleMeta(
                source_path=str(sample.source),
                source_hash=source_hash(sample),
                mpp=sample.mpp,
                patch_um=size_um,
                patch_px=spec.input_px,
                extra=stored_extra(sample, item.metadata),
            ),
            dim=spec.embed_dim,
            chunk_rows=settings.chunk_rows,
            overwrite=settings.overwrite,
            **(bins.store_arguments() if bins is not None else {}),
        )
        shape = {
            "n_spots": plan.n_spots,
            "n_tiles": int((plan.kind == TILE).sum()),
            "n_cover": int((plan.kind == COVER).sum()),
            "n_bins": bins.stored.n if bins is not None else 0,
        }
        if writer is None:
            # A sheet fixed after the embedding: its metadata replace the stored ones.
            updated = item.metadata is not None and store.update_sample_metadata(
                sample.sample_id, item.metadata
            )
            log.info("%s is already complete in %s; skipped", sample.sample_id, store_path)
            return EmbedSummary(
                sample.sample_id, "metadata updated" if updated else "skipped", rows_written=0,
                seconds=0.0, patches_per_s=0.0, **shape,
            )  # fmt: skip
        with writer:
            pending = writer.pending_chunks()
            status = "resumed" if len(pending) < writer.n_chunks else "embedded"
            batches = plan_batches(
                len(plan), chunk_rows=settings.chunk_rows, batch_size=settings.batch_size,
                chunks=pending,
            )  # fmt: skip
            embedder = GridEmbedder(
                encoder, mean=spec.mean, std=spec.std, device=device, autocast=autocast,
                projection=bins.projection if bins is not None else None,
            )  # fmt: skip
            rows = sum(b.stop - b.start for b in batches)
            if progress is not None:
                progress.start(sample.sample_id, rows)
            reader = BatchReader(
                sample, plan, readers=settings.readers,
                prepare=embedder.prepare if embedder.prepares_on_readers else None,
            )  # fmt: skip
            pooler = bins.pooler if bins is not None else None
            _write_chunks(writer, reader, embedder, pooler, batches, settings.chunk_rows, progress)
            spot_rows = np.flatnonzero(plan.kind == SPOT)
            # An H&E-only slide has no counts: the store records it so and training skips it.
            counts = None if isinstance(sample, SlideSample) else sample.counts
            writer.finish(
                counts=None if counts is None else counts[list(plan.ids[spot_rows])].copy()
            )
    seconds = time.perf_counter() - start
    return EmbedSummary(
        sample.sample_id, status, rows_written=rows, seconds=round(seconds, 3),
        patches_per_s=round(rows / seconds, 1) if seconds > 0 else 0.0, **shape,
    )  # fmt: skip


def _write_chunks(
    writer: Any,
    reader: Any,
    embedder: Any,
    pooler: Any,
    batches: list[slice],
    chunk_rows: int,
    progress: ProgressReporter | None,
) -> None:
    """Embed batch by batch; hand each store chunk to the writer as soon as it is whole.

    With a ``pooler`` (sub-spot bins), each batch's token grids are pooled into the bins its
    patches own, and the chunk's bin features go to the writer with its embeddings.
    """
    parts: list[np.ndarray] = []
    bin_parts: list[np.ndarray] = []
    chunk = batches[0].start // chunk_rows if batches else 0

    def flush() -> None:
        bins = np.concatenate(bin_parts) if pooler is not None else None
        writer.write_chunk(chunk, np.concatenate(parts), bins=bins)

    for rows, patches in zip(batches, reader.iter_batches(batches), strict=True):
        if rows.start // chunk_rows != chunk:
            flush()
            parts, bin_parts, chunk = [], [], rows.start // chunk_rows
        if pooler is None:
            parts.append(embedder(patches))
        else:
            pooled, grids = embedder.embed_with_grid(patches)
            parts.append(pooled)
            bin_parts.append(pooler.pool(rows, grids))
        if progress is not None:
            progress.advance(rows.stop - rows.start)
    if parts:
        flush()


def _plan_bins(
    encoder: Any, sample: Sample | SlideSample, plan: Any, mask: Any, settings: EmbedSettings
) -> tuple[Any, _Bins | None]:
    """The patch plan with its cover patches, the sample's sub-spot bins and how to pool them;
    the plan as it was and ``None`` with ``subspot_um`` 0."""
    if not settings.subspot_um:
        return plan, None
    from tmescope.embed.encoder import token_grid_shape
    from tmescope.embed.patches import with_cover_patches
    from tmescope.embed.subspot import (
        BinPooler,
        cover_centres,
        plan_bins,
        reduction_matrix,
        subspot_spec,
    )
    from tmescope.store.bins import SampleBins

    grid, width = token_grid_shape(encoder)
    spec = subspot_spec(
        bin_um=settings.subspot_um, patch_um=plan.size_um, grid=grid, token_dim=width
    )
    patch_px = plan.size_um / sample.mpp
    bin_px = spec.bin_um / sample.mpp
    if settings.cover and isinstance(sample, Sample):  # a slide's tiles cover its tissue already
        covers = cover_centres(
            plan.centres, patch_px=patch_px, bin_px=bin_px, tissue=mask,
            region=_capture_area(sample, margin=patch_px / 2),
        )  # fmt: skip
        plan = with_cover_patches(plan, covers, side_px=patch_px, mask=mask)
    bin_plan = plan_bins(plan.centres, patch_px=patch_px, bin_px=bin_px, tissue=mask)
    stored = SampleBins(
        coords=bin_plan.coords, cells=bin_plan.cells, owner=bin_plan.owner,
        offsets=bin_plan.chunk_offsets(n_rows=len(plan), chunk_rows=settings.chunk_rows),
        bin_um=spec.bin_um, bin_px=bin_plan.bin_px,
    )  # fmt: skip
    pooler = BinPooler(bin_plan, plan.centres, patch_px=patch_px)
    return plan, _Bins(stored, spec.to_json(), spec.dim, reduction_matrix(spec), pooler)


def _capture_area(sample: Sample, *, margin: float) -> tuple[float, float, float, float]:
    """The box of every spot of the array, in tissue or not, widened by ``margin`` (full-res px):
    the tissue the measurement could reach, without the fiducial frame around it."""
    xy = sample.spots[["x", "y"]].to_numpy(np.float64)
    low, high = xy.min(axis=0) - margin, xy.max(axis=0) + margin
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


@dataclass(frozen=True, eq=False)
class _Bins:
    """A sample's bins for the store, their spec, and how to pool and reduce their tokens."""

    stored: Any  # store.bins.SampleBins
    spec: dict[str, Any]
    dim: int
    projection: np.ndarray | None
    pooler: Any  # embed.subspot.BinPooler

    def store_arguments(self) -> dict[str, Any]:
        return {"bins": self.stored, "bin_dim": self.dim, "bin_spec": self.spec}


def source_hash(sample: Sample | SlideSample) -> str:
    """A content hash of a sample's inputs: positions, matrix, and the slide's size and ends.

    Re-embedding the same sample id from different data is refused; hashing a multi-GB slide
    whole would cost more than embedding it, so only its size and first and last MiB count.
    """
    digest = hashlib.sha256()
    layout = sample.layout if isinstance(sample, Sample) else None
    inputs = (
        []
        if layout is None
        else [layout.positions, layout.h5 or layout.mtx_dir, layout.scalefactors]
    )
    for path in inputs:
        if path is None:
            continue
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(file.name.encode())
                with file.open("rb") as fh:  # the same digest as the bytes whole, a MiB at a time
                    while block := fh.read(_HASH_BLOCK_BYTES):
                        digest.update(block)
    if layout is not None and layout.summed_from is not None:
        # Bins summed from 2 µm ones: the same files at another bin size are another sample.
        digest.update(f"summed to {layout.bin_size_um} um".encode())
    slide = sample.slide.path
    if slide.is_dir():  # an image element of a SpatialData: its metadata name its arrays
        for file in sorted(slide.rglob("*")):
            if file.name in _ZARR_METADATA:
                digest.update(str(file.relative_to(slide)).encode())
                digest.update(file.read_bytes())
        return digest.hexdigest()
    size = slide.stat().st_size
    digest.update(str(size).encode())
    with slide.open("rb") as fh:
        digest.update(fh.read(_HASH_EDGE_BYTES))
        fh.seek(max(0, size - _HASH_EDGE_BYTES))
        digest.update(fh.read(_HASH_EDGE_BYTES))
    return digest.hexdigest()


def embed_samples(
    items: Sequence[EmbedInput],
    *,
    store: Path | str,
    encoder: str,
    weights: Path | str | None = None,
    device: str = "auto",
    settings: EmbedSettings | None = None,
    scheduler: str | None = None,
    progress: ProgressReporter | None = None,
    on_done: Callable[[EmbedSummary], None] | None = None,
) -> list[EmbedSummary]:
    """Embed samples into a cohort store (twin of ``tmescope embed``).

    Without ``scheduler`` the samples run in turn in this process; with ``local:N`` or a
    scheduler address, one Dask task per sample. The encoder is built, and the store's
    fingerprint checked, before any sample is touched.
    """
    ensure_threads()  # torch, BLAS and readers sized to the cores before torch loads
    from tmescope.embed.registry import encoder_fingerprint
    from tmescope.jobs.embed_dask import EncoderRecipe, embed_on_dask
    from tmescope.store import CohortStore

    settings = settings or EmbedSettings()
    if not items:
        raise InvalidParameterError("no samples given; pass one or more Space Ranger folders")
    store_path = Path(store)
    recipe = EncoderRecipe(encoder, Path(weights) if weights else None, device)
    model, torch_device = recipe.build()
    # Refuse a store of another encoder before reading any sample (and without writing).
    CohortStore.check_compatible(store_path, encoder_fingerprint(model))
    if scheduler:
        del model  # each worker builds its own
        return embed_on_dask(
            items, scheduler=scheduler, store_path=store_path, recipe=recipe,
            settings=settings, on_done=on_done,
        )  # fmt: skip
    summaries = []
    for item in items:
        summary = embed_sample_into_store(
            item, store_path=store_path, encoder=model, device=torch_device,
            settings=settings, progress=progress,
        )  # fmt: skip
        if on_done is not None:
            on_done(summary)
        summaries.append(summary)
    return summaries
