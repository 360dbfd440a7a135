"""Read spot positions: ``tissue_positions_list.csv``, ``tissue_positions.csv`` or HD parquet.

The result is always a table with the columns ``barcode, in_tissue, array_row, array_col, x, y``
where ``x = pxl_col_in_fullres`` and ``y = pxl_row_in_fullres`` (full-resolution pixels).
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tmescope.errors import PositionsFormatError
from tmescope.io._keys import PositionColumns as C
from tmescope.io._messages import first_line
from tmescope.io.labels import clean_barcodes

SPOT_COLUMNS = ("barcode", "in_tissue", "array_row", "array_col", "x", "y")
_PARQUET_MAGIC = b"PAR1"
_INT32 = np.iinfo(np.int32)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not tab, CR or LF


def read_positions(path: Path) -> pd.DataFrame:
    """Read a Space Ranger positions file of any version into the canonical spot table."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise PositionsFormatError(f"could not read positions file {path}: {exc}") from exc
    # Parquet by its content, whatever the name: a renamed HD table must not be parsed as CSV.
    if head == _PARQUET_MAGIC or path.suffix == ".parquet":
        raw = _read_positions_parquet(path)
    else:
        raw = _read_positions_csv(path)
    return normalise_positions(raw, source=path)


def _read_positions_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise PositionsFormatError(
            f"could not read {path} as a parquet positions table ({first_line(exc)}); expected "
            "the Visium HD tissue_positions.parquet written by Space Ranger; copy it again"
        ) from exc


