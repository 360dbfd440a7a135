"""Fuzzing the CSV spot positions reader: v1 with and without a header and v2, with cells,
columns and rows changed, other encodings and line ends, files cut short and damaged bytes,
reads back exactly what the file says or is refused in one line."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from factories import POSITIONS_FILE
from fuzzing import (
    Damage,
    check_invariants,
    damages,
    expected_table,
    fuzz_settings,
    lattices,
    read_or_refused,
)
from tmescope.datasets.spaceranger_writer import write_positions_csv
from tmescope.io.positions import read_positions

SUBJECTS = {
    "v1": "positions v1 (no header)",
    "v1_header": "positions v1 (header)",
    "v2": "positions v2",
}
NUMERIC = ("in_tissue", "array_row", "array_col", "y", "x")  # file order: pxl_row is y
Rows = list[list[str]]


# --------------------------------------------------------------------------------------------
# Changes to the cells of a CSV: each says what a correct reader makes of the result
# (the spots it must return, or None: it must refuse).


@dataclass(frozen=True)
class Edit:
    name: str
    apply: Callable[[list[str] | None, Rows, pd.DataFrame], pd.DataFrame | None]

    def __repr__(self) -> str:
        return f"Edit({self.name})"


def _set_cell(column: str, value: str, row: int) -> Edit:
    """Put ``value`` in one numeric cell: not a valid value of that column, so refused."""

    def apply(header: list[str] | None, rows: Rows, spots: pd.DataFrame) -> None:
        rows[row % len(rows)][1 + NUMERIC.index(column)] = value
        return None

    return Edit(f"{column}[{row}] = {value!r}", apply)


def _huge_pixel(value: float, row: int) -> Edit:
    """A finite pixel coordinate far off any image: read as written (the image check refuses)."""

    def apply(header: list[str] | None, rows: Rows, spots: pd.DataFrame) -> pd.DataFrame:
        rows[row % len(rows)][5] = repr(value)
        spots.loc[row % len(rows), "x"] = value
        return spots

    return Edit(f"x[{row}] = {value!r}", apply)


def _duplicate_barcode(row: int) -> Edit:
    def apply(header: list[str] | None, rows: Rows, spots: pd.DataFrame) -> None:
        rows.append(list(rows[row % len(rows)]))
        rows[-1][2] = "77"  # another place on the array, the barcode repeated
        return None

    return Edit(f"barcode of row {row} twice", apply)


def _empty_barcode(row: int) -> Edit:
    def apply(header: list[str] | None, rows: Rows, spots: pd.DataFrame) -> None:
        rows[row % len(rows)][0] = ""
        return None

    return Edit(f"barcode of row {row} empty", apply)


def _quote_and_pad(header: list[str] | None, rows: Rows, spots: pd.DataFrame) -> pd.DataFrame:
    """R's write.csv quotes strings; hand edits leave spaces: the spots stay the same."""
    for row in rows:
        row[0] = f'"{row[0]}"'
        row[1:] = [f" {cell} " for cell in row[1:]]
    return spots


def _whole_numbers_as_floats(
    header: list[str] | None, rows: Rows, spots: pd.DataFrame
) -> pd.DataFrame:
    for row in rows:
        row[1:4] = [f"{int(cell)}.0" for cell in row[1:4]]
    return spots


def _drop_column(index: int) -> Edit:
    def apply(header: list[str] | None, rows: Rows, spots: pd.DataFrame) -> None:
        for row in [header, *rows] if header else rows:
            del row[index]
        return None

    return Edit(f"drop column {index}", apply)


def _extra_column(header: list[str] | None, rows: Rows, spots: pd.DataFrame) -> pd.DataFrame | None:
    """A column Space Ranger never wrote: ignored by name with a header, refused without one."""
    if header:
        header.append("extra")
    for row in rows:
        row.append("7")
    return spots if header else None


def _shuffle_and_rename(
    header: list[str] | None, rows: Rows, spots: pd.DataFrame
) -> pd.DataFrame | None:
    """Columns in another order, names in capitals: read by name when the file names them."""
    if not header:
        return spots
    order = [4, 2, 0, 5, 1, 3]
    header[:] = [header[i].upper() for i in order]
    rows[:] = [[row[i] for i in order] for row in rows]
    return spots


def _ragged_row(row: int, longer: bool) -> Edit:
    """One row a cell short (its last column empty) or a cell long (shifting nothing: refused)."""

    def apply(header: list[str] | None, rows: Rows, spots: pd.DataFrame) -> None:
        if longer:
            rows[row % len(rows)].append("5")
        else:
            rows[row % len(rows)].pop()
        return None

    return Edit(f"row {row} one cell {'long' if longer else 'short'}", apply)


