"""The sample sheet: how a cohort enters, one CSV row per section.

::

    sample,path,image,patient,section
    A1,runs/A1/outs,slides/A1.tif,P01,1
    A2,runs/A2/outs,,P01,2
    B1,,,P02,1

Columns (the header's names are matched whatever their case and surrounding spaces):

* ``sample``: the sample id (required, one row per sample);
* ``path``: a Space Ranger folder (as ``tmescope embed PATH``), an AnnData ``.h5ad`` of spots,
  a HEST-1k folder (the row's sample is the HEST id) or a SpatialData zarr; or ``slide``: an
  H&E-only slide (as ``--slide``); exactly one of the two per row (so ``B1`` above is refused);
* ``image``: the full-resolution H&E of a ``path`` row (as ``--image``; empty: the hires PNG,
  or for an AnnData the image its ``uns`` or HEST's ``wsis/`` names);
* ``mpp``: µm per pixel of a ``slide`` or AnnData row whose metadata lacks it (as ``--mpp``);
* ``bin_size_um``: the bin size of a Visium HD ``path`` row (as ``--bin-size``; empty: 8 µm);
* every other column is metadata (``patient``, ``group``, …), kept per sample as text.

Relative paths are read from the sheet's folder. The whole sheet is checked before anything
uses it: a problem is a :class:`~tmescope.errors.SampleSheetError` naming the file, the row (as
a spreadsheet numbers it: the header is row 1) and the column, in one line. This module only
reads.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tmescope.errors import (
    InputNotFoundError,
    SampleSheetError,
    SpaceRangerLayoutError,
    TmescopeError,
)
from tmescope.io._keys import SampleSheetColumns as C
from tmescope.io._messages import first_line
from tmescope.io.input_kind import input_kind
from tmescope.io.layout import locate_spaceranger_files
from tmescope.io.slide_mpp import PLAUSIBLE_MPP

SampleIdCheck = Callable[[str], object]  # raises ValueError for an id that cannot be used


@dataclass(frozen=True)
class SheetRow:
    """One section of a sheet: its id, its inputs (absolute paths) and its metadata.

    Exactly one of ``path`` (a Space Ranger folder) and ``slide`` (an H&E-only slide) is set;
    ``row`` is where the sheet holds it, as a spreadsheet numbers rows (the header is row 1).
    """

    sample: str
    row: int
    path: Path | None = None
    slide: Path | None = None
    image: Path | None = None
    mpp: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)
    bin_size_um: float | None = None  # a Visium HD path row's (None: the default)


@dataclass(frozen=True)
class SampleSheet:
    """A sample sheet, checked whole: its file, its rows in order, its metadata columns."""

    path: Path
    rows: tuple[SheetRow, ...]
    metadata_columns: tuple[str, ...]

    @property
    def samples(self) -> list[str]:
        return [r.sample for r in self.rows]

    def metadata(self) -> dict[str, dict[str, str]]:
        """Each sample's metadata (column → value), by sample id."""
        return {r.sample: dict(r.metadata) for r in self.rows}


