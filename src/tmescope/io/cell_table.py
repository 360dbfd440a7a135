"""A section's cells: positions in the H&E's full-resolution pixels, optionally their type and
counts. Read from an AnnData (``obsm["spatial"]``, ``obs["cell_type"]``, counts in ``X`` or
``layers["counts"]``: what ``synth`` writes as ``cells.h5ad``), from a CSV/Parquet table with
``x``, ``y`` and ``cell_type`` columns (``cells.csv``), or from a SpatialData zarr (a Xenium or
CosMx section as spatialdata-io writes it, with its H&E).

A SpatialData's table (``table``, else the only one) gives the counts and types as an AnnData
does; its cells are the element it annotates (circles, polygons, points or a labels mask), read
and matched as ``tmescope embed SD.zarr`` reads them, and carried into the level-0 pixels of the
H&E ``embed`` would pick (the finest RGB image sharing a coordinate system with them): a sample
embedded from the same zarr has its spots in the same pixels, so its maps and the cells meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.errors import CountsFormatError, InputNotFoundError, InvalidParameterError
from tmescope.io.input_kind import is_spatialdata_folder
from tmescope.io.spatialdata_elements import (
    annotated_units,
    image_to_system,
    pick_image,
    pick_table,
    read_table,
    units_in_pixels,
)

TABLE_SUFFIXES = (".h5ad", ".csv", ".parquet")


@dataclass(frozen=True, eq=False)
class CellTable:
    """Cells of one section: ``frame`` (``x``, ``y`` and, when known, ``cell_type``), and the
    counts (cells × ``genes``, CSR) when the table has them."""

    source: Path
    frame: pd.DataFrame
    counts: sp.csr_matrix | None
    genes: tuple[str, ...]

    @property
    def has_types(self) -> bool:
        return "cell_type" in self.frame.columns

    def __len__(self) -> int:
        return len(self.frame)


def read_cell_table(
    path: Path | str, *, key: str = "cell_type", table: str | None = None
) -> CellTable:
    """Read a cell table (see the module docstring); ``key`` names the cell-type column,
    ``table`` the table of a SpatialData holding several."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"cell table {path} does not exist; check the path of --cells")
    if is_spatialdata_folder(path):
        return _read_spatialdata(path, key, table)
    suffix = path.suffix.lower()
    if table is not None:
        raise InvalidParameterError(
            f"--table {table} names a table of a SpatialData zarr, but {path.name} is not one; "
            "leave --table out"
        )
    if suffix not in TABLE_SUFFIXES:
        raise InvalidParameterError(
            f"--cells {path.name}: expected a cell table as .h5ad (obsm['spatial'] and counts), "
            f".csv or .parquet (columns x, y, {key}) or a SpatialData zarr, found a "
            f"{suffix or 'suffix-less'} {'folder' if path.is_dir() else 'file'}"
        )
    if suffix == ".h5ad":
        return _read_h5ad(path, key)
    try:
        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InvalidParameterError(f"could not read {path} as a table: {exc}") from exc
    missing = [c for c in ("x", "y") if c not in frame.columns]
    if missing:
        raise InvalidParameterError(
            f"cell table {path.name} lacks column(s) {', '.join(missing)}; expected x and y in "
            f"the H&E's full-resolution pixels and {key}"
        )
    if key not in frame.columns:
        raise InvalidParameterError(
            f"cell table {path.name} has no {key!r} column and no counts to type the cells "
            "from; add the cell types, or give an .h5ad with counts"
        )
    out = pd.DataFrame(
        {"x": frame["x"].to_numpy(float), "y": frame["y"].to_numpy(float),
         "cell_type": frame[key].astype(str).to_numpy()}
    )  # fmt: skip
    return CellTable(source=path, frame=_finite(out, path), counts=None, genes=())


def _read_h5ad(path: Path, key: str) -> CellTable:
    import anndata as ad

    try:
        table = ad.read_h5ad(path)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidParameterError(f"could not read {path} as an AnnData: {exc}") from exc
    if "spatial" not in table.obsm:
        raise InvalidParameterError(
            f"{path.name} has no obsm['spatial']; expected each cell's (x, y) in the H&E's "
            "full-resolution pixels there"
        )
    return _from_anndata(table, np.asarray(table.obsm["spatial"], dtype=float), path, key)


def _read_spatialdata(path: Path, key: str, table: str | None) -> CellTable:
    import spatialdata as sd

    name = pick_table(path, table)
    cells = read_table(path, name)
    units = annotated_units(path, name, cells)
    images = sd.read_zarr(path, selection=("images",)).images
    image, system = pick_image(path, images, units, image=None, prefix=None)
    to_image, _ = image_to_system(images[image], units, system)
    xy, _ = units_in_pixels(units, to_image)  # (n, 2) level-0 px of the H&E
    return _from_anndata(cells, xy, path, key)


def _from_anndata(table: Any, xy: np.ndarray, path: Path, key: str) -> CellTable:
    """The cells of ``table`` (counts, types) at ``xy``, ``(n, 2)`` H&E pixels."""
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})
    if key in table.obs.columns:
        frame["cell_type"] = table.obs[key].astype(str).to_numpy()
    matrix = table.layers.get("counts", table.X)
    counts = None if matrix is None or table.n_vars == 0 else sp.csr_matrix(matrix)
    if counts is not None and counts.nnz and (counts.data.min() < 0):
        raise CountsFormatError(
            f"{path.name}: X holds negative values; expected raw counts per cell (in X or "
            "layers['counts'])"
        )
    if counts is None and "cell_type" not in frame.columns:
        raise CountsFormatError(
            f"{path.name} has neither counts (X is empty) nor obs[{key!r}]; expected cells × "
            "genes counts, or the cells' types"
        )
    genes = tuple(table.var_names.astype(str))
    return CellTable(source=path, frame=_finite(frame, path), counts=counts, genes=genes)


def _finite(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    if frame.empty:
        raise InvalidParameterError(f"cell table {path.name} holds no cells")
    bad = ~np.isfinite(frame[["x", "y"]].to_numpy(float)).all(axis=1)
    if bad.any():
        raise InvalidParameterError(
            f"{int(bad.sum())} cells of {path.name} have no finite position; drop them"
        )
    return frame
