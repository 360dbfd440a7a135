"""The elements of a SpatialData zarr that make a sample: its table of counts, the shapes,
points or labels (a segmentation mask) the table annotates, and the H&E image sharing a
coordinate system with them.

Only the chosen table and element are read (an HD export may hold millions of 2 µm bins in
others); spatialdata has no public reader of one element, so its per-element readers are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tmescope.errors import (
    CountsFormatError,
    ImageMismatchError,
    InvalidParameterError,
    SlideReadError,
)
from tmescope.io._messages import first_line
from tmescope.io.label_centroids import label_centroids, read_labels
from tmescope.io.zarr_slide import image_levels

EXPORT_ATTRS = "tmescope_export"  # the root attributes `tmescope export --to spatialdata` writes
_ZARR_META = ("zarr.json", ".zattrs", ".zgroup")
# On a tie between images of the same resolution, names that say "the H&E" win, in this order.
_PREFERRED = ("_he", "he_image", "_full_image", "_hires_image")


@dataclass(frozen=True)
class Units:
    """The table's units, row by row: their element and centres in its intrinsic frame."""

    region: str  # the shapes, points or labels element the table annotates
    element: Any  # GeoDataFrame, dask DataFrame or labels DataArray/DataTree (transformations)
    centres: np.ndarray  # (n, 2) x, y of each table row's unit
    sizes: np.ndarray  # (n,) a circle's diameter, a polygon's √area (a square's side); NaN: points
    # "circle", "square" (equal upright squares: Visium HD bins), "polygon" (a mask's cells too:
    # their size is √area, as a polygon's), "point"
    kind: str


def element_names(path: Path, kind: str) -> list[str]:
    """Names of the ``kind`` elements (tables, images …), from the folders (nothing opened)."""
    folder = path / kind
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and any((p / m).exists() for m in _ZARR_META)
    )


def root_attrs(path: Path) -> dict[str, Any]:
    """The zarr root's attributes (spatialdata-io's reader name, tmescope's export record)."""
    import zarr

    try:
        return dict(zarr.open_group(path, mode="r").attrs.asdict())
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidParameterError(
            f"could not open {path} as a zarr group ({first_line(exc)}); expected a SpatialData zarr"
        ) from exc


def pick_table(path: Path, table: str | None, *, measured: tuple[str, ...] = ()) -> str:
    """The table to read: ``table``, else the only one, else the only one of ``measured`` (a
    tmescope export's ``<s>_measured`` beside its embeddings and maps)."""
    tables = element_names(path, "tables")
    counted = [t for t in tables if t in measured]
    if table is not None and table not in tables:
        raise InvalidParameterError(
            f"{path.name} has no table {table!r}; its tables: {', '.join(tables) or 'none'} "
            "(pick one with --table)"
        )
    if table is not None:
        return table
    if not tables:
        raise CountsFormatError(
            f"{path.name} holds no table; expected a table of counts (units × genes) annotating "
            "its shapes, as spatialdata-io's readers and tmescope export write"
        )
    if len(tables) > 1 and len(counted) == 1:
        return counted[0]
    if len(tables) > 1:
        raise InvalidParameterError(
            f"{path.name} holds {len(tables)} tables ({', '.join(tables)}); pick the one of "
            "measured counts with --table NAME"
        )
    return tables[0]


def read_table(path: Path, name: str) -> Any:
    """The AnnData of table ``name`` (``uns["spatialdata_attrs"]`` included)."""
    from spatialdata._io.io_table import _read_table

    try:
        return _read_table(path / "tables" / name)
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise CountsFormatError(
            f"could not read table {name!r} of {path.name} ({first_line(exc)}); write it again"
        ) from exc


