"""Fused embeddings written back into the store: run a trained model over every sample once.

Niches, interactions, the fused similarity index and the viewer all read a model's view of
each spot and tile — its hidden representation and its TME states — from ``fused/<model_id>/``
of the store (``store/fused.py``). :func:`write_fused` fills in the samples that are missing
or stale and reads the rest back, so a second command costs nothing; a run that is killed
keeps every sample it finished.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tmescope.errors import StoreNotWritableError, TmescopeWarning

if TYPE_CHECKING:
    from tmescope.fusion.model_dir import FusionModel
    from tmescope.store import CohortStore
    from tmescope.store.fused import FusedModelInfo, FusedSample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusedRows:
    """One sample's fused set joined with its rows in the store: where each row is and what."""

    sample_id: str
    mpp: float  # µm per full-resolution pixel
    names: np.ndarray  # (n,) str: barcodes and tile names
    kinds: np.ndarray  # (n,) str: "spot" or "tile"
    coords_px: np.ndarray  # (n, 2) float32 full-resolution pixels
    data: FusedSample

    @property
    def n(self) -> int:
        return self.data.n

    @property
    def is_spot(self) -> np.ndarray:
        return self.kinds == "spot"

    @property
    def coords_um(self) -> np.ndarray:
        return self.coords_px.astype(np.float64) * self.mpp


@dataclass(frozen=True)
class FusedCohort:
    """A model's fused sets over the samples asked for, in the store's sample order."""

    info: FusedModelInfo
    samples: dict[str, FusedRows]
    written: tuple[str, ...]  # the samples computed by this call (the rest were read back)

    @property
    def model_id(self) -> str:
        return self.info.model_id


