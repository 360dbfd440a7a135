"""``write_report`` (twin of ``tmescope report``) on the viewer's trained, indexed store: an index
that links a page per sample, each page small, the set written whole or not at all."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

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
from tmescope.jobs.report import write_report
from tmescope.viz.report import ReportPart, ReportSection

pytestmark = pytest.mark.slow

SAMPLES = ["synth_00", "synth_01", "synth_02"]
PAGE_BOUND = 2_000_000  # bytes: three maps of 90 spots and their H&E


class Written:
    """A report on disk: its index, its pages by sample, and what it said while drawing."""

    def __init__(self, index: Path, messages: list[str], per_sample: list[str]) -> None:
        self.index, self.messages, self.per_sample = index, messages, per_sample
        self.page = index.read_text(encoding="utf-8")
        folder = index.with_name(f"{index.stem}_files")
        self.pages = {p.stem: p.read_text(encoding="utf-8") for p in folder.glob("*.html")}


@pytest.fixture(scope="module")
def written(viewer_store: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Written:
    store, model = viewer_store
    messages: list[str] = []
    asked: list[str] = []

    def per_sample(sample_id: str) -> list[ReportSection]:
        asked.append(sample_id)
        return [ReportSection("Lead's part", f"<p>about {sample_id}</p>")]

    part = ReportPart(
        index=(ReportSection("Niches", "<p>lead's niche part</p>"),), per_sample=per_sample
    )
    out = tmp_path_factory.mktemp("report") / "out" / "report.html"
    write_report(
        store, out, model_dir=model, sections=[part, ReportSection("Notes", "<p>plain</p>")],
        progress=messages.append,
    )  # fmt: skip
    return Written(out, messages, asked)


def images(page: str, alt: str) -> list[np.ndarray]:
    """The decoded images of ``page`` whose alt text is ``alt``."""
    found = re.findall(rf'src="data:image/jpeg;base64,([^"]+)" alt="{re.escape(alt)}"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d))).convert("RGB")) for d in found]


def links(page: str) -> list[str]:
    """Every address a page links to, in-page anchors left out."""
    return [unquote(h) for h in re.findall(r'href="([^"]*)"', page) if not h.startswith("#")]


def test_the_index_links_every_sample_page_and_each_page_links_back(written: Written) -> None:
    index = written.index
    assert sorted(written.pages) == SAMPLES
    targets = links(written.page)
    assert {t for t in targets} == {f"report_files/{s}.html" for s in SAMPLES}
    assert all((index.parent / t).is_file() for t in targets)
    # The samples table: one row per sample, its thumbnail linking to its page.
    table = written.page[written.page.index("<h2>Samples</h2>") :].split("</table>")[0]
    assert table.count("<tr><td>") == 3 and len(images(table, "H&amp;E of synth_01")) == 1
    assert index.stat().st_size < 1_000_000
    for i, sample in enumerate(SAMPLES):
        path = index.parent / "report_files" / f"{sample}.html"
        assert path.stat().st_size < PAGE_BOUND
        neighbours = {f"{s}.html" for s in SAMPLES[max(i - 1, 0) : i + 2] if s != sample}
        assert set(links(written.pages[sample])) == {"../report.html", *neighbours}
        assert all((path.parent / t).is_file() for t in links(written.pages[sample]))
    for page in (written.page, *written.pages.values()):  # nothing outside the report
        assert not re.search(r'(?:src|href)="(?:[a-z]+:)?//', page) and "http" not in page
        assert all(s.startswith("data:") for s in re.findall(r'src="([^"]*)"', page))


def test_each_sample_page_holds_its_h_and_e_and_maps(written: Written) -> None:
    for sample in SAMPLES:
        page = written.pages[sample]
        (he,) = images(page, f"H&amp;E of {sample}")
        assert max(he.shape[:2]) <= 900 and he.std() > 10
        genes, states = images(page, f"maps of {sample}")
        assert genes.std() > 10 and states.std() > 10
        # Two states per row of four panels, five rows for ten states: taller than wide.
        assert states.shape[0] > states.shape[1]
        assert "The model learnt from this sample" in page
        assert f"maps of {sample}" not in written.page  # maps live on the pages only


def test_callers_parts_go_to_the_index_and_to_each_page(written: Written) -> None:
    assert written.per_sample == SAMPLES  # once per sample, as its page was written
    assert "<p>lead's niche part</p>" in written.page and "<p>plain</p>" in written.page
    order = [written.page.index(f"<h2>{t}</h2>") for t in ("Cross-validation", "Samples")]
    order += [written.page.index(f"<h2>{t}</h2>") for t in ("Similar regions", "Niches", "Notes")]
    assert order == sorted(order)
    for sample in SAMPLES:
        assert f"<p>about {sample}</p>" in written.pages[sample]
        assert f"<p>about {sample}</p>" not in written.page


def test_progress_names_the_sample_and_the_time_left(written: Written) -> None:
    drawing = [m for m in written.messages if m.startswith("report: drawing sample")]
    assert drawing[0] == "report: drawing sample synth_00 (1 of 3)"
    assert re.fullmatch(
        r"report: drawing sample synth_02 \(3 of 3\); about (\d+ min )?\d+ s left", drawing[2]
    )
    assert "3 sample pages" in written.messages[-1]


def test_default_genes_are_the_heads_best_cross_validated(
    written: Written, viewer_store: tuple[Path, Path]
) -> None:
    from tmescope.fusion.model_dir import load_model

    model = viewer_store[1]
    predicted = set(load_model(model).spec.genes)
    per_gene = json.loads((model / "model.json").read_text())["cv"]["models"]["gat"]["per_gene"]
    best = sorted((g for g in per_gene if g in predicted), key=lambda g: -per_gene[g])[:4]
    for page in written.pages.values():
        assert re.findall(r"<figcaption><b>([^<]+)</b>\. Per gene", page) == [", ".join(best)]


def test_the_index_holds_the_cv_table_and_galleries_linking_to_pages(written: Written) -> None:
    start = written.page.index('<table class="cv">')
    table = written.page[start : written.page.index("</table>", start)]
    assert re.search(r"<tr[^>]*><td>gat</td>", table) and "held out: synth_00" in table
    part = written.page[
        written.page.index("<h2>Similar regions</h2>") : written.page.index("<h2>Niches</h2>")
    ]
    galleries = [block.partition("</h4>") for block in part.split("<h4>")[1:]]
    assert len(galleries) == 3
    for heading, _, cards in galleries:
        assert heading.startswith("Like the highest predicted ")
        assert cards.count("<figure") == 7 and cards.count('class="query"') == 1
        query = re.search(r"<b>query: (synth_\d\d)</b>", cards)
        hits = re.findall(r"<b>#\d (synth_\d\d)</b>", cards)
        assert query and len(hits) == 6 and query.group(1) not in hits
        assert cards.count('<a href="report_files/synth_') == 7


@pytest.fixture(scope="module")
def bare(viewer_store: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The viewer's store without its similarity index."""
    store = viewer_store[0]
    copy = tmp_path_factory.mktemp("bare") / "bare.zarr"
    shutil.copytree(store, copy, ignore=lambda d, names: ["index"] if Path(d) == store else [])
    return copy


