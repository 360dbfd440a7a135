"""A sample sheet as embedding inputs: a row per input, its metadata with it (even to Dask)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tmescope.errors import InvalidParameterError, SampleSheetError
from tmescope.jobs.embed import SampleInput, SlideInput
from tmescope.workflows import fullres_image_of, read_samplesheet, samplesheet_inputs


def test_rows_become_inputs_carrying_their_metadata(
    tmp_path: Path, synth_cohort: list[Path]
) -> None:
    run = synth_cohort[0]
    slide = fullres_image_of(run)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "sample,path,slide,image,mpp,patient\n"
        f"A,{run},,{slide},,P1\n"
        f"B,{run},,,,P1\n"
        f"S,,{slide},,0.25,P2\n"
    )
    items = samplesheet_inputs(sheet)
    assert items == [
        SampleInput(run, image=slide, sample_id="A", metadata={"patient": "P1"}),
        SampleInput(run, image=None, sample_id="B", metadata={"patient": "P1"}),
        SlideInput(slide, sample_id="S", mpp=0.25, metadata={"patient": "P2"}),
    ]
    assert samplesheet_inputs(read_samplesheet(sheet)) == items
    # --scheduler sends each input to a worker: the metadata go with it.
    assert pickle.loads(pickle.dumps(items)) == items


def test_the_store_rule_for_ids_applies_before_anything_is_built(
    tmp_path: Path, synth_cohort: list[Path]
) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"sample,path\n{'x' * 129},{synth_cohort[0]}\n")
    with pytest.raises(SampleSheetError, match=r"row 2 .* column 'sample': sample id"):
        read_samplesheet(sheet)


def test_metadata_the_store_cannot_keep_are_refused_at_once(synth_cohort: list[Path]) -> None:
    with pytest.raises(InvalidParameterError, match="text values"):
        SampleInput(synth_cohort[0], metadata={"patient": 7})  # type: ignore[dict-item]
    with pytest.raises(InvalidParameterError, match="text values"):
        SlideInput(fullres_image_of(synth_cohort[0]), metadata={"": "x"})
