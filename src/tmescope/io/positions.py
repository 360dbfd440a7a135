"""Read spot positions: ``tissue_positions_list.csv``, ``tissue_positions.csv`` or HD parquet.

The result is always a table with the columns ``barcode, in_tissue, array_row, array_col, x, y``
where ``x = pxl_col_in_fullres`` and ``y = pxl_row_in_fullres`` (full-resolution pixels).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from tmescope.errors import PositionsFormatError
from tmescope.io._keys import PositionColumns as C

SPOT_COLUMNS = ("barcode", "in_tissue", "array_row", "array_col", "x", "y")


def read_positions(path: Path) -> pd.DataFrame:
    """Read a Space Ranger positions file of any version into the canonical spot table."""
    path = Path(path)
    if path.suffix == ".parquet":
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise PositionsFormatError(
                f"could not read {path} as a parquet positions table ({exc}); expected the Visium HD "
                "tissue_positions.parquet written by Space Ranger"
            ) from exc
    else:
        raw = _read_positions_csv(path)
    return normalise_positions(raw, source=path)


def _read_positions_csv(path: Path) -> pd.DataFrame:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PositionsFormatError(f"could not read positions file {path}: {exc}") from exc
    first_line = text.split("\n", 1)[0].strip()
    if not first_line:
        raise PositionsFormatError(
            f"positions file {path} is empty; expected one line per spot ({', '.join(C.ALL)})"
        )
    # Sniff the header from the first line rather than trusting the file name: some
    # tissue_positions_list.csv files carry a header and some tissue_positions.csv do not.
    first_cells = {cell.strip().lower() for cell in next(csv.reader([first_line]))}
    has_header = not first_cells.isdisjoint(C.ALL)
    try:
        return pd.read_csv(
            io.StringIO(text),
            header=0 if has_header else None,
            names=None if has_header else list(C.ALL),
            dtype={C.BARCODE: str},
            float_precision="round_trip",  # pixel coordinates read back exactly as written
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise PositionsFormatError(
            f"could not parse positions file {path} as CSV: {exc}; expected columns "
            f"{', '.join(C.ALL)}"
        ) from exc


def normalise_positions(raw: pd.DataFrame, *, source: Path | str) -> pd.DataFrame:
    """Validate a raw Space Ranger positions table and rename it to the canonical columns."""
    raw = raw.rename(columns=lambda c: str(c).strip())
    missing = [c for c in C.ALL if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns[:8]))
        raise PositionsFormatError(
            f"positions file {source} lacks column(s) {', '.join(missing)}; found: {found}. "
            f"Expected Space Ranger columns {', '.join(C.ALL)}"
        )
    if raw.empty:
        raise PositionsFormatError(f"positions file {source} holds no spots")
    table = pd.DataFrame({"barcode": raw[C.BARCODE].astype(str).str.strip()})
    for name, column in (
        ("in_tissue", C.IN_TISSUE),
        ("array_row", C.ARRAY_ROW),
        ("array_col", C.ARRAY_COL),
        ("x", C.PXL_COL),
        ("y", C.PXL_ROW),
    ):
        values = pd.to_numeric(raw[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            found = raw[column].iloc[row]
            if isinstance(found, np.generic):  # say nan, not np.float64(nan)
                found = found.item()
            raise PositionsFormatError(
                f"positions file {source}: column {column} must be numeric, found "
                f"{found!r} for barcode {table['barcode'].iloc[row]!r}"
            )
        table[name] = values.to_numpy()
    if not table["in_tissue"].isin([0, 1]).all():
        raise PositionsFormatError(
            f"positions file {source}: column {C.IN_TISSUE} must hold 0 or 1, found "
            f"{sorted(set(table['in_tissue'].unique().tolist()) - {0, 1})[:3]}"
        )
    if table["barcode"].duplicated().any():
        dup = table.loc[table["barcode"].duplicated(), "barcode"].iloc[0]
        raise PositionsFormatError(f"positions file {source}: barcode {dup!r} appears twice")
    table["in_tissue"] = table["in_tissue"].astype(bool)
    table["array_row"] = table["array_row"].astype(np.int32)
    table["array_col"] = table["array_col"].astype(np.int32)
    table["x"] = table["x"].astype(np.float64)
    table["y"] = table["y"].astype(np.float64)
    return table.reset_index(drop=True)
