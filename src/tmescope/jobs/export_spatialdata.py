"""SpatialData export: each sample's H&E, spots, patches and bins in a coordinate system named
after the sample (full-resolution pixels), with tables linked to them.

Per sample ``<s>`` (``docs/interop.md``)::

    images  <s>_he            the H&E, multiscale, read lazily through the slide reader
    shapes  <s>_spots         spots: circles of the spot's diameter (Visium HD: squares)
            <s>_patches       the encoder's patches (squares), index = store row
            <s>_bins          sub-spot bins (squares), with a sub-spot model
    tables  <s>_measured      measured counts (absent for a sample without any)
            <s>_predicted     the spot-level head (as ``tmescope predict``), ``obs["niche"]``
            <s>_populations   the sub-spot maps (as ``tmescope predict --resolution``)
            <s>_<encoder>_embeddings   sopa's layout: X, ``obsm["spatial"]``, ``uns["embedding_config"]``

Each sample is written by one task (``export_parts``) into a SpatialData of its own, one element
at a time (``write_element``), so memory holds one sample's tables and a few image chunks, never
a cohort or a whole slide; its elements are then moved into the export (each is a folder of its
own, self-described), and the root's attributes and consolidated metadata written last.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tmescope._version import __version__
from tmescope.errors import StoreError, TmescopeError, TmescopeWarning
from tmescope.jobs.export import (
    INSTANCE_KEY,
    REGION_KEY,
    ExportModel,
    bin_predictions,
    element_name,
    spot_predictions,
    spot_rows,
    spot_shape,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import anndata as ad

    from tmescope.io.slide import Slide
    from tmescope.jobs.cluster import SampleRunner
    from tmescope.jobs.export_parts import ExportItem, ExportTask
    from tmescope.store import CohortStore

log = logging.getLogger(__name__)

ELEMENT_KINDS = ("images", "labels", "points", "shapes", "tables")
CHUNK_PX = 1024  # image chunks: what is read from the slide and held at once
MIN_LEVEL_PX = 256  # the pyramid stops halving before the long side falls under this
ATTRS_KEY = "tmescope_export"  # not "tmescope", which marks a cohort store's root


def write_spatialdata(
    store: CohortStore,
    samples: list[str],
    model: ExportModel | None,
    path: Path,
    *,
    runner: SampleRunner | None = None,
    on_done: Callable[[int, tuple[str, ...]], None] | None = None,
) -> tuple[str, ...]:
    """Write one SpatialData holding ``samples`` to ``path`` (which must not exist): each
    sample's elements are a part written by one task of ``runner`` (serial by default), then
    moved into place in the samples' order."""
    import spatialdata as sd

    from tmescope.jobs.cluster import SampleRunner
    from tmescope.jobs.export_parts import PARTS, export_items, export_task

    sdata = sd.SpatialData()
    sdata.write(path, consolidate_metadata=False)  # once at the end, not after each element
    task = export_task(store, model, path / PARTS)
    items = export_items(samples, model)
    parts = (runner or SampleRunner()).map(
        write_part, items, task, name="export-spatialdata", on_done=on_done
    )
    written = join_parts(path, task.parts, dict(zip(samples, parts, strict=True)))
    sdata.attrs[ATTRS_KEY] = {
        "tmescope": __version__,
        "store": str(store.path),
        "model_dir": str(model.path) if model is not None else None,
        "samples": list(samples),
        "coordinate_systems": {s: s for s in samples},
        "units": "full-resolution pixels (x right, y down)",
        "um_per_px": {s: float(store.sample_record(s).meta.mpp) for s in samples},
        "layout": "docs/interop.md",
    }
    sdata.write_attrs()
    sdata.write_consolidated_metadata()
    return tuple(written)


def write_part(item: ExportItem, task: ExportTask) -> tuple[str, ...]:
    """One sample's elements as a SpatialData of their own in ``task.parts`` (the unit of work);
    the names of its elements, in writing order."""
    import dask
    import spatialdata as sd

    store = task.open_store()
    sample_id = item.sample_id
    sdata = sd.SpatialData()
    sdata.write(task.parts / f"{sample_id}.zarr", consolidate_metadata=False)
    # The image pyramid is computed by dask's threads in this process: on a Dask worker, dask
    # would hand it to the cluster, which cannot ship the open slide (its handle and lock).
    with ExitStack() as slides, dask.config.set(scheduler="threads"):
        elements = sample_elements(store, sample_id, task.model(item), slides)
        for name, element in elements.items():  # shapes before the tables naming them
            sdata[name] = element
            sdata.write_element(name)
        for name in reversed(elements):  # on disk now: free the memory
            del sdata[name]
    log.info("exported %s: %s", sample_id, ", ".join(elements))
    return tuple(elements)