def annotated_units(path: Path, name: str, table: Any) -> Units:
    """The element ``table`` annotates, and each row's unit in it (matched by instance key)."""
    attrs = table.uns.get("spatialdata_attrs") or {}
    regions = attrs.get("region")
    regions = [regions] if isinstance(regions, str) else list(regions or [])
    key = attrs.get("instance_key")
    if len(regions) != 1 or not key or key not in table.obs:
        raise CountsFormatError(
            f"{path.name}: table {name!r} annotates {regions or 'no element'} (instance key "
            f"{key!r}); expected a table annotating one shapes, points or labels element, each "
            "row naming its unit in an instance-key column (spatialdata's TableModel)"
        )
    region = str(regions[0])
    element, element_kind = _read_element(path, region, name)
    if element_kind == "labels":
        centres, sizes, index = label_centroids(element, what=f"{path.name}: labels {region!r}")
        kind = "polygon"
    else:
        centres, sizes, index, kind = _geometry(element, element_kind)
    if not index.is_unique:
        raise CountsFormatError(f"{path.name}: element {region!r} repeats index values")
    rows = index.get_indexer(pd.Index(table.obs[key]))
    if (rows < 0).any():
        missing = table.obs[key].to_numpy()[rows < 0].tolist()
        of = "a label (not 0, the background) in" if element_kind == "labels" else "an index of"
        raise CountsFormatError(
            f"{path.name}: {len(missing)} rows of table {name!r} name units absent from "
            f"{region!r} (e.g. {missing[0]!r}); expected each {key} to be {of} {region!r}"
        )
    return Units(region, element, centres[rows], sizes[rows], kind)


def _read_element(path: Path, region: str, table: str) -> tuple[Any, str]:
    from spatialdata._io.io_points import _read_points
    from spatialdata._io.io_shapes import _read_shapes

    for kind, reader in (("shapes", _read_shapes), ("points", _read_points)):
        if (path / kind / region).is_dir():
            try:
                return reader(path / kind / region), kind
            except (OSError, ValueError, KeyError, AssertionError) as exc:
                raise CountsFormatError(
                    f"could not read {kind} {region!r} of {path.name} ({first_line(exc)})"
                ) from exc
    if (path / "labels" / region).is_dir():
        return read_labels(path, region), "labels"
    raise CountsFormatError(
        f"{path.name}: table {table!r} annotates {region!r}, which is not in it; expected shapes "
        "(spots, bins, cells), points or labels of that name"
    )


def _geometry(element: Any, kind: str) -> tuple[np.ndarray, np.ndarray, pd.Index, str]:
    """``(n, 2)`` centres, ``(n,)`` sizes, the index and the kind of the units of ``element``."""
    if kind == "points":
        frame = element[["x", "y"]].compute(scheduler="synchronous")  # not a cluster's
        xy = frame.to_numpy(np.float64)
        return xy, np.full(len(frame), np.nan), pd.Index(frame.index), "point"
    geometry = element.geometry
    types = set(geometry.geom_type)
    if types == {"Point"} and "radius" in element:
        xy = np.column_stack([geometry.x, geometry.y])
        return xy, 2 * element["radius"].to_numpy(np.float64), pd.Index(element.index), "circle"
    if types <= {"Polygon", "MultiPolygon"}:
        centroids = geometry.centroid
        xy = np.column_stack([centroids.x, centroids.y])
        sizes = np.sqrt(geometry.area.to_numpy(np.float64))
        kind = "square" if _equal_squares(geometry) else "polygon"
        return xy, sizes, pd.Index(element.index), kind
    raise CountsFormatError(
        f"shapes of kinds {', '.join(sorted(types))}; expected circles (points with a radius) "
        "or polygons"
    )


def _equal_squares(geometry: Any) -> bool:
    """Whether every polygon is the same upright square (Visium HD bins), not a cell."""
    bounds = np.asarray(geometry.bounds, np.float64)  # (n, 4) min x, min y, max x, max y
    sides = bounds[:, 2:] - bounds[:, :2]  # (n, 2)
    area = geometry.area.to_numpy(np.float64)
    side = float(np.median(sides))
    return bool(
        len(area)
        and side > 0
        and np.allclose(sides, side, rtol=1e-3)
        and np.allclose(area, sides[:, 0] * sides[:, 1], rtol=1e-6)
    )


