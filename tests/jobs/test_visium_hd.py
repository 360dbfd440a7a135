"""Visium HD bins as the measured units, end to end: embed, train --resolution 16, predict at 16
µm (sub-spot maps) and per bin (the head), interactions on the bins and on the maps, compare.

The sections are HD-like runs written from the cells of synthetic sections (a window of each,
binned on the 2 µm grid): two at 8 µm, finer than the 16 µm sub-spot bins (their bins are summed
into the sub-spot bin holding them), two at 16 µm (each measured bin is a sub-spot bin). Before
HD bins were squares to the sub-spot model, the 8 µm sections taught it nothing: no 16 µm bin
centre lies within 4 µm of an 8 µm bin's, so every "disc" was empty and training stopped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from tmescope.jobs.embed import SampleInput
from tmescope.store import CohortStore

WINDOW_UM = 144.0  # side of each section's window: 324 8 µm bins at most, fast to embed
# synth sample, bin size; two groups of two sections for compare
SECTIONS = {"hd8_a": (0, 8), "hd8_b": (1, 8), "hd16": (1, 16), "hd16_b": (0, 16)}
GROUPS = {"hd8_a": "x", "hd16": "x", "hd8_b": "y", "hd16_b": "y"}


def _window(cells: ad.AnnData, *, mpp: float, corner: int) -> ad.AnnData:
    """The cells of a ``WINDOW_UM`` square near the tissue's middle (one of its corners there)."""
    xy = np.asarray(cells.obsm["spatial"])
    side = WINDOW_UM / mpp
    middle = np.floor(np.median(xy, axis=0) / 32) * 32  # on the 16 µm grid
    low = middle - (side if corner else 0.0)
    keep = np.all((xy >= low) & (xy < low + side), axis=1)
    return cells[keep].copy()