def join_parts(path: Path, parts: Path, elements: dict[str, tuple[str, ...]]) -> list[str]:
    """Move each sample's elements (sample → names, in writing order) from its part into the
    SpatialData at ``path``, in the samples' order: each element is a folder of its own, so a
    rename moves it whole. The names moved."""
    import shutil

    written = []
    for sample_id, names in elements.items():
        part = parts / f"{sample_id}.zarr"
        for name in names:
            kind = next(k for k in ELEMENT_KINDS if (part / k / name).is_dir())
            (path / kind).mkdir(exist_ok=True)
            if not (path / kind / "zarr.json").is_file():  # the element kind's plain group
                shutil.copy2(part / kind / "zarr.json", path / kind / "zarr.json")
            (part / kind / name).rename(path / kind / name)
            written.append(name)
    shutil.rmtree(parts)
    return written


def sample_elements(
    store: CohortStore, sample_id: str, model: ExportModel | None, slides: ExitStack
) -> dict[str, Any]:
    """A sample's elements by name, in writing order (shapes before their tables)."""
    elements: dict[str, Any] = {}
    name = lambda part: element_name(sample_id, part)  # noqa: E731 - a short local alias
    image = he_image(store, sample_id, slides)
    if image is not None:
        elements[name("he")] = image
    rows = spot_rows(store, sample_id)
    coords = np.asarray(store.read_coords(sample_id), dtype=np.float64)  # (n, 2) x, y
    elements[name("patches")] = patch_shapes(store, sample_id, coords)
    if rows.size:
        elements[name("spots")] = spot_shapes(store, sample_id, rows, coords[rows])
        measured = store.read_counts(sample_id)
        if measured is not None and measured.n_obs == rows.size:
            measured.obsm["spatial"] = coords[rows]
            measured.uns["tmescope"] = _about(store, sample_id, "measured counts")
            elements[name("measured")] = linked_table(measured, name("spots"), rows)
        elif measured is not None:
            warnings.warn(
                f"{sample_id} has {measured.n_obs} count rows for {rows.size} spots; its "
                "measured table is left out (run `tmescope store verify`)",
                TmescopeWarning,
                stacklevel=2,
            )
    if model is not None:
        predicted = spot_predictions(store, model, sample_id)
        if predicted is not None:  # spots, or an H&E-only slide's tiles (among the patches)
            region = name("spots") if rows.size else name("patches")
            elements[name("predicted")] = linked_table(predicted, region)
        populations = bin_predictions(store, model, sample_id)
        if populations is not None:
            bins = store.read_bins(sample_id)
            elements[name("bins")] = _shapes(sample_id, squares(bins.cells, bins.bin_px))
            elements[name("populations")] = linked_table(populations, name("bins"))
    elements[name(f"{encoder_name(store)}_embeddings")] = embeddings_table(
        store, sample_id, coords, region=name("patches")
    )
    return elements


def he_image(store: CohortStore, sample_id: str, slides: ExitStack) -> Any | None:
    """The sample's H&E as a lazy multiscale image in the sample's coordinate system; ``None``
    (with a warning) when the slide can no longer be read."""
    from spatialdata.transformations import Identity, Scale

    from tmescope.io import open_slide

    try:
        path, scale = slide_of(store, sample_id)
        if path.is_dir():  # an image element of the SpatialData it was embedded from
            from tmescope.io.reopen import reopen_sample

            meta = store.sample_record(sample_id).meta
            reopened = reopen_sample(meta.source_path, extra=meta.extra, mpp=meta.mpp)
            slides.callback(reopened.close)
            slide = reopened.slide
        else:
            slide = slides.enter_context(open_slide(path))
    except TmescopeError as error:
        warnings.warn(
            f"the H&E of {sample_id} cannot be read ({error}); it is exported without its image",
            TmescopeWarning,
            stacklevel=3,
        )
        return None
    # Image pixels → full-resolution pixels: a Space Ranger PNG is smaller by its scale factor.
    to_sample = Identity() if scale == 1.0 else Scale([1 / scale, 1 / scale], axes=("y", "x"))
    return multiscale_image(slide, sample_id, to_sample)