def _read_positions_csv(path: Path) -> pd.DataFrame:
    text = _read_text(path)
    head = text.split("\n", 1)[0].strip()
    if not head:
        raise PositionsFormatError(
            f"positions file {path} is empty; expected one line per spot ({', '.join(C.ALL)})"
        )
    if not text.endswith(("\n", "\r")):
        # Space Ranger ends every line; a file without a last line end was cut short, and a
        # last spot cut inside a number would read as a wrong coordinate.
        last = text.rsplit("\n", 1)[-1].strip()
        raise PositionsFormatError(
            f"positions file {path} ends mid-line ({last[:60]!r} has no line end): the file looks "
            "cut short; copy it again from Space Ranger's spatial/ folder (or, if it is whole, end its "
            "last line with a line end)"
        )
    # Sniff the header from the first line rather than trusting the file name: some
    # tissue_positions_list.csv files carry a header and some tissue_positions.csv do not.
    header = [cell.strip().lower() for cell in next(csv.reader([head]))]
    has_header = not set(header).isdisjoint(C.ALL)
    try:
        with warnings.catch_warnings():
            # A row longer than the header would shift or lose cells: refuse it, loudly.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(
                io.StringIO(text),
                header=0 if has_header else None,
                names=header if has_header else None,  # matched by name whatever their case
                index_col=False,  # never take the barcodes for an index
                dtype={C.BARCODE if has_header else 0: str},
                skipinitialspace=True,
                float_precision="round_trip",  # pixel coordinates read back exactly as written
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as exc:
        raise PositionsFormatError(
            f"could not parse positions file {path} as CSV: {first_line(exc)}; expected columns "
            f"{', '.join(C.ALL)}"
        ) from exc
    if has_header:
        return raw
    if raw.shape[1] > len(C.ALL):
        raise PositionsFormatError(
            f"positions file {path} has no header and {raw.shape[1]} columns; expected the "
            f"{len(C.ALL)} Space Ranger columns {', '.join(C.ALL)} (or a header naming them)"
        )
    # Fewer columns: those missing read as empty, and the checks below name the first of them.
    return raw.set_axis(list(C.ALL[: raw.shape[1]]), axis=1).reindex(columns=list(C.ALL))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PositionsFormatError(f"could not read positions file {path}: {exc}") from exc
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PositionsFormatError(
            f"could not read positions file {path}: it is UTF-16 text; save it as UTF-8 CSV, as "
            "Space Ranger writes it"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PositionsFormatError(
            f"could not read positions file {path}: it is not UTF-8 text ({exc.reason} at byte "
            f"{exc.start}); expected Space Ranger's CSV; copy it again"
        ) from exc
    control = _CONTROL.search(text)
    if control:
        raise PositionsFormatError(
            f"could not read positions file {path}: it holds binary data ({control.group()!r} at "
            f"character {control.start()}), not CSV text; copy it again from Space Ranger's spatial/"
        )
    return text


def normalise_positions(raw: pd.DataFrame, *, source: Path | str) -> pd.DataFrame:
    """Validate a raw Space Ranger positions table and rename it to the canonical columns."""
    raw = raw.rename(columns=lambda c: str(c).strip().lower())
    if raw.columns.duplicated().any():
        twice = raw.columns[raw.columns.duplicated()][0]
        raise PositionsFormatError(
            f"positions file {source} names column {twice!r} twice; expected each of "
            f"{', '.join(C.ALL)} once"
        )
    missing = [c for c in C.ALL if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns[:8]))
        raise PositionsFormatError(
            f"positions file {source} lacks column(s) {', '.join(missing)}; found: {found}. "
            f"Expected Space Ranger columns {', '.join(C.ALL)}"
        )
    if raw.empty:
        raise PositionsFormatError(f"positions file {source} holds no spots")
    barcodes = clean_barcodes(
        raw[C.BARCODE].reset_index(drop=True),
        source=f"positions file {source}",
        error=PositionsFormatError,
    )
    table = pd.DataFrame({"barcode": barcodes})
    for name, column in (
        ("in_tissue", C.IN_TISSUE),
        ("array_row", C.ARRAY_ROW),
        ("array_col", C.ARRAY_COL),
        ("x", C.PXL_COL),
        ("y", C.PXL_ROW),
    ):
        table[name] = _numbers(raw[column], column=column, barcodes=barcodes, source=source)
    if not table["in_tissue"].isin([0, 1]).all():
        raise PositionsFormatError(
            f"positions file {source}: column {C.IN_TISSUE} must hold 0 or 1, found "
            f"{[_plain(v) for v in sorted(set(table['in_tissue'].tolist()) - {0, 1})[:3]]}"
        )
    for name, column in (("array_row", C.ARRAY_ROW), ("array_col", C.ARRAY_COL)):
        values = table[name].to_numpy()
        # Array coordinates index the slide's grid: whole numbers that fit the int32 we keep.
        bad = (values != np.round(values)) | (values < _INT32.min) | (values > _INT32.max)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PositionsFormatError(
                f"positions file {source}: column {column} must hold whole numbers (grid "
                f"coordinates), found {_plain(values[row])!r} for barcode {barcodes[row]!r}"
            )
    table["in_tissue"] = table["in_tissue"].astype(bool)
    table["array_row"] = table["array_row"].astype(np.int32)
    table["array_col"] = table["array_col"].astype(np.int32)
    return table


def _numbers(
    column_values: pd.Series, *, column: str, barcodes: np.ndarray, source: Path | str
) -> np.ndarray:
    """A column as finite float64, or an error naming the first cell that is not a number."""
    column_values = column_values.reset_index(drop=True)
    if column_values.dtype == object:  # text cells: Python's float() reads them exactly
        numbers = np.array([_to_float(v) for v in column_values], dtype=np.float64)
    else:
        values = pd.to_numeric(column_values, errors="coerce")
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        found = column_values.iloc[row]
        if isinstance(found, np.generic):  # say nan, not np.float64(nan)
            found = found.item()
        raise PositionsFormatError(
            f"positions file {source}: column {column} must be numeric, found "
            f"{found!r} for barcode {barcodes[row]!r}"
        )
    return numbers


def _to_float(value: object) -> float:
    """A cell as a float, NaN when it is not a plain number (``1_000`` reads as 1000 in Python)."""
    if isinstance(value, str | bytes) and ("_" in str(value) or not str(value).strip()):
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _plain(value: float) -> float | int:
    """2 rather than 2.0 (or np.float64(2.0)) in a message about whole numbers."""
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 1e15 else value
