"""QuPath GeoJSON export: the regions of a model's maps, as annotations over the slide.

One FeatureCollection. Each feature is the region one class covers in one sample: the bins (or
spots) of that class merged into a Polygon or MultiPolygon, in full-resolution pixels, with
QuPath's ``objectType`` and ``classification`` (name and colour) and its ``measurements``.
Two layers (``properties.layer``):

* ``population``: each sub-spot bin's dominant population (argmax of ``obsm["populations"]``),
  the bins as squares of the lattice; without a sub-spot model (or bins), each spot's dominant
  TME state from the spot-level head, the spots as the cells of their lattice (Voronoi cells,
  so that neighbouring spots of one class merge into one region);
* ``niche``: each spot's niche, when the store holds the model's niches.
"""

from __future__ import annotations

import json
import shutil
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.errors import InvalidParameterError, SampleContentError, TmescopeWarning
from tmescope.jobs.export import (
    ExportModel,
    bin_predictions,
    spot_predictions,
    spot_shape,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tmescope.jobs.cluster import SampleRunner
    from tmescope.jobs.export_parts import ExportItem, ExportTask
    from tmescope.store import CohortStore

# A lattice cell reaches this far from its spot (in spot pitches): past a hexagonal cell's
# corner (1/√3 ≈ 0.58) and a square one's (1/√2 ≈ 0.71), so that cells tile the tissue, yet
# spots at the tissue's edge do not claim the glass beyond it.
CELL_REACH = 0.75
_IDS = uuid.UUID("5d0f6a52-6c1b-4a8e-9a38-0d6f3c1e2b7a")  # namespace of the features' ids


@dataclass(frozen=True)
class Layer:
    """One layer of a sample: a class per place, the places' polygons, what each class is."""

    name: str  # "population" or "niche"
    source: str  # what the places are, for the feature's properties
    classes: tuple[str, ...]  # every class of the model (colours stay put across samples)
    labels: np.ndarray  # (n,) index into classes
    polygons: np.ndarray  # (n,) shapely polygons, full-resolution px
    values: np.ndarray | None  # (n, len(classes)) abundances behind the labels, if any
    unit: str  # "bins" or "spots"


def write_geojson(
    store: CohortStore,
    samples: list[str],
    model: ExportModel | None,
    path: Path,
    *,
    runner: SampleRunner | None = None,
    on_done: Callable[[int, tuple[str, ...]], None] | None = None,
) -> tuple[str, ...]:
    """Write the regions of ``samples`` under ``model``'s maps to ``path``; one line per layer.

    Each sample's features are a part (a file of JSON features, one per line) written by one
    task of ``runner`` (serial by default); the parts are then copied into ``path`` one after
    another, so neither a task nor this process holds more than a sample's features.
    """
    from tmescope.jobs.cluster import SampleRunner
    from tmescope.jobs.export_parts import PARTS, export_items, export_task

    if model is None:
        raise InvalidParameterError("a GeoJSON export needs --model MODEL_DIR")
    if len(samples) > 1:
        warnings.warn(
            f"{len(samples)} samples share one GeoJSON, each in its own slide's pixels: QuPath "
            "lays every feature over the one image open; export each with --sample for QuPath",
            TmescopeWarning,
            stacklevel=3,
        )
    parts = path.with_name(f"{path.name}{PARTS}")  # beside the work file: swept with it
    parts.mkdir()
    try:
        task = export_task(store, model, parts)
        lines = (runner or SampleRunner()).map(
            write_part, export_items(samples, model), task, name="export-geojson", on_done=on_done
        )
        join_parts(path, parts, samples)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return tuple(line for sample_lines in lines for line in sample_lines)


def write_part(item: ExportItem, task: ExportTask) -> tuple[str, ...]:
    """One sample's features, one JSON object per line, in ``task.parts`` (the unit of work);
    one line of summary per layer."""
    store = task.open_store()
    model = task.model(item)
    assert model is not None  # write_geojson refuses an export without a model
    sample_id = item.sample_id
    mpp = float(store.sample_record(sample_id).meta.mpp)
    lines = []
    with (task.parts / f"{sample_id}.jsonl").open("w", encoding="utf-8") as part:
        for layer in sample_layers(store, sample_id, model):
            found = layer_features(layer, sample_id=sample_id, mpp=mpp)
            for feature in found:
                part.write(json.dumps(feature, allow_nan=False) + "\n")
            lines.append(f"{sample_id}: {len(found)} {layer.name} regions ({layer.source})")
    return tuple(lines)


def join_parts(path: Path, parts: Path, samples: list[str]) -> None:
    """One FeatureCollection of every sample's features, in the samples' order, a line at a
    time (as ``json.dumps`` of the whole collection would write it)."""
    with path.open("w", encoding="utf-8") as out:
        out.write('{"type": "FeatureCollection", "features": [')
        first = True
        for sample_id in samples:
            with (parts / f"{sample_id}.jsonl").open(encoding="utf-8") as part:
                for line in part:
                    out.write(("" if first else ", ") + line.rstrip("\n"))
                    first = False
        out.write("]}")


def sample_layers(store: CohortStore, sample_id: str, model: ExportModel) -> list[Layer]:
    """The population layer (bins, else spots) and, where the store has niches, the niches."""
    layers = [population_layer(store, sample_id, model)]
    niches = model.niches.get(sample_id)
    if niches:  # by store row: the spots, or an H&E-only slide's tiles
        rows = np.asarray(sorted(niches), dtype=np.int64)
        xy = np.asarray(store.read_coords(sample_id), dtype=np.float64)[rows]
        names = model.niche_names
        labels = np.asarray([names.index(niches[int(r)]) for r in rows])
        layers.append(
            Layer(
                name="niche", source="spots (an H&E-only slide: tiles), niches of tmescope niches", classes=tuple(names),
                labels=labels, polygons=spot_cells(store, sample_id, xy), values=None,
                unit="spots",
            )
        )  # fmt: skip
    return layers


def population_layer(store: CohortStore, sample_id: str, model: ExportModel) -> Layer:
    """Dominant populations of the sub-spot bins, else dominant TME states of the spot-level
    head (its spots; an H&E-only slide's tiles): the labels the SpatialData tables carry."""
    from tmescope.jobs.export_spatialdata import squares

    maps = bin_predictions(store, model, sample_id)
    if maps is not None:
        bins = store.read_bins(sample_id)
        dominant = maps.obs["dominant_population"]
        return Layer(
            name="population", source=f"sub-spot bins of {bins.bin_um:g} µm, dominant population",
            classes=tuple(dominant.cat.categories), labels=dominant.cat.codes.to_numpy(),
            polygons=squares(bins.cells, bins.bin_px),
            values=np.asarray(maps.obsm["populations"], dtype=np.float64), unit="bins",
        )  # fmt: skip
    predicted = spot_predictions(store, model, sample_id)
    if predicted is None:
        raise SampleContentError(
            f"sample {sample_id!r} has neither spots nor tiles, and the model in {model.path} no "
            f"sub-spot model to map its bins: train with `tmescope train STORE --out "
            f"{model.path} --resolution 16` for population regions"
        )
    if "dominant_state" not in predicted.obs:
        raise InvalidParameterError(
            f"the model in {model.path} predicts no TME populations to draw (it has no sub-spot "
            "model and fewer than 2 TME states): train with --resolution 16 (and --reference)"
        )
    dominant = predicted.obs["dominant_state"]
    proportions = model.model.spec.state_source == "reference"
    unit = "spots" if (predicted.obs["kind"] == "spot").all() else "tiles"
    return Layer(
        name="population",
        source=f"{unit}, dominant " + ("population" if proportions else "TME state (z-scored)"),
        classes=tuple(dominant.cat.categories), labels=dominant.cat.codes.to_numpy(),
        polygons=spot_cells(store, sample_id, np.asarray(predicted.obsm["spatial"], np.float64)),
        values=np.asarray(predicted.obsm["tme_states"], dtype=np.float64), unit=unit,
    )  # fmt: skip


def layer_features(layer: Layer, *, sample_id: str, mpp: float) -> list[dict[str, Any]]:
    """One feature per class present: the union of its places, with its measurements."""
    import shapely

    colours = palette(len(layer.classes), layer.name)
    features = []
    for k, name in enumerate(layer.classes):
        mask = layer.labels == k
        if not mask.any():
            continue
        region = _polygonal(shapely.unary_union(layer.polygons[mask]))
        if region is None:
            continue
        measurements: dict[str, float] = {
            f"n_{layer.unit}": int(mask.sum()),
            "area_um2": round(float(region.area) * mpp * mpp, 2),
        }
        if layer.values is not None:
            measurements["mean_abundance"] = round(float(layer.values[mask, k].mean()), 6)
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(_IDS, f"{sample_id}/{layer.name}/{name}")),
                "geometry": json.loads(shapely.to_geojson(region)),
                "properties": {
                    "objectType": "annotation",
                    "name": name,
                    "classification": {"name": name, "color": colours[k]},
                    "isLocked": False,
                    "measurements": measurements,
                    "sample_id": sample_id,
                    "layer": layer.name,
                    "source": layer.source,
                },
            }
        )
    return features