def test_a_rerun_replaces_the_earlier_report_whole(bare: Path, tmp_path: Path) -> None:
    out = tmp_path / "measured.html"
    write_report(bare, out, samples=["synth_00", "synth_01"], genes=["satb2", "Mdm2"])
    first = out.read_text(encoding="utf-8")
    assert re.findall(r"<figcaption><b>([^<]+)</b>\. Measured", first) == []  # on the pages
    page = (tmp_path / "measured_files" / "synth_01.html").read_text(encoding="utf-8")
    assert re.findall(r"<figcaption><b>([^<]+)</b>\. Measured", page) == ["SATB2, MDM2"]
    assert "Cross-validation" not in first and "uncertainty" not in page
    assert f"run `tmescope index {bare}`" in first
    write_report(bare, out, samples=["synth_02"], genes=["SATB2"])
    assert sorted(p.name for p in (tmp_path / "measured_files").iterdir()) == ["synth_02.html"]
    assert set(links(out.read_text(encoding="utf-8"))) == {"measured_files/synth_02.html"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["measured.html", "measured_files"]


def test_a_failed_run_leaves_the_earlier_report_as_it_was(
    bare: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmescope.jobs.report_samples import SampleDrawer

    out = tmp_path / "r.html"
    write_report(bare, out, samples=["synth_00"], genes=["SATB2"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    draw = SampleDrawer.draw

    def draw_then_fail(self: SampleDrawer, sample_id: str):  # type: ignore[no-untyped-def]
        if sample_id == "synth_02":
            raise RuntimeError("killed while drawing synth_02")
        return draw(self, sample_id)

    monkeypatch.setattr(SampleDrawer, "draw", draw_then_fail)
    with pytest.raises(RuntimeError, match="synth_02"):
        write_report(bare, out, samples=["synth_01", "synth_02"], genes=["SATB2"])
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # the old index and page, and no work left behind


def test_an_index_never_links_a_missing_page_between_the_two_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the pages were swapped in and before the index: the old index still finds
    every page it links; the next run puts the whole new set in place."""
    from tmescope.jobs import report_files

    def writer(samples: list[str]) -> Callable[[Path], None]:
        def write(work: Path) -> None:
            (work / "r_files").mkdir()
            for s in samples:
                (work / "r_files" / f"{s}.html").write_text(f"page of {s}")
            hrefs = "".join(f'<a href="r_files/{s}.html">{s}</a>' for s in samples)
            (work / "r.html").write_text(hrefs)

        return write

    index = tmp_path / "r.html"
    report_files.write_report_files(index, writer(["a", "b"]))
    replace = report_files.replace_path
    calls: list[Path] = []

    def killed_before_the_index(source: Path, target: Path) -> None:
        calls.append(target)
        if target == index:
            raise KeyboardInterrupt  # as a kill would, between the two renames
        replace(source, target)

    monkeypatch.setattr(report_files, "replace_path", killed_before_the_index)
    with pytest.raises(KeyboardInterrupt):
        report_files.write_report_files(index, writer(["c"]))
    assert calls == [tmp_path / "r_files", index]
    assert all((tmp_path / t).is_file() for t in links(index.read_text()))  # a and b still there
    assert (tmp_path / "r_files" / "c.html").is_file()
    monkeypatch.setattr(report_files, "replace_path", replace)
    report_files.write_report_files(index, writer(["c"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r_files"]
    assert sorted(p.name for p in (tmp_path / "r_files").iterdir()) == ["c.html"]


def test_a_sample_whose_folder_is_gone_is_drawn_without_its_image(
    viewer_store: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = viewer_store[0].parent / "cohort" / "synth_01"
    moved = folder.with_name("synth_01.moved")
    folder.rename(moved)
    try:
        out = write_report(viewer_store[0], tmp_path / "gone.html", samples=["synth_01"])
    finally:
        moved.rename(folder)
    page = (tmp_path / "gone_files" / "synth_01.html").read_text(encoding="utf-8")
    assert "The H&amp;E cannot be shown" in page and "not readable" in out.read_text()
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
    viewer_store: tuple[Path, Path], tmp_path: Path, kwargs: dict, error: type, fragment: str
) -> None:
    store, model = viewer_store
    with pytest.raises(error, match=fragment):
        write_report(
            store,
            tmp_path / "r.html",
            model_dir=model if kwargs.pop("model", False) else None,
            **kwargs,
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_a_foreign_folder_and_a_foreign_model_are_refused(
    viewer_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, model = viewer_store
    with pytest.raises(StoreNotFoundError):
        write_report(tmp_path / "none.zarr", tmp_path / "r.html")
    with pytest.raises(InvalidParameterError, match="is a directory"):
        write_report(store, tmp_path)
    mine = tmp_path / "r_files"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a report's")
    with pytest.raises(InvalidParameterError, match=r"not a report's pages \(notes.txt\)"):
        write_report(store, tmp_path / "r.html")
    foreign = tmp_path / "foreign"
    shutil.copytree(model, foreign)
    header = json.loads((foreign / "model.json").read_text())
    header["fingerprint"]["weights"] = "seed:1"
    (foreign / "model.json").write_text(json.dumps(header))
    with pytest.raises(ModelMismatchError, match="tmescope train"):
        write_report(store, tmp_path / "s.html", model_dir=foreign)
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "s.html").exists()


def test_cli_writes_the_report_and_turns_bad_input_into_exit_2(
    viewer_store: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tmescope.cli.main import app, main

    out = tmp_path / "cli.html"
    args = ["report", str(viewer_store[0]), "--out", str(out), "--samples", "synth_02"]
    result = CliRunner().invoke(app, [*args, "--genes", "SATB2,MDM2"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout and "cli_files/" in result.stdout
    assert "report: drawing sample synth_02 (1 of 1)" in result.stderr
    assert (tmp_path / "cli_files" / "synth_02.html").is_file()

    monkeypatch.setattr(sys, "argv", ["tmescope", *args, "--genes", "NOTAGENE"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "NOTAGENE" in errors[0]
