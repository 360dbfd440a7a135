"""``tmescope export``: a cohort store and a model's maps as SpatialData or QuPath GeoJSON.

Both formats share one layout (``docs/interop.md``), the one the AnnData of ``tmescope
predict`` already has: a sample's spots are its spot rows in store order, its sub-spot bins the
observations of ``predict --resolution``, and every position is in the sample's full-resolution
pixels. This module checks the target, gathers a model's maps of each sample and swaps the
finished export into place; ``export_spatialdata`` and ``export_geojson`` lay them out.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from tmescope.errors import InvalidParameterError, StoreError
from tmescope.store.atomic import write_atomically

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.fusion.model_dir import FusionModel
    from tmescope.store import CohortStore

FORMATS = {"spatialdata": (".zarr",), "geojson": (".geojson", ".json")}
REGION_KEY = "region"  # the tables' column naming the shapes element a row annotates
INSTANCE_KEY = "instance_id"  # … and the row of that element (its index)

T = TypeVar("T")


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: where, in which format, for which samples, and its parts."""

    path: Path
    format: str
    samples: tuple[str, ...]
    contents: tuple[str, ...]  # SpatialData element names, or one line per GeoJSON layer


@dataclass(frozen=True, eq=False)
class ExportModel:
    """A loaded model and what it can map: sub-spot bins (``bin_um``) and the store's niches."""

    path: Path
    model: FusionModel
    bin_um: float | None  # the sub-spot model's bin size; None without a sub-spot model
    niches: Mapping[str, dict[int, str]] = field(default_factory=dict)  # sample → row → niche
    # Every niche of the store, when ``niches`` holds only some samples' (a per-sample task's).
    niche_classes: tuple[str, ...] | None = None

    @property
    def niche_names(self) -> list[str]:
        """Every niche of the store, in niche order (``N0 …``, ``N1 …``)."""
        if self.niche_classes is not None:
            return list(self.niche_classes)
        names = {name for rows in self.niches.values() for name in rows.values()}
        return sorted(names, key=_niche_order)


def element_name(sample_id: str, part: str) -> str:
    """``<sample>_<part>``: every element and table of a sample carries its id (he, spots, …)."""
    return f"{sample_id}_{part}"


