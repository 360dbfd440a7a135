"""Issue 26's round trip: a store exported with ``tmescope export --to spatialdata --sample S``,
then embedded again from that SpatialData, holds the same spots (barcodes, positions), counts,
µm/px and patch embeddings as the store it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tmescope.jobs.embed import EmbedSettings, SampleInput, TableInput, embed_input
from tmescope.jobs.export import export_store
from tmescope.store import CohortStore, RowKind
from tmescope.workflows import embed_samples, fullres_image_of

pytestmark = [
    # zarr 3.1 warns of its coming autosharding on every array spatialdata writes.
    pytest.mark.filterwarnings("ignore:.*autosharding:UserWarning"),
]

ENCODER = "test-vit-tiny"
SAMPLE = "synth_00"
SETTINGS = EmbedSettings(subspot_um=0)  # spots only: the round trip is about them


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory: pytest.TempPathFactory, synth_cohort: list[Path]) -> dict:
    """The first synthetic sample embedded from its Space Ranger run, exported alone to a
    SpatialData, and embedded from that into a second store."""
    root = tmp_path_factory.mktemp("sd_round_trip")
    sample_dir = synth_cohort[0]
    original, exported, again = root / "a.zarr", root / "synth.zarr", root / "b.zarr"
    item = SampleInput(sample_dir, image=fullres_image_of(sample_dir))
    embed_samples([item], store=original, encoder=ENCODER, device="cpu", settings=SETTINGS)
    export_store(original, exported, to="spatialdata", sample=SAMPLE)
    table_item = embed_input(exported)  # a SpatialData zarr: a table beside its image
    assert isinstance(table_item, TableInput)
    summaries = embed_samples(
        [table_item], store=again, encoder=ENCODER, device="cpu", settings=SETTINGS
    )
    return {"original": original, "again": again, "exported": exported, "summaries": summaries}


def test_the_sample_comes_back_under_its_id_at_its_resolution(round_trip: dict) -> None:
    (summary,) = round_trip["summaries"]
    assert summary.sample_id == SAMPLE  # the export's element prefix
    original = CohortStore.open(round_trip["original"]).sample_record(SAMPLE).meta
    again = CohortStore.open(round_trip["again"]).sample_record(SAMPLE).meta
    assert again.mpp == pytest.approx(original.mpp, rel=1e-9)
    assert again.patch_um == original.patch_um
    extra = dict(again.extra)
    assert extra["platform"] == "visium" and extra["spot_diameter_um"] == pytest.approx(55.0)
    assert extra["image"].endswith(f"images/{SAMPLE}_he")


def test_spots_counts_and_embeddings_are_those_of_the_original(round_trip: dict) -> None:
    original = CohortStore.open(round_trip["original"])
    again = CohortStore.open(round_trip["again"])
    spots_a = original.read_kind(SAMPLE) == RowKind.SPOT
    spots_b = again.read_kind(SAMPLE) == RowKind.SPOT
    assert spots_a.sum() == spots_b.sum() > 0
    barcodes_a = np.asarray(original.read_barcodes(SAMPLE))[spots_a]
    barcodes_b = np.asarray(again.read_barcodes(SAMPLE))[spots_b]
    np.testing.assert_array_equal(barcodes_a, barcodes_b)
    coords_a = np.asarray(original.read_coords(SAMPLE))[spots_a]
    coords_b = np.asarray(again.read_coords(SAMPLE))[spots_b]
    np.testing.assert_allclose(coords_b, coords_a, atol=1e-3)
    counts_a, counts_b = original.read_counts(SAMPLE), again.read_counts(SAMPLE)
    assert counts_a is not None and counts_b is not None
    assert list(counts_b.obs_names) == list(counts_a.obs_names)
    assert list(counts_b.var_names) == list(counts_a.var_names)
    assert (counts_a.X != counts_b.X).nnz == 0
    embeddings_a = np.asarray(original.read_embeddings(SAMPLE), np.float32)[spots_a]
    embeddings_b = np.asarray(again.read_embeddings(SAMPLE), np.float32)[spots_b]
    np.testing.assert_allclose(embeddings_b, embeddings_a, rtol=1e-3, atol=1e-3)


def test_a_sample_embedded_from_a_spatialdata_reopens_and_exports_with_its_image(
    round_trip: dict, tmp_path: Path
) -> None:
    """The report, viewer and export open such a sample again through its image element."""
    from tmescope.io.reopen import reopen_sample

    store = CohortStore.open(round_trip["again"])
    meta = store.sample_record(SAMPLE).meta
    with reopen_sample(meta.source_path, extra=meta.extra, mpp=meta.mpp) as sample:
        assert sample.n_spots == 60 and sample.slide.thumbnail(32).std() > 0
    export_store(round_trip["again"], tmp_path / "again.zarr", to="spatialdata")
    assert (tmp_path / "again.zarr" / "images" / f"{SAMPLE}_he").is_dir()
