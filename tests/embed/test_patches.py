"""Patch planning and the tissue mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tmescope.embed.patches import SPOT, TILE, plan_patches, raster_order
from tmescope.embed.tissue_mask import TissueMask, detect_tissue, otsu_threshold
from tmescope.errors import InvalidParameterError, SampleContentError
from tmescope.io import read_visium


def open_synth(folder: Path):  # type: ignore[no-untyped-def]
    return read_visium(folder, image=next(folder.glob("*_he.tif")))


def test_spot_patches_cover_every_spot_in_tissue_once(synth_cohort: list[Path]) -> None:
    with open_synth(synth_cohort[0]) as sample:
        plan = plan_patches(sample, size_um=112, size_px=224)
        assert len(plan) == plan.n_spots == sample.n_in_tissue
        assert sorted(plan.ids) == sorted(sample.spots["barcode"][sample.spots["in_tissue"]])
        assert (plan.kind == SPOT).all()
        # Spots sit on tissue: most of their patch is tissue.
        assert np.median(plan.tissue_fraction) > 0.6


def test_grid_tiles_lie_on_tissue_and_join_the_raster_order(synth_cohort: list[Path]) -> None:
    with open_synth(synth_cohort[0]) as sample:
        plan = plan_patches(sample, size_um=112, size_px=224, grid_step_um=56)
        tiles = plan.kind == TILE
        assert (
            tiles.sum() > sample.n_in_tissue
        )  # 56 µm steps: denser than the hexagonal 100 µm lattice
        assert (plan.tissue_fraction[tiles] >= 0.25).all()
        assert all(i.startswith("tile_") for i in plan.ids[tiles])
        assert len(set(plan.ids)) == len(plan)
        bands = np.floor(plan.centres[:, 1] / (112 / sample.mpp))
        assert (np.diff(bands) >= 0).all()


def test_raster_order_goes_band_by_band() -> None:
    centres = np.array([[5.0, 12.0], [1.0, 3.0], [9.0, 1.0], [0.0, 11.0]])
    assert raster_order(centres, band=10).tolist() == [1, 2, 3, 0]


def test_tissue_detection_separates_stain_from_glass() -> None:
    image = np.full((40, 40, 3), 245, np.uint8)
    image[10:30, 10:30] = (200, 120, 180)  # eosin-pink tissue
    mask = detect_tissue(image)
    assert mask[10:30, 10:30].all() and not mask[:10].any()
    tm = TissueMask.from_mask(mask, scale=0.5)  # mask px per full-res px
    inside = tm.fractions(np.array([[40.0, 40.0], [5.0, 5.0], [-100.0, -100.0]]), side=20)
    assert inside.tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_otsu_splits_two_modes() -> None:
    values = np.concatenate([np.full(100, 0.1), np.full(100, 0.7)])
    assert 0.1 < otsu_threshold(values) < 0.7


def test_bad_patch_sizes_and_grid(synth_cohort: list[Path]) -> None:
    with open_synth(synth_cohort[0]) as sample:
        with pytest.raises(InvalidParameterError):
            plan_patches(sample, size_um=0, size_px=224)
        with pytest.raises(InvalidParameterError, match="--grid"):
            plan_patches(sample, size_um=112, size_px=224, grid_step_um=-5)


def test_a_sample_with_no_spot_in_tissue(synth_cohort: list[Path]) -> None:
    with open_synth(synth_cohort[0]) as sample:
        sample.spots["in_tissue"] = False
        with pytest.raises(SampleContentError, match=r"none of its .* spots is in tissue"):
            plan_patches(sample, size_um=112, size_px=224)


def test_subset_keeps_order_and_fields(synth_cohort: list[Path]) -> None:
    with open_synth(synth_cohort[0]) as sample:
        plan = plan_patches(sample, size_um=112, size_px=64, grid_step_um=56)
        tiles = plan.subset(plan.kind == TILE)
        assert (tiles.kind == TILE).all()
        assert tiles.ids.tolist() == plan.ids[plan.kind == TILE].tolist()
        assert np.array_equal(tiles.centres, plan.centres[plan.kind == TILE])
        assert (tiles.size_um, tiles.size_px) == (plan.size_um, plan.size_px)