def export_store(
    store: Path | str,
    out: Path | str,
    *,
    to: str | None = None,
    model_dir: Path | str | None = None,
    sample: str | None = None,
    overwrite: bool = False,
    scheduler: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExportSummary:
    """Export ``store`` (every complete sample, or ``sample``) to ``out`` (twin of ``export``).

    ``to`` is ``spatialdata`` or ``geojson`` (default: from ``out``'s suffix). With
    ``model_dir``, the model's maps join the export: spot-level predictions, sub-spot
    populations and the niches the store holds fused sets for. An existing ``out`` is refused
    unless ``overwrite``; it is then replaced only once the new export is whole. Each sample's
    part is one task (:mod:`tmescope.jobs.export_parts`): in turn here, or with ``scheduler``
    (``local:N`` or a Dask scheduler's address) on a cluster. ``progress(sample_id, done,
    total)`` is called as each sample's part is written.
    """
    from tmescope.fusion.cohort import check_samples
    from tmescope.jobs.cluster import check_scheduler, sample_runner
    from tmescope.store import CohortStore

    check_scheduler(scheduler)

    fmt = export_format(to, Path(out))
    out = Path(out)
    if fmt == "geojson" and model_dir is None:
        raise InvalidParameterError(
            "a GeoJSON export holds the regions of a model's maps (populations, niches): give "
            "--model MODEL_DIR, a model trained on this store (with --resolution 16 for sub-spot "
            "populations)"
        )
    check_target(out, Path(store), overwrite=overwrite, directory=fmt == "spatialdata")
    opened = CohortStore.open(store, mode="r")
    samples = check_samples(opened, [sample]) if sample else opened.sample_ids()
    if not samples:
        raise StoreError(f"{opened.path} holds no complete sample to export")
    model = load_export_model(opened, model_dir) if model_dir is not None else None
    from tmescope.jobs.export_geojson import write_geojson
    from tmescope.jobs.export_spatialdata import write_spatialdata

    write = write_spatialdata if fmt == "spatialdata" else write_geojson

    finished = 0

    def done(i: int, _: object) -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(samples[i], finished, len(samples))

    def run(partial: Path) -> tuple[str, ...]:
        with sample_runner(scheduler) as runner:
            return write(opened, samples, model, partial, runner=runner, on_done=done)

    contents = replace_atomically(out, run, overwrite=overwrite)
    return ExportSummary(path=out, format=fmt, samples=tuple(samples), contents=contents)


def export_format(to: str | None, out: Path) -> str:
    """The format asked for, or the one ``out``'s suffix names; one clear error otherwise."""
    if to is not None:
        if to.lower() not in FORMATS:
            raise InvalidParameterError(
                f"--to {to!r} is not a format tmescope exports; choose {' or '.join(FORMATS)}"
            )
        return to.lower()
    for fmt, suffixes in FORMATS.items():
        if out.name.lower().endswith(suffixes):
            return fmt
    raise InvalidParameterError(
        f"cannot tell the format from {out.name!r}: give --to spatialdata (OUT.zarr) or --to "
        "geojson (OUT.geojson)"
    )


def check_target(out: Path, store: Path, *, overwrite: bool, directory: bool) -> None:
    """Refuse, before any work, a target that exists (without ``overwrite``) or that an export
    must never replace: the store itself, a folder around it or in it, another kind of file."""
    target, source = out.resolve(), store.resolve()
    if target == source or source.is_relative_to(target) or target.is_relative_to(source):
        raise InvalidParameterError(
            f"the export {out} would overwrite the store {store} or lie inside it; choose a path "
            "outside the store"
        )
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise InvalidParameterError(
            f"{out} exists; give --overwrite to replace it (the old one stays until the new "
            "export is whole) or choose another path"
        )
    kind = "a SpatialData Zarr folder" if directory else "a file"
    if directory and not (out.is_dir() and _is_replaceable_zarr(out)):
        raise InvalidParameterError(f"{out} is not {kind}; refusing to replace it")
    if not directory and not out.is_file():
        raise InvalidParameterError(f"{out} is not {kind}; refusing to replace it")


def _is_replaceable_zarr(path: Path) -> bool:
    """Whether ``path`` is a Zarr group that is not a tmescope store (which export never
    replaces)."""
    from tmescope.store.schema import ROOT_ATTR

    if (path / ".zgroup").is_file():
        return True
    try:
        header = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and ROOT_ATTR not in (header.get("attributes") or {})


def replace_atomically(out: Path, write: Callable[[Path], T], *, overwrite: bool) -> T:
    """``write`` into a hidden sibling of ``out``, then put it in place: ``out`` is the old
    export or the new one, whole, never a half-written one (``store.atomic``)."""

    def checked(partial: Path) -> T:
        result = write(partial)
        if out.exists() and not overwrite:  # appeared while we wrote: keep theirs
            raise InvalidParameterError(f"{out} appeared while exporting; nothing was replaced")
        return result

    return write_atomically(out, checked)


def load_export_model(store: CohortStore, model_dir: Path | str) -> ExportModel:
    """Load ``model_dir`` for ``store``: its head, its sub-spot bin size, the store's niches."""
    from tmescope.fusion.subspot_model import SUBSPOT_DIR, SubspotModel
    from tmescope.jobs.predict import cached_model, check_model_fits_store

    model = cached_model(model_dir, device="cpu")  # the per-sample tasks here reuse it
    check_model_fits_store(model, store.fingerprint, where=str(store.path))
    subspot = Path(model_dir) / SUBSPOT_DIR
    bin_um = SubspotModel.load(subspot).bin_um if subspot.is_dir() else None
    return ExportModel(Path(model_dir), model, bin_um, stored_niches(store, model))


def stored_niches(store: CohortStore, model: FusionModel) -> dict[str, dict[int, str]]:
    """Each sample's niche by store row (its spots; an H&E-only slide's tiles), as ``tmescope
    niches STORE MODEL`` finds them with its defaults, when the store holds the model's fresh
    fused sets of every sample; empty otherwise: export only reads the store."""
    from tmescope.jobs.fused import fused_for
    from tmescope.jobs.niches import niches_of, sites
    from tmescope.store.fused import fresh_samples

    samples = store.sample_ids()
    fresh = fresh_samples(store, model.model_id)
    if not samples or any(s not in fresh for s in samples):
        return {}
    cohort = fused_for(store, model, samples)
    report = niches_of(cohort)
    names = np.asarray(report.names, dtype=object)
    niches = {}
    for sample_id, rows in cohort.samples.items():
        shown = sites(rows)
        labels = names[report.labels[sample_id][shown]]
        pairs = zip(rows.data.rows[shown], labels, strict=True)
        niches[sample_id] = {int(row): str(name) for row, name in pairs}
    return niches


def spot_rows(store: CohortStore, sample_id: str) -> np.ndarray:
    """``(n_spots,)`` the store rows of a sample's spots, in store order (maybe none)."""
    from tmescope.store import RowKind

    return np.flatnonzero(store.read_kind(sample_id) == RowKind.SPOT).astype(np.int64)


def spot_predictions(store: CohortStore, model: ExportModel, sample_id: str) -> ad.AnnData | None:
    """The spot-level head's AnnData (as ``tmescope predict``: a sample's spots, an H&E-only
    slide's tiles) with ``obs["instance_id"]`` (store rows), ``obs["dominant_state"]`` and,
    where the store has niches, ``obs["niche"]``; ``None`` for a sample with neither."""
    import pandas as pd

    from tmescope.jobs.predict import _as_anndata, predict_rows

    record = store.sample_record(sample_id)
    if record.n_spots == 0 and record.n_tiles == 0:
        return None
    prediction = predict_rows(store, model.model, sample_id, grid=False)
    adata = _as_anndata(model.model, prediction, grid=False)
    adata.obs[INSTANCE_KEY] = prediction.store_rows
    states = adata.obsm.get("tme_states")
    if states is not None and states.shape[1] >= 2:
        values = np.asarray(states, dtype=np.float64)  # (n, S)
        # Shares of cells compare as they are; gene-set scores run on different scales, so the
        # label is the state that stands out most at the spot, z-scored over the sample (as
        # `tmescope interactions --on states` does over the cohort).
        if model.model.spec.state_source != "reference":
            values = (values - values.mean(axis=0)) / np.maximum(values.std(axis=0), 1e-12)
        adata.obs["dominant_state"] = pd.Categorical.from_codes(
            values.argmax(axis=1), categories=[str(c) for c in states.columns]
        )
    niches = model.niches.get(sample_id)
    if niches:
        labels = [niches.get(int(row)) for row in prediction.store_rows]
        adata.obs["niche"] = pd.Categorical(labels, categories=model.niche_names)
    return adata


def bin_predictions(store: CohortStore, model: ExportModel, sample_id: str) -> ad.AnnData | None:
    """The sub-spot maps' AnnData (as ``tmescope predict --resolution``) with, for plotting,
    ``obs["dominant_population"]`` (each bin's argmax) and ``obs["population_<name>"]``;
    ``None`` without a sub-spot model or for a sample embedded without bins."""
    import pandas as pd

    from tmescope.jobs.predict_bins import subspot_anndata

    if model.bin_um is None or not store.has_bins(sample_id):
        return None
    with warnings.catch_warnings():
        # Its uns["spatial"] (Space Ranger's small images) is dropped below: a slide that can
        # no longer be read is reported where its image is exported, not here.
        warnings.filterwarnings("ignore", message=r".*predictions are written without its image")
        adata = subspot_anndata(
            store.path, model.path, sample=sample_id, resolution_um=model.bin_um
        )
    adata.uns.pop("spatial", None)
    adata.obs[INSTANCE_KEY] = np.arange(adata.n_obs, dtype=np.int64)  # rows of the bin table
    shares = adata.obsm["populations"]  # (n_bins, P) DataFrame
    names = [str(c) for c in shares.columns]
    adata.obs["dominant_population"] = pd.Categorical.from_codes(
        np.asarray(shares).argmax(axis=1), categories=names
    )
    for name in names:
        adata.obs[f"population_{name}"] = shares[name].to_numpy()
    return adata


def spot_shape(store: CohortStore, sample_id: str) -> tuple[str, float]:
    """``("circle", radius_px)`` for Visium spots, ``("square", side_px)`` for Visium HD bins."""
    meta = store.sample_record(sample_id).meta
    extra = dict(meta.extra)
    diameter_um = float(extra.get("spot_diameter_um") or 55.0)
    if str(extra.get("platform", "visium")).replace("-", "_") == "visium_hd":
        return "square", diameter_um / meta.mpp
    return "circle", diameter_um / 2 / meta.mpp


def _niche_order(name: str) -> tuple[int, str]:
    """Niche names start ``N<i>``: sort them by ``i``."""
    head = name.split(" ", 1)[0][1:]
    return (int(head), name) if head.isdigit() else (1 << 30, name)