row_numbers = st.integers(0, 40)
bad_values = st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "abc", "12.5e", "0x1F"])
edits = st.one_of(
    st.builds(_set_cell, st.sampled_from(NUMERIC), bad_values, row_numbers),
    st.builds(_set_cell, st.just("in_tissue"), st.sampled_from(["2", "-1", "0.5"]), row_numbers),
    st.builds(
        _set_cell,
        st.sampled_from(["array_row", "array_col"]),
        st.sampled_from(["1.5", "3e9", "-3000000000", "1e300"]),
        row_numbers,
    ),
    st.builds(_huge_pixel, st.sampled_from([1e15, -1e300, 1.7976931348623157e308]), row_numbers),
    st.builds(_duplicate_barcode, row_numbers),
    st.builds(_empty_barcode, row_numbers),
    st.builds(_drop_column, st.integers(0, 5)),
    st.builds(_ragged_row, row_numbers, st.booleans()),
    st.sampled_from(
        [
            Edit("quoted and padded", _quote_and_pad),
            Edit("whole numbers as floats", _whole_numbers_as_floats),
            Edit("extra column", _extra_column),
            Edit("columns shuffled, names in capitals", _shuffle_and_rename),
        ]
    ),
)

# Ways to write the same text: the spots must not change.
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])
line_ends = st.sampled_from(["\n", "\r\n"])


def render(header: list[str] | None, rows: Rows, *, line_end: str) -> str:
    lines = [",".join(header)] if header else []
    return "".join(line + line_end for line in lines + [",".join(row) for row in rows])


@fuzz_settings(light=15, full=300)
@given(
    fmt=st.sampled_from(sorted(SUBJECTS)),
    spots=lattices(),
    edit=st.none() | edits,
    encoding=encodings,
    line_end=line_ends,
    cut=st.none() | st.floats(0.0, 1.0),
)
def test_csv_positions(
    fmt: str,
    spots: pd.DataFrame,
    edit: Edit | None,
    encoding: str,
    line_end: str,
    cut: float | None,
) -> None:
    """Edited cells, other encodings and line ends, and files cut short (a copy that stopped)."""
    name, has_header = POSITIONS_FILE[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write_positions_csv(path, spots, header=has_header)
        lines = path.read_text().splitlines()
        header = lines[0].split(",") if has_header else None
        rows = [line.split(",") for line in lines[int(has_header) :]]
        expected = edit.apply(header, rows, spots.copy()) if edit else spots
        text = render(header, rows, line_end=line_end)
        # Whether the cut may have removed the line an edit made refusable: then either outcome
        # is right, as long as what is read is valid.
        either = False
        if cut is not None:
            whole = len(text)
            text = text[: int(whole * cut)]
            if not text.endswith(("\n", "\r")):  # a CR alone ends a line too
                expected = None  # ends mid-line: the last spot may be cut, so refused
            elif expected is not None:  # whole lines left: the spots they hold
                expected = expected.iloc[: len(text.splitlines()) - int(has_header)]
            elif edit is not None and len(text) < whole:
                either = True
        path.write_bytes(text.encode(encoding))
        if encoding == "utf-16":
            expected = None  # Space Ranger writes UTF-8: other encodings are refused
        table = read_or_refused(SUBJECTS[fmt], lambda: read_positions(path))
    if either and encoding != "utf-16":
        if table is not None:
            check_invariants(table)
    elif expected is None or len(expected) == 0:
        assert table is None, f"accepted a file it should refuse: {table}"
    else:
        assert table is not None, "refused a file that holds valid spots"
        pd.testing.assert_frame_equal(table, expected_table(expected), check_exact=True)


@fuzz_settings(light=12, full=250)
@given(fmt=st.sampled_from(sorted(SUBJECTS)), spots=lattices(), damage=damages)
def test_damaged_csv_positions(fmt: str, spots: pd.DataFrame, damage: Damage) -> None:
    """Bytes flipped, inserted, cut or replaced: what reads holds valid spots only."""
    name, has_header = POSITIONS_FILE[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write_positions_csv(path, spots, header=has_header)
        path.write_bytes(damage.apply(path.read_bytes()))
        table = read_or_refused(SUBJECTS[fmt], lambda: read_positions(path))
    if table is not None:
        check_invariants(table)
