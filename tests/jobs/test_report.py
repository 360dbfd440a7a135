"""``write_report`` (twin of ``tmescope report``) end to end on a small trained, indexed store."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tmescope.errors import (
    InvalidParameterError,
    ModelMismatchError,
    SampleNotFoundError,
    StoreNotFoundError,
)
from tmescope.jobs.embed import EmbedSettings, SampleInput
from tmescope.jobs.report import write_report
from tmescope.jobs.train import TrainSettings, train_model
from tmescope.viz.report import ReportSection
from tmescope.workflows import build_cohort_index, embed_samples

SAMPLES = ["synth_00", "synth_01", "synth_02"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three small samples with a 110 µm grid, a model (gat and ridge-cv) and an index.

    ``bare`` is the same store before its index was built.
    """
    from tmescope.datasets import write_synthetic_cohort

    root = tmp_path_factory.mktemp("report")
    dirs = write_synthetic_cohort(root / "cohort", n_samples=3, n_spots=90, seed=4)
    items = [SampleInput(d, image=next(d.glob("*_he.tif"))) for d in dirs]
    store = root / "cohort.zarr"
    embed_samples(
        items, store=store, encoder="test-vit-tiny", device="cpu",
        settings=EmbedSettings(grid_um=110.0),  # tiles between spots, few to embed
    )  # fmt: skip
    settings = TrainSettings(n_genes=12, n_members=2, models=("gat", "ridge-cv"), device="cpu")
    train_model(store, root / "model", settings=settings)
    shutil.copytree(store, root / "bare.zarr")
    build_cohort_index(store)
    return {"store": store, "model": root / "model", "bare": root / "bare.zarr", "root": root}


@pytest.fixture(scope="module")
def report(cohort: dict[str, Path]) -> str:
    extra = ReportSection("Niches", "<p>lead's niche part</p>")
    out = write_report(
        cohort["store"], cohort["root"] / "out" / "report.html", model_dir=cohort["model"],
        sections=[extra],
    )  # fmt: skip
    return out.read_text(encoding="utf-8")