def spot_cells(store: CohortStore, sample_id: str, xy: np.ndarray) -> np.ndarray:
    """``(n,)`` each spot's cell of the lattice: its Voronoi cell, cut to
    :data:`CELL_REACH` spot pitches around it (its own disc for a lone spot)."""
    import shapely
    from scipy.spatial import cKDTree

    _, size = spot_shape(store, sample_id)
    if len(xy) < 2:
        return np.asarray(shapely.buffer(shapely.points(xy), size))
    distance, _ = cKDTree(xy).query(xy, k=2)
    reach = CELL_REACH * float(np.median(distance[:, 1]))
    low, high = xy.min(axis=0) - 2 * reach, xy.max(axis=0) + 2 * reach
    diagram = shapely.voronoi_polygons(
        shapely.MultiPoint(xy), extend_to=shapely.box(*low, *high), ordered=True
    )
    cells = np.asarray(shapely.get_parts(diagram))
    discs = shapely.buffer(shapely.points(xy), reach, quad_segs=16)
    return np.asarray(shapely.intersection(cells, discs))


def palette(n: int, layer: str) -> list[list[int]]:
    """``n`` colours as QuPath's ``[r, g, b]``: populations take tab20's strong colours first,
    then its light ones; niches Set1's (both cycle past their length)."""
    from matplotlib import colormaps

    if layer == "population":
        strong_first = [*range(0, 20, 2), *range(1, 20, 2)]
        colours = [colormaps["tab20"].colors[i] for i in strong_first]  # type: ignore[attr-defined]
    else:
        colours = list(colormaps["Set1"].colors)  # type: ignore[attr-defined]
    return [[round(255 * c) for c in colours[i % len(colours)][:3]] for i in range(n)]


def _polygonal(geometry: Any) -> Any | None:
    """The Polygon or MultiPolygon part of a union, oriented as RFC 7946 asks; ``None`` if empty."""
    import shapely

    parts = [p for p in shapely.get_parts(geometry) if p.geom_type == "Polygon" and not p.is_empty]
    if not parts:
        return None
    merged = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    return shapely.orient_polygons(merged, exterior_cw=False)
