"""H&E-only slides embedded through the Python twin of ``tmescope embed --slide``: tiles and
sub-spot bins over all the tissue, no counts, and the refusals that leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factories import write_fullres_tiff
from tmescope.errors import SampleContentError, SlideReadError
from tmescope.jobs.embed import SampleInput, SlideInput
from tmescope.store import CohortStore, RowKind
from tmescope.workflows import embed_samples, fullres_image_of

ENCODER = "test-vit-tiny"
PATCH_UM = 112.0  # test-vit-tiny: 224 px at 0.5 µm/px


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, synth_cohort: list[Path]) -> Path:
    """The first synthetic sample as a Visium sample, and its own H&E again as an H&E-only
    slide; read-only."""
    path = tmp_path_factory.mktemp("slides") / "cohort.zarr"
    sample_dir = synth_cohort[0]
    items = [
        SampleInput(sample_dir, image=fullres_image_of(sample_dir)),
        SlideInput(fullres_image_of(sample_dir), sample_id="archive_01"),
    ]
    embed_samples(items, store=path, encoder=ENCODER, device="cpu")
    return path


def test_a_slide_is_a_sample_of_tiles_without_counts(store: Path) -> None:
    opened = CohortStore.open(store)
    assert opened.verify() == []
    record = opened.sample_record("archive_01")
    assert not record.has_counts and opened.read_counts("archive_01") is None
    assert record.meta.extra["platform"] == "he_only"
    assert record.meta.mpp == 0.5 and record.meta.extra["mpp_source"] == "tiff:XResolution"
    kind = opened.read_kind("archive_01")
    assert (kind == RowKind.TILE).all() and kind.size > 10
    # Tiles sit on a lattice of the patch size: they never overlap.
    side = PATCH_UM / record.meta.mpp
    centres = opened.read_coords("archive_01").astype(np.float64)
    np.testing.assert_allclose((centres / side) % 1.0, 0.5, atol=1e-3)
    assert len(np.unique(np.floor(centres / side), axis=0)) == len(centres)


def test_every_tissue_bin_of_the_visium_sample_has_features_on_the_slide(store: Path) -> None:
    """Every tissue bin under the Visium sample's patches is a bin of the same H&E as a slide
    (same lattice, anchored at pixel 0), and the slide's tiles reach beyond them."""
    opened = CohortStore.open(store)
    visium = {tuple(c) for c in opened.read_bins("synth_00").cells.tolist()}
    slide = {tuple(c) for c in opened.read_bins("archive_01").cells.tolist()}
    assert visium <= slide and len(slide) > len(visium)
    features = opened.read_bin_features("archive_01")
    assert features.shape[0] == len(slide) and np.isfinite(features.astype(np.float32)).all()


def test_a_slide_with_no_tissue_or_cut_short_leaves_the_store_as_it_was(
    store: Path, tmp_path: Path
) -> None:
    blank = write_fullres_tiff(
        tmp_path / "blank.tif", np.full((600, 800, 3), 246, np.uint8), mpp=0.5
    )
    target = tmp_path / "new.zarr"
    with pytest.raises(SampleContentError, match="no tissue found on slide"):
        embed_samples([SlideInput(blank)], store=target, encoder=ENCODER, device="cpu")
    whole = Path(CohortStore.open(store).sample_record("archive_01").meta.source_path)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:20000])
    with pytest.raises(SlideReadError, match="truncated"):
        embed_samples([SlideInput(cut)], store=target, encoder=ENCODER, device="cpu")
    if target.exists():  # the store may exist, empty: never a half-written sample
        opened = CohortStore.open(target)
        assert opened.sample_ids(include_incomplete=True) == [] and opened.verify() == []