def multiscale_image(slide: Slide, coordinate_system: str, to_system: Any) -> Any:
    """The slide as a multiscale image: level ``k`` is ``2**k`` times coarser, read lazily from
    the slide's own pyramid (each chunk from the best level), never the whole slide at once."""
    import xarray as xr
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Scale, Sequence

    levels = {}
    lock = threading.Lock()  # one slide handle: dask's threads take turns reading it
    for k in range(len(pyramid_factors(slide.height, slide.width)) + 1):
        factor = 2**k
        transform = to_system if k == 0 else Sequence(
            [Scale([factor, factor], axes=("y", "x")), to_system]
        )  # fmt: skip
        image = Image2DModel.parse(
            lazy_rgb(slide, factor, lock),
            dims=("c", "y", "x"),
            c_coords=["r", "g", "b"],
            transformations={coordinate_system: transform},
        )
        levels[f"scale{k}"] = xr.Dataset({"image": image})
    tree = xr.DataTree.from_dict(levels)
    Image2DModel().validate(tree)
    return tree


def lazy_rgb(slide: Slide, factor: int, lock: threading.Lock, chunk: int = CHUNK_PX) -> Any:
    """``(3, h, w)`` uint8 dask array of the slide ``factor`` times coarser than level 0 (``h``,
    ``w`` rounded down, as a pyramid halves), read a chunk at a time."""
    import dask.array as da

    height, width = slide.height // factor, slide.width // factor

    def read(block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None  # dask always passes it to a function that asks
        (_, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        with lock:
            pixels = slide.read_region(
                x0 * factor, y0 * factor, (x1 - x0) * factor, (y1 - y0) * factor,
                size=(x1 - x0, y1 - y0),
            )  # fmt: skip  # (h, w, 3)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    chunks = ((3,), _splits(height, chunk), _splits(width, chunk))
    return da.map_blocks(
        read, chunks=chunks, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8),
        name=f"tmescope-he-{uuid.uuid4().hex}",
    )  # fmt: skip


def slide_of(store: CohortStore, sample_id: str) -> tuple[Path, float]:
    """The sample's H&E and its pixels per full-resolution pixel (1 for the full-resolution
    image; Space Ranger's scale factor for a hires or lowres PNG)."""
    meta = store.sample_record(sample_id).meta
    extra = dict(meta.extra)
    path = Path(str(extra.get("image") or meta.source_path))
    if extra.get("image_kind", "fullres") == "fullres":
        return path, 1.0
    from tmescope.io import read_visium
    from tmescope.io.reopen import recorded_bin_size

    try:
        bin_size_um = recorded_bin_size(meta.extra)  # the units it was embedded at
        with read_visium(meta.source_path, image=None, bin_size_um=bin_size_um) as source:
            return path, float(source.image_scale)
    except TmescopeError as error:
        raise StoreError(
            f"the H&E of {sample_id} is Space Ranger's {extra.get('image_kind')} image, whose "
            f"scale factor cannot be read from {meta.source_path} ({error})"
        ) from error


def pyramid_factors(height: int, width: int) -> list[int]:
    """Halvings until the long side would fall under :data:`MIN_LEVEL_PX`."""
    factors, side = [], max(height, width)
    while side // 2 >= MIN_LEVEL_PX:
        factors.append(2)
        side //= 2
    return factors


def spot_shapes(store: CohortStore, sample_id: str, rows: np.ndarray, xy: np.ndarray) -> Any:
    """Spots as circles of their real diameter (``radius`` column), or Visium HD squares."""
    import geopandas as gpd

    shape, size = spot_shape(store, sample_id)
    if shape == "square":
        return _shapes(sample_id, _centred_squares(xy, size), index=rows)
    frame = gpd.GeoDataFrame(
        {"radius": np.full(len(rows), size)},
        geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]),
        index=pd.Index(rows, name=INSTANCE_KEY),
    )
    return _parse_shapes(sample_id, frame)


