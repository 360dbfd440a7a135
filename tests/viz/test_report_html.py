"""The report page: escaping, sections and contents, self-contained images, the CV table."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from tmescope.errors import InvalidParameterError
from tmescope.viz.report.gallery import GalleryCard, gallery_html
from tmescope.viz.report.genes import match_genes
from tmescope.viz.report.maps import Backdrop, MapPanel, SpotLayout, plot_map_rows
from tmescope.viz.report.page import ReportSection, figure, render_page
from tmescope.viz.report.tables import cv_section, top_targets

HOSTILE = '<script>alert("x")</script> & "quoted"'

CV = {
    "target": "both",
    "n_spots": 270,
    "folds": [{"name": "fold 1", "test": ["s0"]}, {"name": "fold 2", "test": ["s1"]}],
    "genes": ["A", "B"],
    "states": ["tumour"],
    "models": {
        "gat": {
            "mean": 0.7, "folds": [0.6, 0.8], "per_gene": {"A": 0.9, "B": 0.5},
            "states": {"mean": 0.55, "folds": [0.5, 0.6], "per_state": {"tumour": 0.55}},
            "coverage_90": 0.91,
        },
        "ridge-cv": {
            "mean": 0.4, "folds": [0.3, None], "per_gene": {"A": 0.2, "B": 0.6},
            "states": {"mean": 0.3, "folds": [0.3, 0.3], "per_state": {"tumour": 0.3}},
        },
    },
}  # fmt: skip


def page_with(*sections: ReportSection) -> str:
    return render_page(title=HOSTILE, facts=[("store", HOSTILE)], sections=list(sections))


def test_user_text_is_escaped_everywhere() -> None:
    page = page_with(ReportSection(HOSTILE, "<p>trusted</p>"))
    assert "<script>" not in page
    assert page.count("&lt;script&gt;") == 5  # <title>, <h1>, facts, contents, section heading
    assert "&quot;quoted&quot;" in page
    assert "<p>trusted</p>" in page  # a section's markup is placed as given


def test_sections_keep_their_order_and_nest_in_the_contents() -> None:
    page = page_with(
        ReportSection("Samples", "<p>all</p>"),
        ReportSection("s0", "<p>zero</p>", level=3, anchor="sample-s0"),
        ReportSection("s1", "<p>one</p>", level=3),
        ReportSection("Niches", "<p>extra</p>"),
        ReportSection("Niches", "<p>again</p>"),
    )
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert ids == ["samples", "sample-s0", "s1", "niches", "niches-2"]
    nav = page[page.index("<nav>") : page.index("</nav>")]
    assert re.findall(r'href="#([^"]+)"', nav) == ids
    # The two samples are listed inside the Samples entry, before Niches.
    assert re.search(r"#samples\">Samples</a><ol><li><a href=\"#sample-s0\">", nav)
    assert page.index("<p>zero</p>") < page.index("<p>extra</p>") < page.index("<p>again</p>")


def test_a_section_level_is_2_or_3() -> None:
    with pytest.raises(ValueError, match="level"):
        ReportSection("x", "", level=4)


def test_images_travel_inside_the_page() -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    cards = [GalleryCard(pixels, "hit", HOSTILE), GalleryCard(None, "gone", "no slide")]
    html = gallery_html(GalleryCard(pixels, "query", "q"), cards, heading="like q")
    page = page_with(
        ReportSection("Figure", figure(b"\x89PNG..", mime="image/png", alt=HOSTILE, caption="c")),
        ReportSection("Gallery", html),
    )
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith(("data:", "#")) for s in sources)
    assert "http://" not in page and "https://" not in page
    assert page.count('src="data:image/jpeg;base64,') == 2 and "image not available" in page
    assert 'src="data:image/png;base64,iVBORy4u"' in page  # the bytes given, base64


def test_maps_share_a_scale_and_come_back_as_jpeg() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 1000, (50, 2))
    layout = SpotLayout.of(xy, spot_px=40.0, tiles_xy=rng.uniform(0, 1000, (30, 2)))
    backdrop = Backdrop(np.full((100, 100, 3), 230, dtype=np.uint8), (0.0, 1000.0, 0.0, 1000.0))
    row = [
        MapPanel("measured", rng.normal(size=50), scale="g"),
        MapPanel("predicted", rng.normal(size=50), tiles=rng.normal(size=30), scale="g"),
        MapPanel("empty", np.full(50, np.nan)),
    ]
    data = plot_map_rows(backdrop, layout, [row], panel_in=2.0)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] > 2 * pixels.shape[0]  # three panels side by side
    assert pixels.std() > 10
    with pytest.raises(ValueError, match="panel"):
        plot_map_rows(backdrop, layout, [[]], panel_in=2.0)


def test_cv_section_tabulates_every_model_and_marks_the_best() -> None:
    html = cv_section(CV)
    rows = re.findall(r"<tr( class=\"best\")?><td>([^<]+)</td>((?:<td>[^<]*</td>)*)</tr>", html)
    table = {name: (best, re.findall(r"<td>([^<]*)</td>", cells)) for best, name, cells in rows}
    assert table["gat"] == (' class="best"', ["0.700", "0.550", "0.600", "0.800", "0.91"])
    assert table["ridge-cv"] == ("", ["0.400", "0.300", "0.300", "–", "–"])
    assert "held out: s0" in html and "held out: s1" in html
    assert "leave-one-slide-out" in html
    # Per-gene details: best gene of the first model first.
    details = html[html.index("Pearson per gene") :]
    assert details.index("<td>A</td>") < details.index("<td>B</td>")


def test_top_targets_follow_the_chosen_model() -> None:
    assert top_targets(CV, ["B", "A", "C"], key="per_gene", model="gat") == ["A", "B", "C"]
    assert top_targets(CV, ["A", "B"], key="per_gene", model="ridge-cv") == ["B", "A"]
    assert top_targets(CV, ["tumour"], key="per_state", model="gat") == ["tumour"]


def test_genes_match_whatever_their_case_and_unknown_ones_are_named() -> None:
    assert match_genes(["cd3e", "MS4A1", "CD3E"], ["CD3E", "MS4A1"], where="w", hint="h") == [
        "CD3E",
        "MS4A1",
    ]
    with pytest.raises(InvalidParameterError, match=r"CD3F.*did you mean CD3E"):
        match_genes(["CD3F"], ["CD3E", "MS4A1"], where="the panel", hint="h")


def test_jpeg_bytes_in_a_page_decode() -> None:
    pixels = np.zeros((20, 20, 3), dtype=np.uint8)
    html = gallery_html(GalleryCard(pixels, "q", ""), [], heading="h")
    (payload,) = re.findall(r"base64,([^\"]+)", html)
    with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
        assert image.size == (20, 20)


def test_a_page_per_sample_named_so_that_no_two_collide_when_unzipped() -> None:
    from pathlib import Path

    from tmescope.viz.report.folder import ReportLayout

    layout = ReportLayout.of(Path("/out/My report.html"), ["S1", "s1", "a.b"])
    # S1 and s1 would be one file on macOS and Windows, where a zipped report may be opened.
    assert layout.files == {"S1": "S1.html", "s1": "s1-2.html", "a.b": "a.b.html"}
    assert layout.page_href("s1") == "My%20report_files/s1-2.html"
    assert layout.links_of("S1") == [
        ("↑ index of the report", "../My%20report.html"),
        ("s1 →", "s1-2.html"),
    ]
    assert [label for label, _ in layout.links_of("a.b")] == ["↑ index of the report", "← s1"]
    page = render_page(title="t", facts=[], sections=[], links=layout.links_of("s1"))
    assert page.count('<nav class="pager">') == 2  # above and below the page
    assert '<a href="../My%20report.html">' in page and '<a href="a.b.html">a.b →</a>' in page
