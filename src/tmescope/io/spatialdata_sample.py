"""A SpatialData zarr as a :class:`Sample`: a table of measured units, the shapes, points or
labels (a segmentation mask: spatialdata-io's Xenium default) it annotates, and the H&E image
beside them.

Read as spatialdata-io writes Visium, Visium HD, Xenium, CosMx and MERSCOPE, and as ``tmescope
export --to spatialdata`` writes a store (docs/interop.md). The table is ``table``, else the
only one (in a tmescope export, the only ``<s>_measured``); it annotates one element through
``uns["spatialdata_attrs"]`` (region, instance key). The image is the finest RGB image sharing
a coordinate system with that element (``image`` names another). Positions: each unit's centre
(a circle's, a polygon's or a mask cell's centroid) carried into the image's level-0 pixels
through that coordinate system. µm/px, first found: the export's ``um_per_px``; a Visium HD bin size
(``square_008um``) over the bin pitch or side; the 100 µm Visium pitch (array indices, else
nearest neighbours); spatialdata-io's µm coordinate system (Xenium, MERSCOPE). Only the table
and its element are read whole; a mask and the image a chunk at a time.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tmescope.errors import (
    InputNotFoundError,
    InvalidParameterError,
    MissingDependencyError,
    ResolutionError,
    TmescopeWarning,
)
from tmescope.io._keys import VISIUM_SPOT_DIAMETER_UM, VISIUM_SPOT_PITCH_UM
from tmescope.io.input_kind import is_spatialdata_folder
from tmescope.io.resolution import mpp_from_spot_pitch
from tmescope.io.sample import Platform, Sample
from tmescope.io.spatialdata_elements import (
    EXPORT_ATTRS,
    Units,
    annotated_units,
    image_to_system,
    pick_image,
    pick_table,
    read_table,
    root_attrs,
    units_in_pixels,
)
from tmescope.io.table_sample import sample_from_table
from tmescope.io.visium import LOW_RESOLUTION_MPP
from tmescope.io.zarr_slide import ZarrSlide

_HD_BIN = re.compile(r"square_(\d{3})um")
_UM_SYSTEMS = {"xenium": "global", "merscope": "global"}  # spatialdata-io: systems in µm
_NAMED_BY_REGION = {"visium", "visium_hd"}  # spatialdata-io readers naming shapes by dataset
_LATTICE_MIN_UNITS = 20


@dataclass(frozen=True)
class Resolution:
    """µm per image pixel, where it came from, and what the units are."""

    mpp: float
    source: str
    platform: Platform = "visium"
    bin_um: float | None = None
    diameter_um: float | None = None


def is_spatialdata(path: Path | str) -> bool:
    """A zarr folder holding SpatialData's element groups (images, tables, shapes, points,
    labels); nothing is opened."""
    return is_spatialdata_folder(Path(path))


def read_spatialdata(
    path: Path | str,
    *,
    table: str | None = None,
    sample_id: str | None = None,
    image: str | None = None,
) -> Sample:
    """The sample of one table of ``path`` (see the module docstring), its slide read lazily."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; expected a SpatialData zarr folder")
    if not is_spatialdata(path):
        raise InvalidParameterError(
            f"{path} is not a SpatialData zarr: expected a zarr folder holding tables/, shapes/ "
            "and images/ (as spatialdata's write and tmescope export --to spatialdata make it)"
        )
    try:
        import spatialdata as sd
    except ImportError as exc:  # a direct dependency: only a broken install lacks it
        raise MissingDependencyError(
            f"reading {path.name} needs spatialdata; install it with pip install spatialdata"
        ) from exc
    attrs = root_attrs(path)
    export = attrs.get(EXPORT_ATTRS) or {}
    measured = tuple(f"{s}_measured" for s in export.get("samples") or ())
    table_name = pick_table(path, table, measured=measured)
    what = f"{path.name}: table {table_name!r}"
    counts = read_table(path, table_name)
    units = annotated_units(path, table_name, counts)
    images = sd.read_zarr(path, selection=("images",)).images
    prefix = _export_prefix(export, table_name)
    image_name, system = pick_image(path, images, units, image=image, prefix=prefix)
    to_image, image_px = image_to_system(images[image_name], units, system)
    xy, unit_px = units_in_pixels(units, to_image)  # (n, 2), (n,) level-0 px of the image
    slide = ZarrSlide(images[image_name], path=path / "images" / image_name)
    try:
        reader = str(attrs.get("spatialdata_io_reader") or "")
        um_per_unit = _export_mpp(export, prefix) or _table_mpp(counts)
        if um_per_unit is None and _UM_SYSTEMS.get(reader) == system:
            um_per_unit = (1.0, f"spatialdata-io {reader}: {system} in µm")
        resolution = resolve_resolution(
            counts.obs, xy, unit_px, kind=units.kind, names=f"{table_name} {units.region}",
            um_per_unit=um_per_unit, image_px=image_px, what=what,
        )  # fmt: skip
        if resolution.mpp > LOW_RESOLUTION_MPP:
            warnings.warn(
                f"{what}: image {image_name!r} is {resolution.mpp:.1f} µm/px, too coarse for a "
                "pathology foundation model (they read about 0.5 µm/px); add the full-resolution "
                "H&E to the SpatialData and pick it with --image",
                TmescopeWarning,
                stacklevel=2,
            )
        in_tissue = counts.obs["in_tissue"].to_numpy() if "in_tissue" in counts.obs else None
        return sample_from_table(
            _count_matrix(counts), xy, slide=slide,
            sample_id=sample_id or _default_sample_id(path, prefix, units, reader),
            mpp=resolution.mpp, mpp_source=resolution.source, source=path.resolve(),
            hashed=(path / "tables" / table_name).resolve(),
            spot_diameter_um=resolution.diameter_um, platform=resolution.platform,
            bin_size_um=resolution.bin_um, in_tissue=in_tissue, what=what,
            metadata={"table": table_name, "image": image_name, "coordinate_system": system},
        )  # fmt: skip
    except BaseException:
        slide.close()
        raise


