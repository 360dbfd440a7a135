"""Spot positions: every Space Ranger flavour reads into the same canonical table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import POSITIONS_FILE, hex_lattice, write_positions
from fuzzing import expected_table
from tmescope.datasets.spaceranger_writer import write_positions_csv, write_positions_parquet
from tmescope.io.positions import SPOT_COLUMNS, read_positions


def assert_same_spots(read: pd.DataFrame, spots: pd.DataFrame) -> None:
    assert tuple(read.columns) == SPOT_COLUMNS
    pd.testing.assert_frame_equal(read, expected_table(spots), check_exact=True)


@pytest.mark.parametrize("fmt", sorted(POSITIONS_FILE))
def test_every_csv_flavour(tmp_path: Path, fmt: str) -> None:
    """v1 (list, no header), v1 with a header, v2 (header) and v2 without: the header is sniffed."""
    spots = hex_lattice(mpp=0.73, rotation_deg=1.5)
    path = write_positions(tmp_path, spots, fmt=fmt)
    assert path.name == POSITIONS_FILE[fmt][0]
    assert_same_spots(read_positions(path), spots)


def test_visium_hd_parquet(tmp_path: Path) -> None:
    spots = hex_lattice(3, 4)
    write_positions_parquet(tmp_path / "tissue_positions.parquet", spots)
    assert_same_spots(read_positions(tmp_path / "tissue_positions.parquet"), spots)


def test_x_is_the_pixel_column_and_y_the_pixel_row(tmp_path: Path) -> None:
    """Space Ranger writes pxl_row (y) before pxl_col (x); x, y must not come out swapped."""
    path = tmp_path / "tissue_positions_list.csv"
    path.write_text(
        "AAACAAGTATCTCCCA-1,1,50,102,8513,9811\nAAACACCAATAACTGC-1,0,59,19,9605.5,4104.25\n"
    )
    table = read_positions(path)
    assert table["x"].tolist() == [9811.0, 4104.25]
    assert table["y"].tolist() == [8513.0, 9605.5]
    assert table["in_tissue"].tolist() == [True, False]
    assert table["array_row"].tolist() == [50, 59]
    assert table["array_col"].tolist() == [102, 19]


def test_header_in_another_order_is_read_by_name(tmp_path: Path) -> None:
    path = tmp_path / "tissue_positions.csv"
    path.write_text(
        "pxl_col_in_fullres,barcode,array_col,array_row,in_tissue,pxl_row_in_fullres\n"
        "11.5,B-1,3,1,1,22.5\n"
    )
    table = read_positions(path)
    assert table.iloc[0].to_dict() == {
        "barcode": "B-1",
        "in_tissue": True,
        "array_row": 1,
        "array_col": 3,
        "x": 11.5,
        "y": 22.5,
    }


def test_byte_order_mark_and_windows_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "tissue_positions.csv"
    text = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\r\nA-1,0,0,0,5,6\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    table = read_positions(path)
    assert table["barcode"].tolist() == ["A-1"]
    assert (table["x"].iloc[0], table["y"].iloc[0]) == (6.0, 5.0)


def test_numeric_looking_barcodes_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "tissue_positions.csv"
    path.write_text(
        "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\n"
        "000123,1,0,0,5,6\n"
    )
    assert read_positions(path)["barcode"].tolist() == ["000123"]


# --------------------------------------------------------------------------------------------
# Property: any lattice, offset and scale written by Space Ranger's writer reads back exactly

coordinates = st.floats(min_value=-500.0, max_value=60_000.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(
    n_rows=st.integers(1, 6),
    n_per_row=st.integers(1, 6),
    first_row=st.integers(0, 70),
    mpp=st.floats(0.1, 5.0),
    origin=st.tuples(coordinates, coordinates),
    rotation=st.floats(-180.0, 180.0),
    fmt=st.sampled_from(sorted(POSITIONS_FILE)),
    in_tissue_seed=st.integers(0, 2**16),
)
def test_positions_round_trip_exactly(
    tmp_path_factory: pytest.TempPathFactory,
    n_rows: int,
    n_per_row: int,
    first_row: int,
    mpp: float,
    origin: tuple[float, float],
    rotation: float,
    fmt: str,
    in_tissue_seed: int,
) -> None:
    spots = hex_lattice(
        n_rows, n_per_row, mpp=mpp, origin_px=origin, rotation_deg=rotation, first_row=first_row
    )
    spots["in_tissue"] = np.random.default_rng(in_tissue_seed).random(len(spots)) < 0.5
    folder = tmp_path_factory.mktemp("positions")
    path = write_positions(folder, spots, fmt=fmt)
    assert_same_spots(read_positions(path), spots)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.integers(0, 77), st.integers(0, 127), coordinates, coordinates, st.booleans()),
        min_size=1,
        max_size=30,
        unique_by=lambda v: (v[0], v[1]),
    ),
    header=st.booleans(),
)
def test_any_table_round_trips(
    tmp_path_factory: pytest.TempPathFactory, values: list[tuple], header: bool
) -> None:
    spots = pd.DataFrame(
        [(f"BC{i:05d}-1", t, r, c, x, y) for i, (r, c, x, y, t) in enumerate(values)],
        columns=["barcode", "in_tissue", "array_row", "array_col", "x", "y"],
    )
    path = tmp_path_factory.mktemp("positions") / "tissue_positions.csv"
    write_positions_csv(path, spots, header=header)
    assert_same_spots(read_positions(path), spots)