@pytest.fixture(scope="module")
def hd(synth_cohort: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four HD-like sections embedded with 16 µm sub-spot bins, and a model trained on them."""
    from tmescope.datasets.hd_writer import write_binned_outputs
    from tmescope.jobs.train import TrainSettings, train_model
    from tmescope.workflows import embed_samples

    root = tmp_path_factory.mktemp("hd")
    items = []
    for name, (index, size) in SECTIONS.items():
        folder = synth_cohort[index]
        cells = ad.read_h5ad(folder / "cells.h5ad")
        mpp = float(cells.uns["tmescope"]["mpp"])
        window = _window(cells, mpp=mpp, corner=len(items) % 2)
        window.write_h5ad(root / f"{name}_cells.h5ad")
        outs = root / name / "outs"
        factors = json.loads((folder / "outs" / "spatial" / "scalefactors_json.json").read_text())
        write_binned_outputs(
            window, outs, mpp=mpp, bin_sizes=(size,),
            scalefactors={k: factors[k] for k in ("tissue_hires_scalef", "tissue_lowres_scalef")},
        )  # fmt: skip
        (outs / "spatial").mkdir()
        for png in ("tissue_hires_image.png", "tissue_lowres_image.png"):  # predict shows them
            shutil.copyfile(folder / "outs" / "spatial" / png, outs / "spatial" / png)
        image = next(folder.glob("*_he.tif"))
        metadata = {"group": GROUPS[name]}
        items.append(SampleInput(outs, image=image, sample_id=name, metadata=metadata))
    store = root / "hd.zarr"
    embed_samples(items, store=store, encoder="test-vit-tiny", device="cpu")
    settings = TrainSettings(
        models=("ridge",), n_genes=10, n_members=1, device="cpu", resolution_um=16.0,
        reference=synth_cohort[0].parent / "reference.h5ad",
    )  # fmt: skip
    train_model(store, root / "model", settings=settings)
    return {"root": root, "store": store, "model": root / "model"}


def test_the_sections_are_stored_as_hd_bins(hd: dict[str, Path]) -> None:
    store = CohortStore.open(hd["store"])
    for name, (_, size) in SECTIONS.items():
        meta = store.sample_record(name).meta
        assert meta.extra["platform"] == "visium_hd" and meta.extra["spot_diameter_um"] == size
        assert store.read_bins(name).bin_um == 16.0
    header = json.loads((hd["model"] / "subspot" / "subspot.json").read_text())
    assert header["samples"] == sorted(SECTIONS) and header["bin_um"] == 16.0


@pytest.mark.parametrize("name", list(SECTIONS))
def test_each_map_bin_answers_to_the_measured_bins_in_its_square(
    hd: dict[str, Path], name: str, tmp_path: Path
) -> None:
    """At 16 µm on 16 µm bins a map bin is its measured bin; on 8 µm bins it is the sum of the
    four inside it. Either way the reconciled map agrees with that measurement exactly."""
    from tmescope.fusion.subspot_data import read_bin_sample
    from tmescope.fusion.subspot_model import SubspotModel
    from tmescope.jobs.predict_bins import predict_subspot

    size = SECTIONS[name][1]
    out = predict_subspot(
        hd["store"], hd["model"], sample=name, resolution_um=16.0, out=tmp_path / "p.h5ad"
    )
    maps = ad.read_h5ad(out)
    opened = CohortStore.open(hd["store"])
    model = SubspotModel.load(hd["model"] / "subspot")
    sample = read_bin_sample(opened, name, reference=model.reference, bin_um=16.0)
    assert maps.n_obs == len(sample.disc)
    bin_px = 16.0 / sample.mpp
    spots = opened.read_coords(name)[opened.read_kind(name) == 0]
    # Patches reach 56 µm beyond the window, and their bins with them: within the window's
    # measured bins, every tissue bin answers to one.
    low, high = spots.min(axis=0), spots.max(axis=0)
    within = np.all((sample.xy > low) & (sample.xy < high), axis=1)
    assert within.sum() > 30 and (sample.disc[within] >= 0).mean() > 0.9
    barcodes = opened.read_barcodes(name)[opened.read_kind(name) == 0]
    inside = np.flatnonzero(sample.disc >= 0)
    unit = sample.disc[inside]
    # The measured bin a map bin names lies in it (8 µm: the first of its four).
    offset = np.abs(spots[unit] - sample.xy[inside]).max(axis=1)
    assert (offset < bin_px / 2).all()
    assert (maps.obs["spot"].to_numpy()[inside] == barcodes[unit]).all()
    known = inside[np.isfinite(sample.measured[unit]).all(axis=1)]
    assert len(known) > 0.8 * len(inside)
    values = maps.obsm["populations"].to_numpy()
    np.testing.assert_allclose(values[known], sample.measured[sample.disc[known]], atol=1e-4)
    if size == 8:  # four measured bins summed per map bin: one of them carries the sum
        assert np.bincount(unit).max() == 1
        assert np.isfinite(sample.measured).all(axis=1).sum() == len(known)


def test_the_maps_find_tumour_where_the_cells_are_tumour(
    hd: dict[str, Path], tmp_path: Path
) -> None:
    from scipy.spatial import cKDTree

    from tmescope.jobs.predict_bins import predict_subspot

    maps = ad.read_h5ad(
        predict_subspot(
            hd["store"], hd["model"], sample="hd8_b", resolution_um=16.0, out=tmp_path / "m.h5ad"
        )
    )
    cells = ad.read_h5ad(hd["root"] / "hd8_b_cells.h5ad")
    tumour = np.asarray(cells.obsm["spatial"])[cells.obs["cell_type"].astype(str) == "tumour"]
    if len(tumour) < 5 or len(tumour) > 0.9 * cells.n_obs:
        pytest.skip("the window holds too few or too many tumour cells to compare")
    near = np.isfinite(cKDTree(tumour).query(maps.obsm["spatial"], distance_upper_bound=16.0)[0])
    share = maps.obsm["populations"]["tumour"].to_numpy()
    assert share[near].mean() > 2 * share[~near].mean()


def test_the_head_predicts_every_hd_bin(hd: dict[str, Path], tmp_path: Path) -> None:
    from tmescope.jobs.predict import predict_sample

    out = predict_sample(hd["store"], hd["model"], sample="hd8_a", out=tmp_path / "b.h5ad")
    bins = ad.read_h5ad(out)
    n_spots = int((CohortStore.open(hd["store"]).read_kind("hd8_a") == 0).sum())
    assert bins.n_obs == n_spots and np.isfinite(bins.X).all()
    assert np.isfinite(bins.layers["measured"]).all()


def test_interactions_run_on_the_bins_and_on_their_maps(hd: dict[str, Path]) -> None:
    from tmescope.jobs.interactions import InteractionSettings, run_interactions
    from tmescope.jobs.interfaces import InterfaceSettings, run_interfaces

    report = run_interactions(
        hd["store"], hd["model"], samples=["hd8_a", "hd8_b"], device="cpu",
        settings=InteractionSettings(n_perms=19, crosscorr_perms=19),
    )  # fmt: skip
    n_bins = {s.sample_id: s.n for s in report.samples}
    opened = CohortStore.open(hd["store"])
    assert n_bins == {s: int((opened.read_kind(s) == 0).sum()) for s in ("hd8_a", "hd8_b")}
    assert report.cohort is not None and report.pairs()
    # 8 µm bins: neighbours lie within a few bins, not Visium's 100 µm pitch.
    assert all(s.radius_um < 20 for s in report.samples)
    pairs = run_interfaces(
        hd["store"], hd["model"], samples=list(SECTIONS),
        settings=InterfaceSettings(resolution_um=16.0, n_shifts=19, pairs=(("tumour", "t_cell"),)),
    )  # fmt: skip
    assert [s.n_bins for s in pairs.samples] == [opened.read_bins(s).n for s in SECTIONS]
    assert pairs.cohort is not None and len(pairs.pairs()) == 1


def test_compare_summarises_the_hd_sections_maps(hd: dict[str, Path]) -> None:
    from tmescope.jobs.compare import CompareSettings, run_compare

    report = run_compare(
        hd["store"], hd["model"], settings=CompareSettings(by="group", subject="sample")
    )
    rows = {r["sample"]: r for r in report.comparison.samples}
    assert set(rows) == set(SECTIONS) and report.comparison.groups == ("x", "y")
    opened = CohortStore.open(hd["store"])
    assert all(rows[s]["n"] == opened.read_bins(s).n for s in SECTIONS)
