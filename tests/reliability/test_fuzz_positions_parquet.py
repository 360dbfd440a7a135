"""Fuzzing the Visium HD positions reader (``tissue_positions.parquet``): typed columns, so the
damage is to types as much as to values — NaN, infinities, fractional grid coordinates, missing
or binary barcodes, repeated rows, missing and extra columns, nullable and text columns, an empty
table, damaged bytes, and a parquet file named ``.csv`` (read by its content)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import (
    Damage,
    check_invariants,
    damages,
    expected_table,
    fuzz_settings,
    lattices,
    read_or_refused,
    sometimes,
)
from tmescope.datasets.spaceranger_writer import write_positions_parquet
from tmescope.io.positions import read_positions

SUBJECT = "positions HD parquet"


def _parquet_edits(spots: pd.DataFrame, choice: int, row: int) -> tuple[pd.DataFrame, bool]:
    """A Space Ranger parquet table changed one way; ``True`` when it still holds ``spots``."""
    table = pd.DataFrame(
        {
            "barcode": spots["barcode"],
            "in_tissue": spots["in_tissue"].astype(int),
            "array_row": spots["array_row"],
            "array_col": spots["array_col"],
            "pxl_row_in_fullres": spots["y"],
            "pxl_col_in_fullres": spots["x"],
        }
    )
    row %= len(table)
    same = False
    if choice == 0:
        table.loc[row, "pxl_col_in_fullres"] = np.nan
    elif choice == 1:
        table.loc[row, "pxl_row_in_fullres"] = -np.inf
    elif choice == 2:
        table["array_row"] = table["array_row"].astype(float)
        table.loc[row, "array_row"] = 2.5
    elif choice == 3:
        table.loc[row, "barcode"] = None
    elif choice == 4:
        table = pd.concat([table, table.iloc[[row]]], ignore_index=True)
    elif choice == 5:
        table = table.drop(columns=table.columns[row % 6])
    elif choice == 6:
        table["extra"], same = 1.5, True
    elif choice == 7:
        table["barcode"], same = table["barcode"].map(str.encode), True  # binary barcodes
    elif choice == 8:
        table["barcode"], same = table["barcode"].astype("category"), True
    elif choice == 9:
        table["array_col"] = table["array_col"].astype("Int64")
        table.loc[row, "array_col"] = pd.NA
    elif choice == 10:
        table["in_tissue"] = table["in_tissue"].astype(str)
        table.loc[row, "in_tissue"] = "yes"
    elif choice == 11:
        table, same = table.astype(str), True  # every column as text
    elif choice == 12:
        table = table.iloc[:0]
    else:
        same = True
    return table, same


@fuzz_settings(light=10, full=250)
@given(
    spots=lattices(),
    choice=st.integers(0, 13),
    row=st.integers(0, 40),
    damage=sometimes(damages),
    name=st.sampled_from(["tissue_positions.parquet", "tissue_positions.csv"]),
)
def test_hd_parquet_positions(
    spots: pd.DataFrame, choice: int, row: int, damage: Damage | None, name: str
) -> None:
    """Wrong types, missing and extra columns, NaN, duplicates, damaged bytes, a parquet file
    named .csv (read by its content)."""
    table, same = _parquet_edits(spots, choice, row)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if choice == 13:  # unchanged, through the project's own writer
            write_positions_parquet(path, spots)
        else:
            table.to_parquet(path, index=False)
        if damage is not None:
            path.write_bytes(damage.apply(path.read_bytes()))
        result = read_or_refused(SUBJECT, lambda: read_positions(path))
    if result is not None:
        check_invariants(result)
    if damage is None:
        if same:
            assert result is not None, "refused a valid positions table"
            pd.testing.assert_frame_equal(result, expected_table(spots), check_exact=True)
        else:
            assert result is None, f"accepted a table it should refuse: {result}"
