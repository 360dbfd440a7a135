"""The synthetic cohort's sample sheet: ``samplesheet.csv`` at its root, as ``embed
--samplesheet`` reads it.

::

    sample,path,image,patient,section
    synth_00,synth_00,synth_00/synth_00_he.tif,patient_00,1
    synth_01,synth_01,synth_01/synth_01_he.tif,patient_00,2
    synth_02,synth_02,synth_02/synth_02_he.tif,patient_01,1

Paths are relative to the sheet's folder, so the cohort can be moved whole. Two consecutive
samples are two sections of one patient (an odd last sample is a patient of its own), so that
the cohort has the shape of a real one for grouped cross-validation and patient-level
comparisons. The grouping is a label only: every section is drawn from its own seed, with no
patient effect in the synthetic biology, so two sections of one patient are no more alike than
any two sections. A cohort written with immune phenotypes is the exception: a patient's
phenotype (where its T cells sit) is drawn into both of its sections, and the sheet says which
(``phenotype``, and ``group`` as the default grouping of ``tmescope compare``).
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from tmescope.io._keys import SampleSheetColumns as C

SAMPLESHEET = "samplesheet.csv"
PATIENT, SECTION = "patient", "section"
PHENOTYPE, GROUP = "phenotype", "group"  # with planted immune phenotypes
SECTIONS_PER_PATIENT = 2
COLUMNS = (C.SAMPLE, C.PATH, C.IMAGE, PATIENT, SECTION)


def patient_of(
    index: int, *, n_samples: int, sections: int = SECTIONS_PER_PATIENT
) -> tuple[str, int]:
    """The patient of sample ``index`` of ``n_samples`` and its section number (from 1), with
    ``sections`` consecutive samples per patient."""
    n_patients = -(-n_samples // sections)
    digits = max(2, len(str(n_patients - 1)))
    patient, section = divmod(index, sections)
    return f"patient_{patient:0{digits}d}", section + 1


def write_cohort_sheet(
    out: Path,
    folders: Sequence[Path],
    images: Sequence[Path],
    *,
    phenotypes: Sequence[str | None] | None = None,
    sections: int = SECTIONS_PER_PATIENT,
) -> Path:
    """Write ``out/samplesheet.csv`` for the sample ``folders`` (each under ``out``) and their
    full-resolution ``images``, whole: a reader never sees half a sheet. With ``phenotypes``
    (one per sample: its planted immune phenotype), the sheet gains ``phenotype`` (the truth)
    and ``group`` (the same, the column a comparison groups by unless told otherwise).
    ``sections`` consecutive samples are one patient's."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS + ((PHENOTYPE, GROUP) if phenotypes is not None else ()))
    for index, (folder, image) in enumerate(zip(folders, images, strict=True)):
        patient, section = patient_of(index, n_samples=len(folders), sections=sections)
        row = [
            folder.name,
            folder.relative_to(out).as_posix(),
            image.relative_to(out).as_posix(),
            patient,
            section,
        ]
        if phenotypes is not None:
            row += [phenotypes[index] or "", phenotypes[index] or ""]
        writer.writerow(row)
    target = out / SAMPLESHEET
    partial = out / f".{SAMPLESHEET}.{uuid.uuid4().hex[:8]}.partial"
    try:
        partial.write_text(buffer.getvalue(), encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