def pick_image(
    path: Path, images: dict[str, Any], units: Units, *, image: str | None, prefix: str | None
) -> tuple[str, str]:
    """The H&E image and the coordinate system it shares with ``units``: ``image``, else the
    finest RGB image sharing one (names that say H&E break ties)."""
    if image is not None:
        if image not in images:
            raise InvalidParameterError(
                f"{path.name} has no image {image!r}; its images: {', '.join(images) or 'none'}"
            )
        if not is_rgb(images[image]):
            raise SlideReadError(
                f"{path.name}: image {image!r} has {_channels(images[image])}; expected an RGB "
                "H&E (3 channels), not a fluorescence image (DAPI, morphology_focus)"
            )
    names = [image] if image is not None else [n for n in images if is_rgb(images[n])]
    shared = {n: s for n in names if (s := _shared_system(images[n], units.element))}
    if image is not None and not shared:
        raise ImageMismatchError(
            f"{path.name}: image {image!r} shares no coordinate system with {units.region!r}; "
            "expected both placed in one (spatialdata.transformations.set_transformation)"
        )
    if not shared:
        described = ", ".join(f"{n} ({_channels(images[n])})" for n in images) or "none"
        raise SlideReadError(
            f"{path.name} has no H&E image element beside {units.region!r} (images: {described});"
            " expected an RGB image (3 channels) sharing a coordinate system with it: add the H&E"
            " (spatialdata-io's xenium_aligned_image, or Image2DModel) or embed the Space Ranger "
            "folder with its --image"
        )
    size = {n: _pixel_size(images[n], s) for n, s in shared.items()}
    finest = min(size.values())
    best = [n for n in shared if size[n] <= finest * (1 + 1e-6)]
    ranked = sorted(best, key=lambda n: _rank(n, prefix))
    if len(ranked) > 1 and _rank(ranked[0], prefix) == _rank(ranked[1], prefix):
        raise InvalidParameterError(
            f"{path.name} holds {len(ranked)} RGB images at the same resolution beside "
            f"{units.region!r} ({', '.join(ranked)}); pick the H&E with --image NAME"
        )
    return ranked[0], shared[ranked[0]]


def is_rgb(element: Any) -> bool:
    """An RGB(A) image: 3 channels (4 with alpha), 8-bit or named r, g, b."""
    level = image_levels(element)[0]
    n = int(level.sizes.get("c", 0))
    names = [str(c).lower() for c in level.coords["c"].values] if "c" in level.coords else []
    return n in (3, 4) and (level.dtype == np.uint8 or names[:3] == ["r", "g", "b"])


def image_to_system(image: Any, units: Units, system: str) -> tuple[np.ndarray, float]:
    """The ``(3, 3)`` affine map of ``units``' frame → the image's level-0 pixels (x, y) through
    ``system``, and the image's pixel size in the system's units."""
    from spatialdata.transformations import Sequence, get_transformation

    to_system = get_transformation(image, to_coordinate_system=system)
    element = get_transformation(units.element, to_coordinate_system=system)
    try:
        from_system = to_system.inverse()
        matrix = Sequence([element, from_system]).to_affine_matrix(
            input_axes=("x", "y"), output_axes=("x", "y")
        )
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise ImageMismatchError(
            f"the transformation of {units.region!r} into the image's pixels cannot be composed "
            f"({first_line(exc)}); expected invertible 2D transformations"
        ) from exc
    return np.asarray(matrix, np.float64), _pixel_size(image, system)


def units_in_pixels(units: Units, to_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2)`` centres and ``(n,)`` sizes of ``units`` in the image's level-0 pixels, through
    the ``(3, 3)`` affine map of :func:`image_to_system`."""
    xy = units.centres @ to_image[:2, :2].T + to_image[:2, 2]
    return xy, units.sizes * float(np.sqrt(abs(np.linalg.det(to_image[:2, :2]))))


def _shared_system(image: Any, element: Any) -> str | None:
    from spatialdata.transformations import get_transformation

    mine = list(get_transformation(element, get_all=True))
    theirs = set(get_transformation(image, get_all=True))
    return next((s for s in mine if s in theirs), None)


def _pixel_size(image: Any, system: str) -> float:
    """The side of one level-0 pixel in ``system``'s units."""
    from spatialdata.transformations import get_transformation

    linear = get_transformation(image, to_coordinate_system=system).to_affine_matrix(
        input_axes=("x", "y"), output_axes=("x", "y")
    )[:2, :2]
    return float(np.sqrt(abs(np.linalg.det(np.asarray(linear, np.float64)))))


def _rank(name: str, prefix: str | None) -> int:
    if prefix is not None and name == f"{prefix}_he":
        return -1
    return next((i for i, end in enumerate(_PREFERRED) if name.endswith(end)), len(_PREFERRED))


def _channels(element: Any) -> str:
    level = image_levels(element)[0]
    n = int(level.sizes.get("c", 0))
    names = [str(c) for c in level.coords["c"].values] if "c" in level.coords else []
    label = f" {'/'.join(names)}" if names and not all(c.isdigit() for c in names) else ""
    return f"{n} channel{'s' if n != 1 else ''}{label}, {level.dtype}"
