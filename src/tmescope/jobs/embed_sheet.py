"""A sample sheet as the cohort to embed (``tmescope embed --samplesheet``).

The sheet is read and checked whole by :mod:`tmescope.io.samplesheet`, with the cohort store's
rule for sample ids (io never imports the store, so the rule is handed to it here): a bad sheet
is refused before any encoder is built or store touched. Each row becomes a
:class:`~tmescope.jobs.embed.SampleInput` (``path``: a Space Ranger folder),
:class:`~tmescope.jobs.embed.TableInput` (``path``: an AnnData, HEST-1k or SpatialData input) or
:class:`~tmescope.jobs.embed.SlideInput` (``slide``) carrying its metadata columns, which the
embedding keeps in the store (``extra["metadata"]``, ``SampleRecord.metadata``).
"""

from __future__ import annotations

from pathlib import Path

from tmescope.io.samplesheet import SampleSheet, SheetRow
from tmescope.io.samplesheet import read_samplesheet as _read_sheet
from tmescope.jobs.embed import EmbedInput, SlideInput, embed_input
from tmescope.store.schema import validate_sample_id


def read_samplesheet(path: Path | str) -> SampleSheet:
    """A sample sheet, checked whole: its columns, every row's inputs, and sample ids the store
    can hold (see ``docs/inputs.md``); a :class:`~tmescope.errors.SampleSheetError` names the
    file, row and column of the first problem."""
    return _read_sheet(path, check_sample_id=validate_sample_id)


def samplesheet_inputs(sheet: SampleSheet | Path | str) -> list[EmbedInput]:
    """The rows of a sample sheet (read with :func:`read_samplesheet` when given as a path) as
    embedding inputs for :func:`~tmescope.jobs.embed.embed_samples`, in the sheet's order."""
    if not isinstance(sheet, SampleSheet):
        sheet = read_samplesheet(sheet)
    return [_input(row) for row in sheet.rows]


def _input(row: SheetRow) -> EmbedInput:
    metadata = dict(row.metadata)
    if row.slide is not None:
        return SlideInput(row.slide, sample_id=row.sample, mpp=row.mpp, metadata=metadata)
    assert row.path is not None  # the reader gives every row a path or a slide
    return embed_input(
        row.path, image=row.image, sample_id=row.sample, mpp=row.mpp, metadata=metadata,
        bin_size_um=row.bin_size_um,
    )  # fmt: skip