def resolve_resolution(
    obs: pd.DataFrame,
    xy: np.ndarray,
    unit_px: np.ndarray,
    *,
    kind: str,
    names: str,
    um_per_unit: tuple[float, str] | None,
    image_px: float,
    what: str,
) -> Resolution:
    """µm per image pixel for units at ``xy`` (``(n, 2)`` image px) of sizes ``unit_px`` (a
    circle's diameter, a polygon's √area, in image px): see the module docstring's order.
    ``um_per_unit``: µm per unit of the shared coordinate system and where that was read,
    when the file says it;
    ``image_px``: one image pixel in those units; ``names``: the table's and element's."""
    size = float(np.nanmedian(unit_px)) if np.isfinite(unit_px).any() else None
    has_grid = {"array_row", "array_col"} <= set(obs.columns)
    hd = _HD_BIN.search(names)
    if um_per_unit is not None:
        mpp, source = um_per_unit[0] * image_px, um_per_unit[1]
        if size is None:
            return Resolution(mpp, source)
        if kind == "square":  # Visium HD bins (as tmescope exports them)
            side = round(size * mpp, 3)
            return Resolution(mpp, source, "visium_hd", bin_um=side, diameter_um=side)
        # a cell's diameter: a circle's own, a polygon's as a disc of its area
        diameter = size * mpp * (1.0 if kind == "circle" else 2 / math.sqrt(math.pi))
        return Resolution(mpp, source, diameter_um=diameter)
    if hd is not None:
        bin_um = float(hd.group(1))
        if has_grid:
            frame = _grid(obs, xy)
            mpp = mpp_from_spot_pitch(frame, platform="visium_hd", pitch_um=bin_um)
            return Resolution(mpp, "bin-pitch", "visium_hd", bin_um, bin_um)
        if size is not None:
            return Resolution(bin_um / size, "bin-size", "visium_hd", bin_um, bin_um)
    if kind == "circle":
        if has_grid:
            mpp = mpp_from_spot_pitch(_grid(obs, xy), platform="visium")
            return Resolution(mpp, "spot-pitch", diameter_um=VISIUM_SPOT_DIAMETER_UM)
        step = hex_pitch_px(xy)
        if step is not None:
            mpp = VISIUM_SPOT_PITCH_UM / step
            return Resolution(mpp, "spot-pitch", diameter_um=VISIUM_SPOT_DIAMETER_UM)
    raise ResolutionError(
        f"{what}: cannot tell µm per pixel: no Visium spot lattice (100 µm pitch), no Visium HD "
        "bin size (square_008um) and no coordinate system in µm; write the units in µm with "
        "the image's transformation to them, or embed the original Space Ranger run"
    )