def patch_shapes(store: CohortStore, sample_id: str, coords: np.ndarray) -> Any:
    """The squares each row's embedding was computed from (sopa's ``embeddings_patches``)."""
    meta = store.sample_record(sample_id).meta
    side = meta.patch_um / meta.mpp
    return _shapes(sample_id, _centred_squares(coords, side), index=np.arange(len(coords)))


def squares(cells: np.ndarray, side: float) -> np.ndarray:
    """``(n,)`` shapely squares of lattice ``cells`` (column, row) of ``side`` px from (0, 0):
    neighbours share their edges exactly, so unions are clean."""
    import shapely

    cells = np.asarray(cells, dtype=np.float64)
    low, high = cells * side, (cells + 1) * side
    return np.asarray(shapely.box(low[:, 0], low[:, 1], high[:, 0], high[:, 1]))


def embeddings_table(
    store: CohortStore, sample_id: str, coords: np.ndarray, *, region: str
) -> ad.AnnData:
    """Every row's embedding as sopa lays them out: X, patch centres in ``obsm["spatial"]`` and
    ``uns["embedding_config"]``; ``obs["kind"]`` says spot, tile or cover patch."""
    import anndata as ad

    from tmescope.store.schema import row_kind_names

    meta = store.sample_record(sample_id).meta
    names = store.read_barcodes(sample_id)
    n = len(names)
    index = pd.Index(names if len(set(names)) == n else [f"row_{i}" for i in range(n)])
    obs = pd.DataFrame(
        {
            "barcode": names,
            "kind": pd.Categorical(row_kind_names(store.read_kind(sample_id))),
            "tissue_fraction": store.read_tissue_fraction(sample_id),
            "sample_id": sample_id,
        },
        index=index,
    )
    adata = ad.AnnData(X=np.asarray(store.read_embeddings(sample_id), dtype=np.float32), obs=obs)
    adata.obsm["spatial"] = coords
    adata.uns["embedding_config"] = {
        "model_name": encoder_name(store),
        "patch_size_um": float(meta.patch_um),
        "patch_width": float(meta.patch_um / meta.mpp),  # full-resolution px, as sopa's
        "patch_px": int(meta.patch_px),  # the encoder's input
        "um_per_px": float(meta.mpp),
        "level": 0,
        "fingerprint": {k: v for k, v in store.fingerprint.items() if v is not None},
    }
    return linked_table(adata, region, np.arange(n, dtype=np.int64))  # patches: every row


def linked_table(
    adata: ad.AnnData, region: str, instance_ids: np.ndarray | None = None
) -> ad.AnnData:
    """``adata`` annotating shapes element ``region``: row ``i`` is its shape ``instance_ids[i]``
    (default: the ``instance_id`` column the maps already carry)."""
    from spatialdata.models import TableModel

    adata.obs[REGION_KEY] = pd.Categorical([region] * adata.n_obs, categories=[region])
    if instance_ids is not None:
        adata.obs[INSTANCE_KEY] = np.asarray(instance_ids, dtype=np.int64)
    return TableModel.parse(adata, region=region, region_key=REGION_KEY, instance_key=INSTANCE_KEY)


def encoder_name(store: CohortStore) -> str:
    """The store's encoder as an element name (``uni2-h``; other characters become ``_``)."""
    fingerprint = store.fingerprint
    name = next((fingerprint[k] for k in ("model", "name", "encoder") if k in fingerprint), None)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name or "encoder"))


def _about(store: CohortStore, sample_id: str, what: str) -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "what": what,
        "um_per_px": store.sample_record(sample_id).meta.mpp,
    }


def _centred_squares(xy: np.ndarray, side: float) -> np.ndarray:
    import shapely

    low, high = xy - side / 2, xy + side / 2
    return np.asarray(shapely.box(low[:, 0], low[:, 1], high[:, 0], high[:, 1]))


def _shapes(sample_id: str, polygons: np.ndarray, *, index: np.ndarray | None = None) -> Any:
    import geopandas as gpd

    ids = np.arange(len(polygons)) if index is None else index
    frame = gpd.GeoDataFrame(geometry=list(polygons), index=pd.Index(ids, name=INSTANCE_KEY))
    return _parse_shapes(sample_id, frame)


def _parse_shapes(sample_id: str, frame: Any) -> Any:
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import Identity

    return ShapesModel.parse(frame, transformations={sample_id: Identity()})


def _splits(size: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, size - start) for start in range(0, size, chunk))
