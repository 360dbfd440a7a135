"""A Visium HD run embedded at a chosen bin size: the store keeps the size, every later stage
reopens the run at it, and two sizes of one run are two samples' data.

The run writes only 2 and 8 µm bins, so its 16 µm bins are summed from the 2 µm ones.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hd_window import HDWindow, write_hd_window
from tmescope.errors import (
    InvalidParameterError,
    SampleConflictError,
    SpaceRangerLayoutError,
)
from tmescope.io.reopen import reopen_sample
from tmescope.jobs.embed import EmbedSettings, SampleInput, embed_input
from tmescope.store import CohortStore
from tmescope.workflows import embed_samples

ENCODER = "test-vit-tiny"
SETTINGS = EmbedSettings(subspot_um=0)  # the spots alone: what the bin size changes


@pytest.fixture(scope="module")
def run(synth_cohort: list[Path], tmp_path_factory: pytest.TempPathFactory) -> HDWindow:
    return write_hd_window(synth_cohort[0], tmp_path_factory.mktemp("hd_run"), bin_sizes=(2, 8))


@pytest.fixture(scope="module")
def store(run: HDWindow, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run embedded at 16 µm (summed) as ``hd16`` and at the default 8 µm as ``hd8``."""
    path = tmp_path_factory.mktemp("store") / "hd.zarr"
    items = [
        SampleInput(run.outs, image=run.image, sample_id="hd16", bin_size_um=16),
        SampleInput(run.outs, image=run.image, sample_id="hd8"),
    ]
    embed_samples(items, store=path, encoder=ENCODER, device="cpu", settings=SETTINGS)
    return path


def test_the_spots_are_the_bins_of_the_size_asked_for(store: Path, run: HDWindow) -> None:
    opened = CohortStore.open(store)
    for name, size in (("hd16", 16), ("hd8", 8)):
        meta = opened.sample_record(name).meta
        assert meta.extra["bin_size_um"] == size and meta.extra["spot_diameter_um"] == size
        spots = opened.read_kind(name) == 0
        barcodes = opened.read_barcodes(name)[spots]
        assert all(b.startswith(f"s_{size:03d}um_") for b in barcodes)
        # Each lies in its bin's square (the run's grid starts at pixel 0; a summed bin's
        # centre is the mean of its 2 µm bins').
        grid = np.array([[int(b[8:13]), int(b[14:19])] for b in barcodes])  # (n, 2) row, col
        xy = opened.read_coords(name)[spots]  # (n, 2) x, y
        np.testing.assert_array_equal(np.floor(xy[:, ::-1] / (size / run.mpp)), grid)
    n16, n8 = (int((opened.read_kind(s) == 0).sum()) for s in ("hd16", "hd8"))
    assert 0 < n16 < n8


def test_reopening_gives_the_size_it_was_embedded_at(store: Path) -> None:
    opened = CohortStore.open(store)
    for name, size in (("hd16", 16), ("hd8", 8)):
        meta = opened.sample_record(name).meta
        with reopen_sample(meta.source_path, extra=meta.extra, mpp=meta.mpp) as sample:
            assert sample.bin_size_um == size and sample.spot_diameter_um == size
            stored = opened.read_barcodes(name)[opened.read_kind(name) == 0]
            assert set(stored) <= set(sample.spots["barcode"])


def test_a_store_without_the_size_reopens_at_the_default(store: Path) -> None:
    """Stores written before the size was recorded keep today's behaviour: 8 µm."""
    meta = CohortStore.open(store).sample_record("hd16").meta
    old = {k: v for k, v in meta.extra.items() if k != "bin_size_um"}
    with reopen_sample(meta.source_path, extra=old, mpp=meta.mpp) as sample:
        assert sample.bin_size_um == 8


def test_another_size_under_the_same_id_is_other_data(
    store: Path, run: HDWindow, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    again = SampleInput(run.outs, image=run.image, sample_id="hd16", bin_size_um=8)
    with pytest.raises(SampleConflictError, match=r"'hd16' is already in .*source hash"):
        embed_samples([again], store=copy, encoder=ENCODER, device="cpu", settings=SETTINGS)
    # The same size again is the same sample: skipped.
    same = SampleInput(run.outs, image=run.image, sample_id="hd16", bin_size_um=16.0)
    [summary] = embed_samples([same], store=copy, encoder=ENCODER, device="cpu", settings=SETTINGS)
    assert summary.status == "skipped"
    overwrite = replace(SETTINGS, overwrite=True)
    replaced = embed_samples([again], store=copy, encoder=ENCODER, device="cpu", settings=overwrite)
    assert replaced[0].status == "embedded"
    assert CohortStore.open(copy).sample_record("hd16").meta.extra["bin_size_um"] == 8


def test_sizes_the_run_cannot_give_are_refused_before_anything(
    run: HDWindow, synth_cohort: list[Path]
) -> None:
    with pytest.raises(SpaceRangerLayoutError, match=r"no 5 µm bins.*available bin sizes"):
        SampleInput(run.outs, bin_size_um=5)
    with pytest.raises(SpaceRangerLayoutError, match="standard Visium run"):
        SampleInput(synth_cohort[0], bin_size_um=16)
    with pytest.raises(InvalidParameterError, match=r"is an AnnData input; --bin-size picks"):
        embed_input(synth_cohort[0] / "cells.h5ad", bin_size_um=16)
