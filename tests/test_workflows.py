"""The Python twins of the commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tmescope.errors import InputNotFoundError
from tmescope.store import CohortStore
from tmescope.workflows import describe_sample, fullres_image_of, run_demo


def test_demo_writes_a_cohort_reads_it_back_and_draws_it(tmp_path: Path) -> None:
    messages: list[str] = []
    result = run_demo(tmp_path / "demo", n_samples=2, n_spots=40, seed=5, progress=messages.append)
    assert [s["sample_id"] for s in result.samples] == ["synth_00", "synth_01"]
    for summary in result.samples:
        assert summary["n_spots"] == summary["n_in_tissue"] == 40
        assert summary["image"]["kind"] == "fullres"
        assert summary["mpp_source"] == "tiff:XResolution"
        assert summary["mpp"] == pytest.approx(0.5)
    with Image.open(result.overview) as overview:
        assert overview.width > 400 and overview.height > 300
    assert any("read back 2 samples" in m for m in messages)
    assert [e.status for e in result.embedded] == ["embedded"] * 3
    store = CohortStore.open(result.store)
    # The H&E-only slide joins the cohort without counts, and is never trained on.
    assert sorted(store.sample_ids()) == ["archive_01", "synth_00", "synth_01"]
    assert result.slides == ("archive_01",)
    assert not store.sample_record("archive_01").has_counts
    # Embedded through one sample sheet: synth's rows and the slide's, metadata kept.
    assert result.samplesheet == result.out_dir / "samplesheet.csv"
    # One section per patient, planted inflamed and excluded in turn (the report compares them
    # once there are two patients in each group: 4 samples, `make demo`'s default).
    assert store.sample_record("synth_01").metadata == {
        "patient": "patient_01", "section": "1", "phenotype": "excluded", "group": "excluded"}
    assert result.comparison is None  # one patient per group: nothing to compare
    assert store.sample_record("archive_01").metadata["patient"] == "patient_archive_01"
    assert store.read_embeddings("synth_00")[:40].shape == (40, store.fingerprint["embed_dim"])
    assert store.sample_record("synth_00").n_spots == 40 and store.sample_record("synth_00").n_tiles
    assert store.verify() == []
    assert result.index_rows == sum(store.sample_record(s).n for s in store.sample_ids())
    page = result.gallery.read_text() if result.gallery else ""
    assert result.gallery_query.startswith("synth_00:")
    assert page.count("<img") == 9 and "synth_01" in page and "http" not in page
    assert set(result.training["models"]) == {"gat", "mlp", "ridge", "ridge-cv", "smooth-ridge"}
    assert "archive_01" not in {s for f in result.training["folds"] for s in f["train"]}
    assert result.model_dir is not None and (result.model_dir / "model.json").exists()
    import anndata as ad

    predicted = ad.read_h5ad(result.predictions)
    assert set(predicted.obs["kind"]) == {"spot", "tile"}
    assert result.niches is not None and "cohort" in result.niches.agreement
    assert (result.out_dir / "niches" / "niche_composition.png").exists()
    assert result.interactions is not None and result.interactions.cohort is not None
    assert (result.out_dir / "interactions" / "enrichment_cohort.png").exists()
    assert result.subspot_predictions is not None and result.held_out == ()  # 2 samples: none
    maps = ad.read_h5ad(result.subspot_predictions)
    assert maps.uns["subspot"]["bin_um"] == 16.0 and maps.obsm["populations"].shape[1] > 1
    assert result.interfaces is not None and result.interfaces.cohort is not None
    assert (result.out_dir / "subspot" / "interface_map_synth_01.png").exists()
    assert result.slide_predictions is not None
    slide_maps = ad.read_h5ad(result.slide_predictions)
    assert slide_maps.uns["subspot"]["measured_spots"] == 0 and slide_maps.n_obs > 0
    sdata_path, geojson_path = result.exports
    import spatialdata

    sdata = spatialdata.read_zarr(sdata_path)
    assert "archive_01_populations" in sdata.tables and "archive_01_measured" not in sdata.tables
    assert json.loads(geojson_path.read_text())["features"]
    page = result.report.read_text() if result.report else ""
    parts = ("Cross-validation", "Niches", "Interactions", "Sub-spot maps and interfaces")
    assert all(f"<h2>{part}</h2>" in page for part in parts)
    assert 'href="report_files/archive_01.html"' in page  # a page per sample, beside the index
    slide_page = (result.out_dir / "report_files" / "archive_01.html").read_text()
    assert "<h2>Sub-spot maps (H&amp;E only" in slide_page
    # The twin of `tmescope info` says of a sample what the demo reported of it.
    sample_dir = result.cohort_dir / "synth_00"
    assert describe_sample(sample_dir, image=fullres_image_of(sample_dir)) == result.samples[0]


def test_describe_sample_of_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        describe_sample(tmp_path / "absent")