def read_samplesheet(
    path: Path | str, *, check_sample_id: SampleIdCheck | None = None
) -> SampleSheet:
    """Read and check a sample sheet (see the module docstring).

    ``check_sample_id`` may refuse ids its caller cannot use (the cohort store's rule, say): it
    raises ``ValueError``, and its message joins the row and column of the id.
    """
    given = Path(path).expanduser()
    sheet = Path(os.path.abspath(given))
    if not sheet.exists():
        raise InputNotFoundError(
            f"sample sheet {given} does not exist; expected a CSV file with a header row "
            "(sample, path or slide, image, metadata columns such as patient)"
        )
    if not sheet.is_file():
        raise SampleSheetError(
            f"sample sheet {given} is a folder; expected a CSV file with a header row (sample, "
            "path or slide, image, metadata columns such as patient)"
        )
    records = _records(sheet, given)
    header = _Header.parse(given, records[0] if records else [], records[1:])
    rows: list[SheetRow] = []
    first_row: dict[str, int] = {}
    for number, cells in enumerate(records[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line
        row = _parse_row(
            _Cells(given, sheet.parent, number, header, cells), check_sample_id, first_row
        )
        first_row[row.sample] = number
        rows.append(row)
    if not rows:
        raise SampleSheetError(
            f"sample sheet {given}, row 2, column {C.SAMPLE!r}: the sheet has a header but no "
            "samples; add one row per section below the header"
        )
    return SampleSheet(path=sheet, rows=tuple(rows), metadata_columns=header.metadata_names)


def _records(sheet: Path, given: Path) -> list[list[str]]:
    """Every record of the file (blank lines as empty ones, so that numbers stay the user's)."""
    try:
        text = sheet.read_bytes().decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as error:
        raise SampleSheetError(
            f"sample sheet {given} is not UTF-8 text (byte {error.start}); expected a CSV file: "
            "save the sheet as 'CSV UTF-8' (comma-delimited), not as a workbook"
        ) from error
    except OSError as error:
        raise SampleSheetError(f"sample sheet {given} cannot be read: {error}") from error
    reader = csv.reader(text.splitlines(keepends=True), strict=True)  # a lost quote is an error
    records: list[list[str]] = []
    try:
        for cells in reader:
            records.append(cells)
    except csv.Error as error:
        raise SampleSheetError(
            f"sample sheet {given}, row {len(records) + 1}: not valid CSV ({error}); check its "
            "quotes, and save it as comma-delimited CSV"
        ) from error
    return records


@dataclass(frozen=True)
class _Header:
    """Where each known column and each metadata column sits."""

    known: Mapping[str, int]  # lower-case known name → index
    metadata: tuple[tuple[str, int], ...]  # metadata name → index, in the sheet's order
    width: int

    @property
    def metadata_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.metadata)

    @classmethod
    def parse(cls, given: Path, names: Sequence[str], body: Sequence[Sequence[str]]) -> _Header:
        where = f"sample sheet {given}, row 1 (the header)"
        expected = (
            "expected the columns sample, and path (a Space Ranger folder) or slide (an "
            "H&E-only slide); image, mpp and metadata columns such as patient are optional"
        )
        stripped = [n.strip() for n in names]
        if not any(stripped):
            raise SampleSheetError(f"{where}, column {C.SAMPLE!r}: no header; {expected}")
        if len(stripped) == 1 and any(sep in stripped[0] for sep in ";\t"):
            raise SampleSheetError(
                f"{where}, column {stripped[0]!r}: one column only, split by ';' or tabs; "
                "expected commas between columns: save the sheet as comma-delimited CSV"
            )
        known: dict[str, int] = {}
        metadata: list[tuple[str, int]] = []
        seen: set[str] = set()
        for index, name in enumerate(stripped):
            if not name:
                if any(index < len(r) and r[index].strip() for r in body):
                    raise SampleSheetError(
                        f"{where}, column {index + 1}: the column has values but no name; "
                        "name it in the header (it is then kept as metadata) or delete it"
                    )
                continue  # an empty column a spreadsheet left behind
            key = name.lower() if name.lower() in C.ALL else name
            if key in seen:
                raise SampleSheetError(
                    f"{where}, column {name!r}: the header names it twice; rename or delete "
                    "one of the two"
                )
            seen.add(key)
            if key in C.ALL:
                known[key] = index
            else:
                metadata.append((name, index))
        missing = [c for c in (C.SAMPLE,) if c not in known]
        if not missing and C.PATH not in known and C.SLIDE not in known:
            missing = [C.PATH]
        if missing:
            found = ", ".join(repr(n) for n in stripped if n)
            raise SampleSheetError(
                f"{where}, column {missing[0]!r}: no such column (found {found}); {expected}. "
                "Rename the columns in the header"
            )
        return cls(known=known, metadata=tuple(metadata), width=len(stripped))


@dataclass(frozen=True)
class _Cells:
    """One record of the sheet, with what its messages need to say where it is."""

    given: Path  # the sheet as the user named it
    folder: Path  # where relative paths start
    number: int
    header: _Header
    cells: Sequence[str]

    def get(self, column: str) -> str:
        index = self.header.known.get(column)
        return self.cells[index].strip() if index is not None and index < len(self.cells) else ""

    def error(self, column: str, message: str, *, sample: str = "") -> SampleSheetError:
        which = f" (sample {sample!r})" if sample else ""
        return SampleSheetError(
            f"sample sheet {self.given}, row {self.number}{which}, column {column!r}: {message}"
        )

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return Path(os.path.abspath(path if path.is_absolute() else self.folder / path))

    def relative_hint(self, value: str) -> str:
        if Path(value).expanduser().is_absolute():
            return ""
        return f" (relative paths start at the sheet's folder, {self.folder})"


def _parse_row(
    cells: _Cells, check_sample_id: SampleIdCheck | None, first_row: Mapping[str, int]
) -> SheetRow:
    extra = [c for c in cells.cells[cells.header.width :] if c.strip()]
    if extra:
        raise cells.error(
            C.SAMPLE,
            f"the row has {len(cells.cells)} cells but the header {cells.header.width} columns; "
            'a value holding a comma needs quotes ("a, b")',
        )
    sample = cells.get(C.SAMPLE)
    if not sample:
        raise cells.error(C.SAMPLE, "empty; give every row its sample id")
    if check_sample_id is not None:
        try:
            check_sample_id(sample)
        except (TmescopeError, ValueError) as error:
            raise cells.error(C.SAMPLE, first_line(error), sample=sample) from error
    if sample in first_row:
        raise cells.error(
            C.SAMPLE,
            f"sample {sample!r} is already on row {first_row[sample]}; each sample gets one row "
            "(two sections of one patient are two samples with the same patient)",
            sample=sample,
        )
    path, slide = cells.get(C.PATH), cells.get(C.SLIDE)
    if path and slide:
        raise cells.error(
            C.SLIDE,
            "the row gives both path and slide; a row is a Space Ranger folder (path) or an "
            "H&E-only slide (slide): empty one of the two",
            sample=sample,
        )
    if not path and not slide:
        column = C.PATH if C.PATH in cells.header.known else C.SLIDE
        raise cells.error(
            column,
            "empty; give the Space Ranger folder (path) or the H&E-only slide (slide) of the "
            "sample",
            sample=sample,
        )
    metadata = {
        name: cells.cells[i].strip() if i < len(cells.cells) else ""
        for name, i in cells.header.metadata
    }
    if path:
        measured = cells.resolve(path)
        if input_kind(measured) == "spaceranger":
            folder, image = _space_ranger(cells, path, sample), _image(cells, sample)
            _refuse_mpp(cells, sample)
            return SheetRow(
                sample=sample, row=cells.number, path=folder, image=image, metadata=metadata,
                bin_size_um=_bin_size(cells, folder, sample),
            )  # fmt: skip
        if not measured.exists():
            raise cells.error(
                C.PATH, f"{measured} does not exist{cells.relative_hint(path)}", sample=sample
            )
        # An AnnData, HEST-1k or SpatialData input: its reader checks the rest when embedding.
        _bin_size(cells, None, sample)
        return SheetRow(
            sample=sample, row=cells.number, path=measured, image=_image(cells, sample),
            mpp=_mpp(cells, sample), metadata=metadata,
        )  # fmt: skip
    stray = cells.get(C.IMAGE)
    if stray:
        raise cells.error(
            C.IMAGE,
            f"{stray!r} given for a slide row; a slide is its own image: empty the image cell "
            "(or give the Space Ranger folder as path instead of slide)",
            sample=sample,
        )
    _bin_size(cells, None, sample)
    return SheetRow(
        sample=sample, row=cells.number, slide=_slide(cells, slide, sample),
        mpp=_mpp(cells, sample), metadata=metadata,
    )  # fmt: skip


def _space_ranger(cells: _Cells, value: str, sample: str) -> Path:
    folder = cells.resolve(value)
    try:
        locate_spaceranger_files(folder)
    except (InputNotFoundError, SpaceRangerLayoutError) as error:
        raise cells.error(
            C.PATH, f"{first_line(error)}{cells.relative_hint(value)}", sample=sample
        ) from error
    return folder


def _image(cells: _Cells, sample: str) -> Path | None:
    value = cells.get(C.IMAGE)
    if not value:
        return None  # the hires PNG, as `embed PATH` without --image
    image = cells.resolve(value)
    if not image.is_file():
        found = "is a folder" if image.is_dir() else "does not exist"
        raise cells.error(
            C.IMAGE,
            f"image {image} {found}; expected the full-resolution H&E given to Space Ranger "
            f"(or an empty cell for the hires PNG){cells.relative_hint(value)}",
            sample=sample,
        )
    return image


def _slide(cells: _Cells, value: str, sample: str) -> Path:
    slide = cells.resolve(value)
    if not slide.is_file():
        found = "is a folder" if slide.is_dir() else "does not exist"
        raise cells.error(
            C.SLIDE,
            f"slide {slide} {found}; expected an H&E slide file (SVS, TIFF, OME-TIFF, NDPI, …)"
            f"{cells.relative_hint(value)}",
            sample=sample,
        )
    return slide


def _mpp(cells: _Cells, sample: str) -> float | None:
    value = cells.get(C.MPP)
    if not value:
        return None  # the slide's own metadata
    low, high = PLAUSIBLE_MPP
    try:
        mpp = float(value)
    except ValueError:
        mpp = math.nan
    if not (math.isfinite(mpp) and low <= mpp <= high):
        raise cells.error(
            C.MPP,
            f"{value!r} is not a slide's µm per pixel; expected a number from {low:g} to "
            f"{high:g} (about 0.25 at 40×, 0.5 at 20×), or an empty cell to use the slide's "
            "metadata",
            sample=sample,
        )
    return mpp


def _refuse_mpp(cells: _Cells, sample: str) -> None:
    value = cells.get(C.MPP)
    if value:
        raise cells.error(
            C.MPP,
            f"{value!r} given for a Space Ranger sample; its µm per pixel comes from its image "
            "metadata or its spot pitch: empty the cell (mpp is for slide rows)",
            sample=sample,
        )


def _bin_size(cells: _Cells, folder: Path | None, sample: str) -> float | None:
    """The row's Visium HD bin size, refused (as ``read_visium`` refuses it) where the run
    ``folder`` cannot give it; ``folder`` None: the row is no Space Ranger run."""
    value = cells.get(C.BIN_SIZE)
    if not value:
        return None  # 8 µm, as `embed PATH` without --bin-size
    if folder is None:
        raise cells.error(
            C.BIN_SIZE,
            f"{value!r} given for a row that is not a Space Ranger run; a bin size picks a "
            "Visium HD run's bins: empty the cell",
            sample=sample,
        )
    try:
        size = float(value)
    except ValueError:
        raise cells.error(
            C.BIN_SIZE,
            f"{value!r} is not a bin size; expected µm (2, 8 or 16 as Space Ranger writes them, "
            "another multiple of 2 summed from the 2 µm bins), or an empty cell for 8 µm",
            sample=sample,
        ) from None
    try:
        locate_spaceranger_files(folder, bin_size_um=size)
    except SpaceRangerLayoutError as error:
        raise cells.error(C.BIN_SIZE, first_line(error), sample=sample) from error
    return size
