"""``tmescope embed --bin-size`` and a sample sheet's ``bin_size_um``: a Visium HD run embedded
at the bin size asked for (16 µm from a run that wrote only 2 and 8 µm: summed), and every input
or combination it does not fit refused in one line, before anything is written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hd_window import HDWindow, write_hd_window
from tmescope.store import CohortStore
from tmescope.workflows import fullres_image_of

# The embed CLI's in-process runner and its one-line check live beside it (tests/ alone is on
# the path, as for tests/store's helpers).
sys.path.insert(0, str(Path(__file__).parent))
from test_embed_cli import ENCODER, assert_one_line_error, call_cli


@pytest.fixture(scope="module")
def run(synth_cohort: list[Path], tmp_path_factory: pytest.TempPathFactory) -> HDWindow:
    return write_hd_window(synth_cohort[0], tmp_path_factory.mktemp("hd_cli"), bin_sizes=(2, 8))


def embed_hd(run: HDWindow, store: Path, *extra: str | Path) -> list[str | Path]:
    return ["embed", run.outs, "--image", run.image, "--store", store, "--encoder", ENCODER,
            "--device", "cpu", *extra]  # fmt: skip


def test_bin_size_16_embeds_the_summed_16_um_bins(run: HDWindow, tmp_path: Path) -> None:
    store = tmp_path / "hd.zarr"
    args = embed_hd(run, store, "--bin-size", "16", "--sample-id", "hd16", "--subspot", "0")
    result = call_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    [summary] = json.loads(result.stdout)
    assert summary["status"] == "embedded"
    opened = CohortStore.open(store)
    meta = opened.sample_record("hd16").meta
    assert meta.extra["bin_size_um"] == 16 and meta.extra["spot_diameter_um"] == 16
    barcodes = opened.read_barcodes("hd16")[opened.read_kind("hd16") == 0]
    assert len(barcodes) == summary["n_spots"] and all(b.startswith("s_016um_") for b in barcodes)
    # The same run at 8 µm under the same id is other data: refused, the store as it was.
    again = call_cli(*embed_hd(run, store, "--sample-id", "hd16", "--subspot", "0"))
    assert_one_line_error(again, "'hd16' is already in", "source hash", "overwrite")


def test_a_sheets_bin_size_reaches_the_embedding_inputs(run: HDWindow, tmp_path: Path) -> None:
    from tmescope.jobs.embed import SampleInput
    from tmescope.workflows import samplesheet_inputs

    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        f"sample,path,image,bin_size_um,patient\nhd16,{run.outs},{run.image},16,P1\n"
        f"hd8,{run.outs},,,P1\n"
    )
    assert samplesheet_inputs(sheet) == [
        SampleInput(run.outs, image=run.image, sample_id="hd16", metadata={"patient": "P1"},
                    bin_size_um=16.0),
        SampleInput(run.outs, sample_id="hd8", metadata={"patient": "P1"}),
    ]  # fmt: skip


def refusals(run: HDWindow, synth: Path, tmp_path: Path) -> dict[str, tuple[list[str | Path], str]]:
    """Arguments (after ``embed``) and a fragment of the one line each is refused with."""
    store = ["--store", tmp_path / "new.zarr", "--encoder", ENCODER]
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"sample,path\nA,{run.outs}\n")
    slide = fullres_image_of(synth)
    return {
        "a standard Visium run": (
            [synth, *store, "--bin-size", "16"], "is a standard Visium run"
        ),
        "a size neither written nor summable": (
            [run.outs, *store, "--bin-size", "5"], "available bin sizes: 2 µm, 8 µm"
        ),
        "a fraction of a µm": ([run.outs, *store, "--bin-size", "15.5"], "whole multiples"),
        "an AnnData": (
            [synth / "cells.h5ad", "--image", slide, *store, "--bin-size", "16"],
            "is an AnnData input; --bin-size picks the bins of a Visium HD",
        ),
        "a sample sheet": (
            ["--samplesheet", sheet, *store, "--bin-size", "16"],
            "so --bin-size cannot be given with it",
        ),
        "only slides": (["--slide", slide, *store, "--bin-size", "16"], "only --slide"),
    }  # fmt: skip


CASES = [
    "a standard Visium run", "a size neither written nor summable", "a fraction of a µm",
    "an AnnData", "a sample sheet", "only slides",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_bin_size_that_does_not_fit_is_one_line_and_writes_nothing(
    run: HDWindow, synth_cohort: list[Path], tmp_path: Path, case: str
) -> None:
    args, fragment = refusals(run, synth_cohort[0], tmp_path)[case]
    assert_one_line_error(call_cli("embed", *args), fragment)
    assert not (tmp_path / "new.zarr").exists()