def write_fused(
    store: Path | str,
    model_dir: Path | str,
    *,
    samples: Sequence[str] | None = None,
    device: str = "auto",
    scheduler: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> FusedCohort:
    """Fused sets of ``model_dir``'s model for ``samples`` (default: every complete sample).

    Samples with a fresh set in the store are read back; the others are predicted (spots, and
    grid tiles where the sample has them) and written: with ``scheduler`` (``local:N`` or a Dask
    scheduler's address), one Dask task per sample, each writing its own set. A store the user
    may not write is used read-only: the sets are computed here and returned but not kept (with
    a warning). ``progress(sample_id, done, total)`` is called after each sample computed.
    """
    from tmescope.fusion.cohort import check_samples
    from tmescope.fusion.model_dir import load_model
    from tmescope.jobs.predict import check_model_fits_store
    from tmescope.jobs.train import device_name
    from tmescope.store import CohortStore

    try:
        opened = CohortStore.open(store, mode="a")
    except StoreNotWritableError as error:
        warnings.warn(
            f"{error}; fused embeddings are computed but not written back",
            TmescopeWarning,
            stacklevel=2,
        )
        opened = CohortStore.open(store, mode="r")
    model = load_model(model_dir, device=device_name(device))
    check_model_fits_store(model, opened.fingerprint, where=str(opened.path))
    wanted = check_samples(opened, list(samples)) if samples else opened.sample_ids()
    if scheduler is not None and opened.writable:
        write_missing(opened, Path(model_dir), model.model_id, wanted, device=device,
                      scheduler=scheduler, progress=progress)  # fmt: skip
        progress = None  # every set is written: the rest is reading them back
    return fused_for(opened, model, wanted, progress=progress)


def write_missing(
    store: CohortStore,
    model_dir: Path,
    model_id: str,
    sample_ids: Sequence[str],
    *,
    device: str,
    scheduler: str | None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[str]:
    """Write the fused sets the samples lack (missing or stale), one task per sample; which."""
    from tmescope.jobs.cluster import sample_runner
    from tmescope.store.fused import fresh_samples

    fresh = fresh_samples(store, model_id)
    missing = [s for s in sample_ids if s not in fresh]
    task = FusedTask(store=store.path, model_dir=model_dir, device=device)

    def done(i: int, _: str) -> None:
        if progress is not None:
            progress(missing[i], i + 1, len(missing))

    with sample_runner(scheduler if missing else None) as runner:
        runner.map(write_fused_sample_task, missing, task, name="fused", on_done=done)
    return missing


@dataclass(frozen=True)
class FusedTask:
    """What a worker needs to write any sample's fused set: picklable paths."""

    store: Path
    model_dir: Path
    device: str


def write_fused_sample_task(sample_id: str, task: FusedTask) -> str:
    """Predict and write one sample's fused set (the unit of work of :func:`write_missing`)."""
    from tmescope.jobs.predict import cached_model
    from tmescope.store import CohortStore

    store = CohortStore.open(task.store, mode="a")
    _compute(store, cached_model(task.model_dir, device=task.device), sample_id, None)
    return sample_id


def fused_for(
    store: CohortStore,
    model: FusionModel,
    sample_ids: Sequence[str],
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> FusedCohort:
    """:func:`write_fused` for an opened store and a loaded model."""
    from tmescope.store.fused import fresh_samples, read_fused_sample

    fresh = fresh_samples(store, model.model_id)
    info = None
    rows: dict[str, FusedRows] = {}
    written = []
    for done, sample_id in enumerate(sample_ids, start=1):
        if sample_id in fresh:
            data = read_fused_sample(store, model.model_id, sample_id)
        else:
            info, data = _compute(store, model, sample_id, info)
            written.append(sample_id)
        rows[sample_id] = _joined(store, sample_id, data)
        if progress is not None:
            progress(sample_id, done, len(sample_ids))
    info = info or _model_info(store, model, rows)
    return FusedCohort(info=info, samples=rows, written=tuple(written))


def _compute(
    store: CohortStore, model: FusionModel, sample_id: str, info: FusedModelInfo | None
) -> tuple[FusedModelInfo, FusedSample]:
    from tmescope.jobs.predict import predict_rows
    from tmescope.store.fused import (
        FusedModelInfo,
        FusedSample,
        read_model_info,
        write_fused_sample,
        write_model_info,
    )

    grid = store.sample_record(sample_id).n_tiles > 0
    log.info("fused embeddings of %s (%s)", sample_id, "spots and tiles" if grid else "spots")
    prediction = predict_rows(store, model, sample_id, grid=grid)
    data = FusedSample(
        rows=prediction.store_rows,
        # As the store keeps them (float16), so that a set just computed and one read back give
        # the same niches to the last digit.
        fused=prediction.fused.astype(np.float16).astype(np.float32),
        states=prediction.states,
        states_std=prediction.states_std,
        expression=prediction.expression.astype(np.float16).astype(np.float32),
    )
    if info is None:
        info = read_model_info(store, model.model_id) or FusedModelInfo(
            model_id=model.model_id,
            model_dir=str(model.path),
            dim=int(prediction.fused.shape[1]),
            genes=prediction.genes,
            state_names=prediction.state_names,
            fingerprint=store.fingerprint,
        )
        if store.writable:
            write_model_info(store, info)
    if store.writable:
        write_fused_sample(store, model.model_id, sample_id, data, grid=grid)
    return info, data


def _model_info(
    store: CohortStore, model: FusionModel, rows: dict[str, FusedRows]
) -> FusedModelInfo:
    from tmescope.store.fused import FusedModelInfo, read_model_info

    known = read_model_info(store, model.model_id)
    if known is not None:
        return known
    dim = next(iter(rows.values())).data.fused.shape[1] if rows else 0
    return FusedModelInfo(
        model_id=model.model_id,
        model_dir=str(model.path),
        dim=int(dim),
        genes=tuple(model.spec.genes),
        state_names=tuple(model.spec.state_names),
        fingerprint=store.fingerprint,
    )


def _joined(store: CohortStore, sample_id: str, data: FusedSample) -> FusedRows:
    from tmescope.store.schema import row_kind_names

    kind = store.read_kind(sample_id)[data.rows]
    return FusedRows(
        sample_id=sample_id,
        mpp=float(store.sample_record(sample_id).meta.mpp),
        names=store.read_barcodes(sample_id)[data.rows].astype(str),
        kinds=row_kind_names(kind),
        coords_px=np.asarray(store.read_coords(sample_id)[data.rows], dtype=np.float32),
        data=data,
    )
