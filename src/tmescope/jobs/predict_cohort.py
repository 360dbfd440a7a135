"""``tmescope predict`` over several samples: one ``<sample>.h5ad`` each in a folder.

Each sample is one task (:func:`predict_one`), in turn here or on a Dask cluster: it predicts the
sample (spots and tiles, or with ``resolution_um`` its sub-spot maps, saved in the store and read
back after) and writes its file whole (a temporary file renamed into place). A file already there
that the same model wrote for the same kind of prediction is finished work: a run killed part-way
is taken up where it stopped. One that another model, or another kind of prediction, wrote is
refused before any work, unless ``overwrite``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmescope.errors import InvalidParameterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictSummary:
    """What became of one sample: its file, written now or found finished, and its size."""

    sample_id: str
    path: Path
    status: str  # "written" or "skipped" (already there, from the same model)
    n_obs: int

    def to_dict(self) -> dict[str, Any]:
        return {"sample_id": self.sample_id, "path": str(self.path), "status": self.status,
                "n_obs": self.n_obs}  # fmt: skip


@dataclass(frozen=True)
class PredictTask:
    """What a worker needs to predict any sample: picklable paths and settings."""

    store: Path
    model_dir: Path
    model_id: str
    out: Path  # the folder
    grid: bool
    resolution_um: float | None
    device: str
    keep: bool  # whether sub-spot maps may be saved in the store
    overwrite: bool

    def kind(self) -> dict[str, Any]:
        """What a file records of the prediction it holds (:func:`recorded_kind`)."""
        if self.resolution_um is not None:
            return {"model_id": self.model_id, "bins_um": float(self.resolution_um)}
        return {"model_id": self.model_id, "grid": self.grid}


def predict_samples(
    store: Path | str,
    model_dir: Path | str,
    *,
    out: Path | str,
    samples: Sequence[str] | None = None,
    grid: bool = False,
    resolution_um: float | None = None,
    overwrite: bool = False,
    device: str = "auto",
    scheduler: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[PredictSummary]:
    """Predict ``samples`` (default: every complete sample) into ``out/<sample>.h5ad``.

    ``grid`` adds the grid tiles, ``resolution_um`` gives sub-spot maps instead (as
    :func:`tmescope.jobs.predict.predict_sample` and ``predict_bins.predict_subspot`` do for
    one). With ``scheduler`` (``local:N`` or a Dask scheduler's address), one Dask task per
    sample. ``progress(sample_id, done, total)`` is called as each sample finishes.
    """
    from tmescope.fusion.cohort import check_samples
    from tmescope.jobs.cluster import check_scheduler, sample_runner
    from tmescope.jobs.predict import cached_model, check_model_fits_store

    if grid and resolution_um is not None:
        raise InvalidParameterError(
            "--grid predicts the grid tiles, --resolution the sub-spot bins: choose one"
        )
    check_scheduler(scheduler)
    folder = Path(out)
    if folder.suffix == ".h5ad" or folder.is_file():
        raise InvalidParameterError(
            f"--out {folder} is a file; several samples are written into a folder, one "
            "<sample>.h5ad each (give one --sample to write a single file)"
        )
    opened, keep = _opened(store, resolution_um)
    wanted = check_samples(opened, list(samples)) if samples else opened.sample_ids()
    model = cached_model(model_dir, device=device)
    check_model_fits_store(model, opened.fingerprint, where=str(opened.path))
    if resolution_um is not None:
        _check_bins(opened, model_dir, wanted, resolution_um, keep=keep)
    task = PredictTask(
        store=opened.path, model_dir=Path(model_dir), model_id=model.model_id, out=folder,
        grid=grid, resolution_um=resolution_um, device=device, keep=keep, overwrite=overwrite,
    )  # fmt: skip
    if not overwrite:
        _check_existing(task, wanted)  # before any work: a file of another model is refused
    folder.mkdir(parents=True, exist_ok=True)
    finished = 0

    def done(i: int, summary: PredictSummary) -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(summary.sample_id, finished, len(wanted))

    with sample_runner(scheduler) as runner:
        return runner.map(predict_one, wanted, task, name="predict", on_done=done)


def predict_one(sample_id: str, task: PredictTask) -> PredictSummary:
    """Predict one sample into ``task.out/<sample>.h5ad`` (the unit of work), unless a file of
    the same model and kind is already there."""
    from tmescope.jobs.predict import _write_h5ad
    from tmescope.store import CohortStore

    path = task.out / f"{sample_id}.h5ad"
    if not task.overwrite and recorded_kind(path) == task.kind():
        log.info("%s is already there: skipped", path)
        return PredictSummary(sample_id, path, "skipped", _n_obs(path))
    store = CohortStore.open(task.store, mode="a" if task.keep else "r")
    adata = _prediction(store, sample_id, task)
    _write_h5ad(adata, path)
    return PredictSummary(sample_id, path, "written", adata.n_obs)


def recorded_kind(path: Path) -> dict[str, Any] | None:
    """The model id and kind of prediction an ``.h5ad`` written by ``predict`` records; ``None``
    when there is no such file (an unreadable one, or one of other origins, records ``{}``)."""
    if not path.exists():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if "uns/subspot/model_id" in handle:
                return {"model_id": _text(handle["uns/subspot/model_id"][()]),
                        "bins_um": float(handle["uns/subspot/bin_um"][()])}  # fmt: skip
            if "uns/tmescope/model_id" in handle:
                return {"model_id": _text(handle["uns/tmescope/model_id"][()]),
                        "grid": bool(handle["uns/tmescope/grid"][()])}  # fmt: skip
    except (OSError, KeyError, ValueError):
        pass
    return {}


def _prediction(store: Any, sample_id: str, task: PredictTask) -> Any:
    if task.resolution_um is not None:
        from tmescope.jobs.predict_bins import stored_subspot_anndata
        from tmescope.jobs.subspot_maps import load_predictor

        return stored_subspot_anndata(
            store, load_predictor(task.model_dir), sample_id, resolution_um=task.resolution_um,
            model_dir=task.model_dir,
        )  # fmt: skip
    from tmescope.jobs.predict import _as_anndata, _spatial_uns, cached_model, predict_rows

    model = cached_model(task.model_dir, device=task.device)
    prediction = predict_rows(store, model, sample_id, grid=task.grid)
    adata = _as_anndata(model, prediction, grid=task.grid)
    adata.uns["spatial"] = _spatial_uns(store, sample_id)
    return adata


def _opened(store: Path | str, resolution_um: float | None) -> tuple[Any, bool]:
    """The store, and whether sub-spot maps may be kept in it (spot predictions write none)."""
    from tmescope.store import CohortStore

    if resolution_um is None:
        return CohortStore.open(store, mode="r"), False
    from tmescope.jobs.subspot_maps import open_for_saving

    opened = open_for_saving(store)
    return opened, opened.writable


def _check_bins(
    store: Any, model_dir: Path | str, samples: list[str], resolution_um: float, *, keep: bool
) -> None:
    """Refuse, before any work, a bin size a sample or the sub-spot model cannot give."""
    from tmescope.fusion.subspot_data import check_resolution
    from tmescope.jobs.subspot_maps import check_predictor, load_predictor, save_maps_info

    predictor = load_predictor(model_dir)
    check_predictor(store, predictor, resolution_um)
    for sample_id in samples:
        check_resolution(store, sample_id, resolution_um)
    if keep:
        save_maps_info(store, predictor)  # once, before the tasks write their samples


def _check_existing(task: PredictTask, samples: list[str]) -> None:
    foreign = []
    for sample_id in samples:
        found = recorded_kind(task.out / f"{sample_id}.h5ad")
        if found is not None and found != task.kind():
            foreign.append(sample_id)
    if foreign:
        raise InvalidParameterError(
            f"{task.out} already holds predictions of {', '.join(foreign)} by another model or "
            "of another kind (spots, grid tiles or bins); give --overwrite to replace them, or "
            "another --out folder"
        )


def _n_obs(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as handle:
        index = handle["obs"].attrs.get("_index", "_index")
        return int(handle["obs"][index].shape[0])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
