"""The sample sheet: columns, relative paths, metadata, and one line for every bad sheet."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import SyntheticVisium
from tmescope.errors import InputNotFoundError, SampleSheetError, TmescopeError
from tmescope.io.samplesheet import SampleSheet, read_samplesheet


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, visium_run: SyntheticVisium) -> Path:
    """A folder holding two runs, a slide and a plain folder, as a sheet beside them names them
    (links to the session's synthetic run: nothing here writes into it)."""
    from factories import add_fullres_tiff, write_visium, write_visium_hd

    root = tmp_path_factory.mktemp("sheet")
    (root / "runs").mkdir()
    (root / "runs" / "A").symlink_to(visium_run.path)
    (root / "runs" / "HD").symlink_to(write_visium_hd(root / "hd", bin_sizes=(2, 8)).path)
    run = write_visium(root / "other")
    (root / "runs" / "B").symlink_to(run.path)
    (root / "slides").mkdir()
    (root / "slides" / "s1.tif").symlink_to(add_fullres_tiff(run))
    (root / "plain").mkdir()
    return root


def write(folder: Path, text: str, name: str = "sheet.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_paths_and_metadata(folder: Path, visium_run: SyntheticVisium) -> None:
    text = (
        "\ufeffSample , PATH,slide,image,mpp,patient,group\n"  # Excel's BOM, any case, spaces
        "A,runs/A,,,,P01,tumour\n"
        "\n"  # a blank line: skipped, but counted as a row
        f"B,{folder / 'runs' / 'B'},,slides/s1.tif,, P02 ,\n"
        "S1,,slides/s1.tif,,0.25,P02,archive\n"
    )
    sheet = read_samplesheet(write(folder, text))
    assert isinstance(sheet, SampleSheet)
    assert sheet.path == folder / "sheet.csv"
    assert sheet.samples == ["A", "B", "S1"]
    assert [r.row for r in sheet.rows] == [2, 4, 5]
    a, b, s1 = sheet.rows
    assert a.path == folder / "runs" / "A" and a.image is None and a.slide is None
    assert b.path == folder / "runs" / "B" and b.image == folder / "slides" / "s1.tif"
    assert s1.slide == folder / "slides" / "s1.tif" and s1.path is None and s1.mpp == 0.25
    assert a.mpp is None and b.mpp is None
    assert sheet.metadata_columns == ("patient", "group")
    assert sheet.metadata() == {
        "A": {"patient": "P01", "group": "tumour"},
        "B": {"patient": "P02", "group": ""},  # stripped; an empty cell stays empty
        "S1": {"patient": "P02", "group": "archive"},
    }


def test_relative_paths_start_at_the_sheets_folder(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = folder / "sheets"
    sub.mkdir(exist_ok=True)
    path = write(sub, "sample,path\nA,../runs/A\n")
    monkeypatch.chdir(folder / "plain")  # not where the sheet is
    (row,) = read_samplesheet(Path("..") / "sheets" / path.name).rows
    assert row.path == folder / "runs" / "A"
    assert row.metadata == {}


def test_the_callers_sample_id_rule_applies(folder: Path) -> None:
    def no_spaces(sample_id: str) -> None:
        if " " in sample_id:
            raise ValueError(f"sample id {sample_id!r} holds a space; use _ instead")

    path = write(folder, "sample,path\nA,runs/A\nA 2,runs/B\n")
    with pytest.raises(SampleSheetError) as error:
        read_samplesheet(path, check_sample_id=no_spaces)
    message = str(error.value)
    assert "row 3 (sample 'A 2'), column 'sample'" in message and "use _ instead" in message
    assert read_samplesheet(path).samples == ["A", "A 2"]  # no rule given: none applied


BAD_SHEETS = [
    # (sheet text, fragments of the one-line message)
    ("sample,path,image\nA,runs/A,\nA,runs/B,\n", ["row 3 (sample 'A')", "column 'sample'",
                                                    "already on row 2"]),
    ("sample,path\nA,nowhere\n", ["row 2", "column 'path'", "does not exist",
                                  "relative paths start at the sheet's folder"]),
    ("sample,path\nA,plain\n", ["row 2", "column 'path'", "no spatial/ folder"]),
    ("sample,path\nA,slides/s1.tif\n", ["row 2", "column 'path'", "is a file"]),
    ("name,folder\nA,runs/A\n", ["row 1 (the header)", "column 'sample'", "found 'name', "
                                 "'folder'", "Rename the columns"]),
    ("sample,image,patient\nA,x.tif,P1\n", ["row 1", "column 'path'", "no such column"]),
    ("sample,path\n,runs/A\n", ["row 2", "column 'sample'", "empty"]),
    ("sample,path,slide\nA,runs/A,slides/s1.tif\n", ["row 2", "column 'slide'", "both"]),
    ("sample,path,slide\nA,,\n", ["row 2", "column 'path'", "empty"]),
    ("sample,slide\nA,\n", ["row 2", "column 'slide'", "empty"]),
    ("sample,path,image\nA,runs/A,none.tif\n", ["row 2", "column 'image'", "does not exist"]),
    ("sample,slide,image\nA,slides/s1.tif,x.tif\n", ["row 2", "column 'image'", "slide row"]),
    ("sample,slide\nA,slides/none.tif\n", ["row 2", "column 'slide'", "does not exist"]),
    ("sample,slide\nA,slides\n", ["row 2", "column 'slide'", "is a folder"]),
    ("sample,slide,mpp\nA,slides/s1.tif,abc\n", ["row 2", "column 'mpp'", "0.05 to 50"]),
    ("sample,slide,mpp\nA,slides/s1.tif,0\n", ["row 2", "column 'mpp'", "'0'"]),
    ("sample,slide,mpp\nA,slides/s1.tif,nan\n", ["row 2", "column 'mpp'", "'nan'"]),
    ("sample,path,mpp\nA,runs/A,0.5\n", ["row 2", "column 'mpp'", "slide rows"]),
    ("sample,path,bin_size_um\nA,runs/A,16\n", ["row 2 (sample 'A')", "column 'bin_size_um'",
                                                "standard Visium run"]),
    ("sample,path,bin_size_um\nH,runs/HD,5\n", ["column 'bin_size_um'", "no 5 µm bins",
                                                "available bin sizes: 2 µm, 8 µm"]),
    ("sample,path,bin_size_um\nH,runs/HD,15.5\n", ["column 'bin_size_um'", "whole multiples"]),
    ("sample,path,bin_size_um\nH,runs/HD,big\n", ["column 'bin_size_um'", "'big' is not a bin"]),
    ("sample,slide,bin_size_um\nS,slides/s1.tif,16\n", ["column 'bin_size_um'",
                                                        "not a Space Ranger run"]),
    ("sample,path\n", ["row 2", "no samples"]),
    ("", ["row 1", "no header"]),
    ("sample;path\nA;runs/A\n", ["row 1", "comma-delimited"]),
    ("sample,path,Patient,Patient\nA,runs/A,P,P\n", ["row 1", "column 'Patient'", "twice"]),
    ("sample,path,PATH\nA,runs/A,runs/A\n", ["row 1", "column 'PATH'", "twice"]),
    ("sample,path,\nA,runs/A,P1\n", ["row 1", "column 3", "no name"]),
    ("sample,path\nA,runs/A,P1\n", ["row 2", "3 cells but the header 2", "quotes"]),
    ('sample,path\nA,"runs/A\n', ["row 2", "not valid CSV"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "fragments"), BAD_SHEETS)
def test_a_bad_sheet_is_one_line_naming_file_row_and_column(
    folder: Path, text: str, fragments: list[str]
) -> None:
    path = write(folder, text, name="bad.csv")
    with pytest.raises(SampleSheetError) as error:
        read_samplesheet(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"sample sheet {path}")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_visium_hd_row_gives_its_bin_size(folder: Path) -> None:
    """``bin_size_um`` is a column of its own, as ``--bin-size``: not metadata; empty: 8 µm."""
    text = "sample,path,Bin_Size_um,patient\nH16,runs/HD,16,P1\nH8,runs/HD,,P1\nA,runs/A,,P2\n"
    sheet = read_samplesheet(write(folder, text))
    assert [r.bin_size_um for r in sheet.rows] == [16.0, None, None]
    assert sheet.metadata_columns == ("patient",)


def test_empty_trailing_columns_and_short_rows_are_fine(folder: Path) -> None:
    # Spreadsheets leave nameless empty columns; a row may stop before its empty cells.
    sheet = read_samplesheet(write(folder, "sample,path,patient,,\nA,runs/A,P1,,\nB,runs/B\n"))
    assert sheet.metadata() == {"A": {"patient": "P1"}, "B": {"patient": ""}}


def test_a_sheet_that_is_no_text_or_no_file(folder: Path) -> None:
    binary = folder / "book.xlsx"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00")
    with pytest.raises(SampleSheetError, match=r"not UTF-8 text.*CSV UTF-8"):
        read_samplesheet(binary)
    with pytest.raises(InputNotFoundError, match=r"sample sheet .*missing\.csv does not exist"):
        read_samplesheet(folder / "missing.csv")
    with pytest.raises(SampleSheetError, match="is a folder"):
        read_samplesheet(folder / "plain")


def test_the_error_is_a_tmescope_error_and_a_value_error() -> None:
    assert issubclass(SampleSheetError, TmescopeError)
    assert issubclass(SampleSheetError, ValueError)
