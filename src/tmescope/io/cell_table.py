"""A section's cells: positions in the H&E's full-resolution pixels, optionally their type and
counts. Read from an AnnData (``obsm["spatial"]``, ``obs["cell_type"]``, counts in ``X`` or
``layers["counts"]``: what ``synth`` writes as ``cells.h5ad``, and what spatialdata-io's Xenium
or CosMx table becomes once positions are in H&E pixels) or from a CSV/Parquet table with ``x``,
``y`` and ``cell_type`` columns (``cells.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.errors import CountsFormatError, InputNotFoundError, InvalidParameterError

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


def read_cell_table(path: Path | str, *, key: str = "cell_type") -> CellTable:
    """Read a cell table (see the module docstring); ``key`` names the cell-type column."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"cell table {path} does not exist; check the path of --cells")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InvalidParameterError(
            f"--cells {path.name}: expected a cell table as .h5ad (obsm['spatial'] and counts), "
            f".csv or .parquet (columns x, y, {key}), found a {suffix or 'suffix-less'} file"
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
    xy = np.asarray(table.obsm["spatial"], dtype=float)
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
