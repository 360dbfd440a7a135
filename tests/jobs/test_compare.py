"""``tmescope compare`` end to end on a tiny phenotyped cohort: the outputs, the sheet that
overrides the store's metadata, and every bad input refused in one line with nothing written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tmescope.errors import TmescopeError
from tmescope.jobs.compare import CompareSettings, run_compare


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four sections (two patients: one inflamed, one excluded) embedded from their sheet with
    16 µm bins, and a quick sub-spot model."""
    from tmescope.jobs.embed_sheet import samplesheet_inputs
    from tmescope.jobs.synth import synthesize_cohort
    from tmescope.jobs.train import TrainSettings, train_model
    from tmescope.workflows import embed_samples

    root = tmp_path_factory.mktemp("compare")
    synthesize_cohort(root / "syn", n_samples=4, n_spots=70, seed=8, workers=1,
                      phenotypes=["inflamed", "excluded"])  # fmt: skip
    sheet = root / "syn" / "samplesheet.csv"
    store = root / "c.zarr"
    embed_samples(samplesheet_inputs(sheet), store=store, encoder="test-vit-tiny", device="cpu")
    settings = TrainSettings(
        models=("ridge",), n_genes=10, n_members=1, device="cpu",
        reference=root / "syn" / "reference.h5ad", resolution_um=16.0,
    )  # fmt: skip
    train_model(store, root / "model", settings=settings)
    return {"root": root, "sheet": sheet, "store": store, "model": root / "model"}


def _sheet(cohort: dict[str, Path], path: Path, change: dict[str, dict[str, str]]) -> Path:
    rows = list(csv.DictReader(cohort["sheet"].open()))
    for row in rows:
        row.update(change.get(row["sample"], {}))
        for key in ("path", "image"):
            row[key] = str(cohort["sheet"].parent / row[key])
    rows = [r for r in rows if r.get("drop") != "yes"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[k for k in rows[0] if k != "drop"],
                                extrasaction="ignore")  # fmt: skip
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_the_synthetic_sheet_carries_the_planted_phenotypes(cohort: dict[str, Path]) -> None:
    rows = list(csv.DictReader(cohort["sheet"].open()))
    assert [r["phenotype"] for r in rows] == ["inflamed", "inflamed", "excluded", "excluded"]
    assert all(r["group"] == r["phenotype"] for r in rows)
    truth = json.loads((cohort["root"] / "syn" / "synth_02" / "ground_truth.json").read_text())
    assert truth["immune_phenotype"]["name"] == "excluded"


def test_compare_writes_its_tables_json_and_figures(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    # Two patients only: each section is its own unit here (--subject sample), 2 vs 2.
    settings = CompareSettings(by="group", subject="sample", pairs=(("t_cell", "tumour"),))
    report = run_compare(cohort["store"], cohort["model"], settings=settings, out=tmp_path / "o")
    body = json.loads((tmp_path / "o" / "comparison.json").read_text())
    assert body["groups"] == ["excluded", "inflamed"] and body["by"] == "group"
    assert {"a", "b", "effect", "p", "q", "higher_in", "p_perm", "naive_p"} <= set(body["pairs"][0])
    assert len(body["pairs"]) == len(report.comparison.pairs) > 0
    assert [s["sample"] for s in body["samples"]] == [f"synth_0{i}" for i in range(4)]
    assert all(s["phenotype"] in ("inflamed", "excluded", "desert", "no tumour")
               for s in body["samples"])  # fmt: skip
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"pairs.csv", "abundances.csv", "samples.csv", "differences.png",
            "pair_t_cell__tumour.png", "phenotypes.png"} <= names  # fmt: skip
    # A second run replaces the folder whole, and gives the same figures.
    again = run_compare(cohort["store"], cohort["model"], settings=settings, out=tmp_path / "o")
    assert again.to_json()["pairs"] == report.to_json()["pairs"]


def test_a_sheet_overrides_the_stored_grouping(cohort: dict[str, Path], tmp_path: Path) -> None:
    cross = _sheet(cohort, tmp_path / "cross.csv", {
        "synth_00": {"group": "A"}, "synth_01": {"group": "B"},
        "synth_02": {"group": "A"}, "synth_03": {"group": "B"}})  # fmt: skip
    settings = CompareSettings(by="group", subject="sample")
    report = run_compare(cohort["store"], cohort["model"], settings=settings, samplesheet=cross)
    assert report.comparison.groups == ("A", "B") and report.metadata_from == str(cross)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tmescope", *map(str, args)],
                          capture_output=True, text=True)  # fmt: skip


def _refused(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def test_bad_inputs_get_one_line_and_write_nothing(cohort: dict[str, Path], tmp_path: Path) -> None:
    store, model = cohort["store"], cohort["model"]
    out = tmp_path / "never"
    _refused(run_cli("compare", store, model, "--by", "no_such_column", "--out", out),
             "no such column")  # fmt: skip

    def refused(fragment: str, sheet: Path | None = None, **settings: object) -> None:
        values: dict[str, object] = {"by": "group", "subject": "sample", **settings}
        with pytest.raises(TmescopeError, match=fragment) as error:
            run_compare(store, model, settings=CompareSettings(**values),  # type: ignore[arg-type]
                        samplesheet=sheet, out=out)  # fmt: skip
        assert "\n" not in str(error.value)

    refused("single patient", subject="patient")  # one patient per group: no replicates
    same = {s: {"group": "same"} for s in ("synth_00", "synth_01", "synth_02", "synth_03")}
    refused("one group", _sheet(cohort, tmp_path / "one.csv", same))
    refused("unknown population 'dragon'", pairs=(("t_cell", "dragon"),))
    refused("--t-cells CD8: no such population", t_cell="CD8")
    alien = _sheet(cohort, tmp_path / "alien.csv", {"synth_03": {"sample": "synth_99"}})
    refused("synth_99", alien)
    assert not out.exists()
    done = run_cli("compare", store, model, "--by", "group", "--subject", "sample", "--json")
    assert done.returncode == 0, done.stderr
    assert {s["sample"] for s in json.loads(done.stdout)["samples"]} == {
        "synth_00", "synth_01", "synth_02", "synth_03"}  # fmt: skip


def test_the_report_says_what_differs_between_groups(
    cohort: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    from tmescope.jobs.report import write_report
    from tmescope.jobs.report_compare import comparison_now
    from tmescope.store import CohortStore

    # One patient per group in the stored sheet: nothing the report could compare.
    assert comparison_now(cohort["store"], cohort["model"], tmp_path / "none", None) is None
    store = tmp_path / "c.zarr"
    shutil.copytree(cohort["store"], store)
    opened = CohortStore.open(store, mode="a")
    for sample in opened.sample_ids():  # each section its own patient: 2 vs 2
        meta = dict(opened.sample_record(sample).metadata)
        opened.update_sample_metadata(sample, {**meta, "patient": sample})
    part = comparison_now(store, cohort["model"], tmp_path / "cmp", None)
    assert part is not None
    index = write_report(store, tmp_path / "report.html", model_dir=cohort["model"],
                         samples=["synth_00"], sections=[part])  # fmt: skip
    html = index.read_text()
    assert "What differs between groups" in html and "naive p (not used)" in html
    page = (tmp_path / "report_files" / "synth_00.html").read_text()
    assert "Immune phenotype" in page and "immune phenotype called from the maps" in page