def images(page: str, alt: str) -> list[np.ndarray]:
    """The decoded images of ``page`` whose alt text is ``alt``."""
    found = re.findall(rf'src="data:image/jpeg;base64,([^"]+)" alt="{re.escape(alt)}"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d))).convert("RGB")) for d in found]


def cv_of(model: Path) -> dict:
    return json.loads((model / "model.json").read_text())["cv"]


def test_every_sample_has_its_section_with_h_and_e_and_maps(report: str) -> None:
    for sample in SAMPLES:
        assert f'<section id="sample-{sample.replace("_", "-")}"' in report
        (he,) = images(report, f"H&amp;E of {sample}")
        assert max(he.shape[:2]) <= 900 and he.std() > 10
        genes, states = images(report, f"maps of {sample}")
        assert genes.std() > 10 and states.std() > 10
        # Two states per row of four panels, five rows for ten states: taller than wide.
        assert states.shape[0] > states.shape[1]
    assert report.count("The model learnt from this sample") == 3


def test_default_genes_are_the_heads_best_cross_validated(
    report: str, cohort: dict[str, Path]
) -> None:
    from tmescope.fusion.model_dir import load_model

    predicted = set(load_model(cohort["model"]).spec.genes)
    per_gene = cv_of(cohort["model"])["models"]["gat"]["per_gene"]
    best = sorted((g for g in per_gene if g in predicted), key=lambda g: -per_gene[g])[:4]
    captions = re.findall(r"<figcaption><b>([^<]+)</b>\. Per gene", report)
    assert captions == [", ".join(best)] * 3


def test_cv_table_shows_the_head_and_its_baseline(report: str, cohort: dict[str, Path]) -> None:
    models = cv_of(cohort["model"])["models"]
    start = report.index('<table class="cv">')
    table = report[start : report.index("</table>", start)]
    for name in ("gat", "ridge-cv"):
        row = re.search(rf"<tr[^>]*><td>{name}</td>(.*?)</tr>", table)
        assert row is not None
        assert f"<td>{models[name]['mean']:.3f}</td>" in row.group(1)
        assert f"<td>{models[name]['states']['mean']:.3f}</td>" in row.group(1)
    for sample in SAMPLES:
        assert f"held out: {sample}" in table


def test_galleries_show_similar_regions_of_other_slides(report: str) -> None:
    part = report[report.index("<h2>Similar regions</h2>") : report.index("<h2>Niches</h2>")]
    galleries = [block.partition("</h4>") for block in part.split("<h4>")[1:]]
    assert len(galleries) == 3
    for heading, _, cards in galleries:
        assert heading.startswith("Like the highest predicted ")
        assert cards.count("<figure") == 7 and cards.count('class="query"') == 1
        query = re.search(r"<b>query: (synth_\d\d)</b>", cards)
        hits = re.findall(r"<b>#\d (synth_\d\d)</b>", cards)
        assert query and len(hits) == 6 and query.group(1) not in hits


def test_the_page_is_self_contained_and_ends_with_the_callers_sections(report: str) -> None:
    assert not re.search(r'(?:src|href)="(?:https?:)?//', report)
    order = [report.index(f"<h2>{t}</h2>") for t in ("Cross-validation", "Samples")]
    order += [report.index("<h2>Similar regions</h2>"), report.index("<h2>Niches</h2>")]
    assert order == sorted(order)
    assert "<p>lead's niche part</p>" in report and 'href="#niches"' in report


def test_without_a_model_measured_maps_and_a_note_on_the_missing_index(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    out = write_report(cohort["bare"], tmp_path / "plain.html", genes=["satb2", "Mdm2"])
    page = out.read_text(encoding="utf-8")
    assert "Cross-validation" not in page and "uncertainty" not in page
    assert re.findall(r"<figcaption><b>([^<]+)</b>\. Measured", page) == ["SATB2, MDM2"] * 3
    assert f"run `tmescope index {cohort['bare']}`" in page
    assert out.stat().st_size < 2_000_000


def test_a_sample_whose_folder_is_gone_is_drawn_without_its_image(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    folder = cohort["root"] / "cohort" / "synth_01"
    moved = folder.with_name("synth_01.moved")
    folder.rename(moved)
    try:
        out = write_report(cohort["store"], tmp_path / "gone.html", samples=["synth_01"])
    finally:
        moved.rename(folder)
    page = out.read_text(encoding="utf-8")
    assert "The H&amp;E cannot be shown" in page and "not readable" in page
    assert not images(page, "H&amp;E of synth_01") and images(page, "maps of synth_01")


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"samples": ["synth_09"]}, SampleNotFoundError, "synth_09"),
        ({"genes": ["SATB3"]}, InvalidParameterError, "did you mean SATB2"),
        ({"genes": ["GAPDH"], "model": True}, InvalidParameterError, "the model"),
    ],
)
def test_unknown_samples_and_genes_are_refused_before_anything_is_written(
    cohort: dict[str, Path], tmp_path: Path, kwargs: dict, error: type, fragment: str
) -> None:
    model = cohort["model"] if kwargs.pop("model", False) else None
    with pytest.raises(error, match=fragment):
        write_report(cohort["store"], tmp_path / "r.html", model_dir=model, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_and_a_foreign_model_are_refused(cohort: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        write_report(tmp_path / "none.zarr", tmp_path / "r.html")
    with pytest.raises(InvalidParameterError, match="is a directory"):
        write_report(cohort["store"], tmp_path)
    foreign = tmp_path / "foreign"
    shutil.copytree(cohort["model"], foreign)
    header = json.loads((foreign / "model.json").read_text())
    header["fingerprint"]["weights"] = "seed:1"
    (foreign / "model.json").write_text(json.dumps(header))
    with pytest.raises(ModelMismatchError, match="tmescope train"):
        write_report(cohort["store"], tmp_path / "r.html", model_dir=foreign)
    assert not (tmp_path / "r.html").exists()


def test_cli_writes_the_report_and_turns_bad_input_into_exit_2(
    cohort: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tmescope.cli.main import app, main

    out = tmp_path / "cli.html"
    args = ["report", str(cohort["store"]), "--out", str(out), "--samples", "synth_02"]
    result = CliRunner().invoke(app, [*args, "--genes", "SATB2,MDM2"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "synth_02" in out.read_text(encoding="utf-8")

    monkeypatch.setattr(sys, "argv", ["tmescope", *args, "--genes", "NOTAGENE"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "NOTAGENE" in errors[0]