def hex_pitch_px(xy: np.ndarray) -> float | None:
    """The pitch of a Visium (hexagonal) lattice in px, when the units form one: at least 20,
    nearest neighbours equally far (within 5 %) for 90 % of them, and some with 5 or 6 such
    neighbours (a square lattice has 4 at most)."""
    if len(xy) < _LATTICE_MIN_UNITS:
        return None
    from scipy.spatial import cKDTree

    distance = cKDTree(xy).query(xy, k=min(7, len(xy)))[0][:, 1:]  # (n, 6) nearest first
    step = float(np.median(distance[:, 0]))
    if step <= 0 or np.mean(np.abs(distance[:, 0] / step - 1) < 0.05) < 0.9:
        return None
    neighbours = (np.abs(distance / step - 1) < 0.05).sum(axis=1)
    return step if np.mean(neighbours >= 5) >= 0.1 else None


def _grid(obs: pd.DataFrame, xy: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "array_row": obs["array_row"].to_numpy(float),
            "array_col": obs["array_col"].to_numpy(float),
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )


def _count_matrix(table: Any) -> Any:
    """Units × genes counts: ``layers["counts"]`` when the table keeps them there (X then holds
    normalised values), else X."""
    import anndata as ad

    if "counts" in table.layers:
        return ad.AnnData(X=table.layers["counts"], obs=table.obs, var=table.var)
    return table


def _export_prefix(export: dict[str, Any], table_name: str) -> str | None:
    """The sample of a tmescope export whose elements this table's name starts with."""
    samples = [str(s) for s in export.get("samples") or ()]
    matching = [s for s in samples if table_name.startswith(f"{s}_")]
    return max(matching, key=len) if matching else None


def _export_mpp(export: dict[str, Any], prefix: str | None) -> tuple[float, str] | None:
    """µm per unit of the sample's coordinate system (its full-resolution pixels)."""
    value = (export.get("um_per_px") or {}).get(prefix) if prefix else None
    if isinstance(value, int | float) and value > 0:
        return float(value), f"tmescope export: um_per_px of {prefix}"
    return None


def _table_mpp(table: Any) -> tuple[float, str] | None:
    """µm per unit of the coordinate system, as tmescope's measured tables record it."""
    value = (table.uns.get("tmescope") or {}).get("um_per_px")
    if isinstance(value, int | float) and value > 0:
        return float(value), "table uns: tmescope.um_per_px"
    return None


def _default_sample_id(path: Path, prefix: str | None, units: Units, reader: str) -> str:
    """The export's sample, spatialdata-io's dataset id (Visium), else the folder's name."""
    if prefix:
        return prefix
    if reader in _NAMED_BY_REGION:
        return re.sub(r"_square_\d+um$", "", units.region)
    name = path.name[: -len(".zarr")] if path.name.lower().endswith(".zarr") else path.name
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "sample"
