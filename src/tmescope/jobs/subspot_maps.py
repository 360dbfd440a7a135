"""A sample's sub-spot maps, predicted once and saved in the store (``maps/``), read back after.

Every consumer of sub-spot maps — ``predict --resolution``, ``interactions --resolution``, the
report, the viewer, ``export`` — goes through :func:`sample_maps`: a fresh saved set is read
back; otherwise the sample's bins are read, its spots deconvolved, the ensemble run, and the
result saved (:mod:`tmescope.store.maps`). A store the user may not write is used read-only:
the maps are computed and not kept (:func:`open_for_saving` says so once, with a warning).
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.errors import ModelMismatchError, StoreNotWritableError, TmescopeWarning

if TYPE_CHECKING:
    from tmescope.fusion.subspot_model import SubspotModel
    from tmescope.store import CohortStore
    from tmescope.store.maps import SavedMaps

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SubspotPredictor:
    """A model folder loaded for sub-spot maps: the head's id and targets, its sub-spot model."""

    model_dir: Path
    model_id: str
    fingerprint: dict[str, Any]
    genes: tuple[str, ...]  # the head's target genes (the maps' expression keeps these)
    subspot: SubspotModel

    @property
    def bin_um(self) -> float:
        return float(self.subspot.bin_um)


def load_predictor(model_dir: Path | str) -> SubspotPredictor:
    """``model_dir`` loaded for sub-spot maps; a :class:`ModelMismatchError` without a sub-spot
    model. Kept per process (see :func:`_cached`): a worker loads a model once for every
    sample it is given."""
    path = Path(model_dir)
    stamp = tuple(_mtime(path / name) for name in ("model.json", "subspot/subspot.json"))
    return _cached(str(path), stamp)


@functools.lru_cache(maxsize=2)
def _cached(model_dir: str, stamp: tuple[float, ...]) -> SubspotPredictor:
    from tmescope.fusion.model_dir import load_model
    from tmescope.fusion.subspot_model import SUBSPOT_DIR, SubspotModel

    model = load_model(model_dir, device="cpu")
    folder = Path(model_dir) / SUBSPOT_DIR
    if not folder.is_dir():
        raise ModelMismatchError(
            f"{model_dir} has no sub-spot model: train it with `tmescope train STORE --out "
            f"{model_dir} --resolution 16` (with --reference REF.h5ad for shares of cells)"
        )
    return SubspotPredictor(
        model_dir=Path(model_dir), model_id=model.model_id, fingerprint=dict(model.fingerprint),
        genes=tuple(model.spec.genes), subspot=SubspotModel.load(folder),
    )  # fmt: skip


def check_predictor(store: CohortStore, predictor: SubspotPredictor, resolution_um: float) -> None:
    """Refuse a model of another encoder, or a sub-spot model of another bin size."""
    from tmescope.store.fingerprint import describe_fingerprint, field_differences

    differences = field_differences(predictor.fingerprint, store.fingerprint)
    if differences:
        raise ModelMismatchError(
            f"the model in {predictor.model_dir} was trained on embeddings of "
            f"{describe_fingerprint(predictor.fingerprint)} but {store.path} holds "
            f"{describe_fingerprint(store.fingerprint)} ({'; '.join(differences)}); train a "
            "model on this store with `tmescope train`"
        )
    if abs(predictor.bin_um - resolution_um) > 1e-6:
        raise ModelMismatchError(
            f"the sub-spot model of {predictor.model_dir} was trained on {predictor.bin_um:g} "
            f"µm bins, not {resolution_um:g} µm; use --resolution {predictor.bin_um:g}"
        )


def open_for_saving(store: Path | str) -> CohortStore:
    """The store opened to keep what is computed; read-only (with one warning) when the user
    may not write it."""
    from tmescope.store import CohortStore

    try:
        return CohortStore.open(store, mode="a")
    except StoreNotWritableError as error:
        warnings.warn(
            f"{error}; sub-spot maps and their statistics are computed but not kept",
            TmescopeWarning,
            stacklevel=2,
        )
        return CohortStore.open(store, mode="r")


def sample_maps(store: CohortStore, predictor: SubspotPredictor, sample_id: str) -> SavedMaps:
    """The sample's maps: its fresh saved set, else predicted now (and saved when ``store`` is
    writable). The caller has checked the sample and the model (:func:`check_predictor`)."""
    from tmescope.errors import StoreError
    from tmescope.store.maps import fresh_maps_version, read_maps

    if fresh_maps_version(store, predictor.model_id, sample_id) is not None:
        try:
            return read_maps(store, predictor.model_id, sample_id)
        except StoreError as error:  # damaged: predicted again and written over
            log.warning("%s", error)
    maps = predict_maps(store, predictor, sample_id)
    if not store.writable:
        return maps
    return replace(maps, version=_save(store, predictor, sample_id, maps))


def predict_maps(store: CohortStore, predictor: SubspotPredictor, sample_id: str) -> SavedMaps:
    """Predict the sample's bins now, as :mod:`tmescope.store.maps` keeps them (float32)."""
    from tmescope.fusion.subspot_data import read_bin_sample
    from tmescope.fusion.subspot_model import predict_bins
    from tmescope.store.maps import SavedMaps

    log.info("sub-spot maps of %s at %g µm", sample_id, predictor.bin_um)
    subspot = predictor.subspot
    bins = read_bin_sample(store, sample_id, reference=subspot.reference, bin_um=subspot.bin_um)
    prediction = predict_bins(subspot, bins)
    return SavedMaps(
        reconciled=np.asarray(prediction.reconciled, dtype=np.float32),
        image=np.asarray(prediction.image, dtype=np.float32),
        std=np.asarray(prediction.std, dtype=np.float32),
        disc=np.asarray(bins.disc, dtype=np.int32),
        temperature=float(prediction.temperature),
        spread=float(prediction.spread),
        measured_spots=len(bins.spot_xy),
        bin_um=float(bins.bin_um),
    )  # fmt: skip


def save_maps_info(store: CohortStore, predictor: SubspotPredictor) -> None:
    """Describe the model's maps in the store, once (a per-sample writer finds it there)."""
    from tmescope.fusion.subspot_model import populations_from
    from tmescope.store.maps import MapsModelInfo, read_maps_info, write_maps_info

    if read_maps_info(store, predictor.model_id) is not None:
        return
    write_maps_info(
        store,
        MapsModelInfo(
            model_id=predictor.model_id, model_dir=str(predictor.model_dir),
            bin_um=predictor.bin_um, populations=tuple(predictor.subspot.populations),
            populations_from=populations_from(predictor.subspot.reference),
            fingerprint=store.fingerprint,
        ),
    )  # fmt: skip


def _save(store: CohortStore, predictor: SubspotPredictor, sample_id: str, maps: SavedMaps) -> str:
    from tmescope.store.maps import write_maps

    save_maps_info(store, predictor)
    return write_maps(store, predictor.model_id, sample_id, maps)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
