"""The viewer page in a real headless Chromium: the first view a newcomer gets, slide and spots
drawn, recolouring, a clicked spot's attention and similar regions, sub-spot bins.
``tmescope serve`` runs as a subprocess, as a user runs it.

Skipped, with the reason, only when no Chromium or Playwright can be had or the page's npm
libraries are not installed (``make viewer-assets``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tmescope.viz.app.assets import openseadragon_dir

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser_ready() -> None:
    """Skips, saying why, unless the browser and the page's libraries are present."""
    if openseadragon_dir() is None:
        pytest.skip("the viewer's npm libraries are absent: run `make viewer-assets`")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is absent")


@pytest.fixture(scope="module")
def trained_store(browser_ready: None, viewer_store: tuple[Path, Path]) -> tuple[Path, Path]:
    """The shared viewer store, once the browser and the page's libraries are known present."""
    return viewer_store


@pytest.fixture(scope="module")
def server(trained_store: tuple[Path, Path]) -> Iterator[str]:
    with _serving(*trained_store) as url:
        yield url


@contextmanager
def _serving(store: Path, model: Path) -> Iterator[str]:
    """``tmescope serve store --model model`` on a free port, stopped on leaving."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tmescope", "serve", str(store), "--model", str(model),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_page_draws_the_slide_recolours_and_explains_a_clicked_spot(server: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server)
            page.wait_for_selector("body[data-slide='loaded'][data-coloured-by]", timeout=20_000)
            page.wait_for_timeout(1000)  # tiles fade in
            drawn = page.evaluate("window.tmescopeViewer.state.overlay.drawn")
            assert drawn == 90, "every spot of synth_00 is on screen at the home zoom"
            assert not page.locator("#subspot").is_visible()  # the model has no sub-spot model
            with_spots = page.locator("#slide").screenshot()
            page.locator("#opacity").fill("0")  # the slider hides the spots: H&E alone
            slide_alone = page.locator("#slide").screenshot()
            assert _stained_fraction(slide_alone) > 0.1 and slide_alone != with_spots
            page.locator("#opacity").fill("0.75")
            assert page.locator("#legend-title").inner_text().startswith("t_cells")

            page.select_option("#layer", "predicted")
            gene = page.evaluate("window.tmescopeViewer.state.sample.genes[0]")
            page.select_option("#feature", gene)
            page.wait_for_selector(f"body[data-coloured-by='predicted:{gene}']", timeout=60_000)
            values = page.evaluate("window.tmescopeViewer.state.overlay.values")
            assert len(values) == 90 + 285 and all(v is not None for v in values)

            barcode = page.evaluate(
                "window.tmescopeViewer.state.rows.barcode"
                ".find((b, i) => window.tmescopeViewer.state.rows.kind[i] === 'spot')"
            )
            where = page.evaluate(f"window.tmescopeViewer.pagePositionOf({barcode!r})")
            page.mouse.click(where["x"], where["y"])
            page.wait_for_selector(f"body[data-selected={barcode!r}]", timeout=10_000)
            page.wait_for_selector("#similar-list img", timeout=20_000)
            page.wait_for_function(
                "[...document.querySelectorAll('#similar-list img')]"
                ".every(img => img.complete && img.naturalWidth > 0)",
                timeout=20_000,
            )
            assert page.locator("#similar-list figure").count() == 8
            page.wait_for_selector("body[data-similar='raw:8']", timeout=20_000)
            page.select_option("#similar-space", "fused")  # alike in image and surroundings
            page.wait_for_selector("body[data-similar='fused:8']", timeout=20_000)
            assert page.locator("#attention-list li").count() >= 3
            assert page.locator("#spot-title").inner_text().endswith(f"{barcode} (spot)")
            page.wait_for_timeout(500)  # let the last tiles fade in before the picture
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "viewer.png"))

            # Niches colour the spots by category; the panel shows who meets whom.
            page.select_option("#layer", "niches")
            page.wait_for_selector("body[data-coloured-by='niches']", timeout=60_000)
            assert page.locator("#legend-categories li").count() >= 2
            labels = page.evaluate("window.tmescopeViewer.state.overlay.values")
            assert len(labels) == 90 + 285 and len({v for v in labels if v is not None}) >= 2
            page.wait_for_selector("body[data-interactions]", timeout=60_000)
            assert page.locator("#interactions-pairs tr").count() >= 2
            page.wait_for_function(
                "['interactions-heatmap', 'interactions-curves'].every(id => "
                "document.getElementById(id).complete && "
                "document.getElementById(id).naturalWidth > 0)",
                timeout=30_000,
            )
            page.screenshot(path=str(ARTIFACTS / "viewer-niches.png"))

            # A similar region opens its own sample, centred on it.
            hit = page.locator("#similar-list figcaption").first.inner_text()
            other = hit.split(" ")[1]
            page.locator("#similar-list figure").first.click()
            page.wait_for_function(
                f"window.tmescopeViewer.state.sample.id === {other!r}", timeout=20_000
            )
            assert errors == []
        finally:
            browser.close()


def test_the_sub_spot_layers_draw_every_bin_and_give_the_spots_back(subspot_server: str) -> None:
    from playwright.sync_api import sync_playwright

    url = subspot_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_selector("body[data-slide='loaded'][data-coloured-by]", timeout=20_000)
            assert page.locator("#subspot").is_visible()
            assert not page.locator("#subspot-b-label").is_visible()  # for interfaces only
            before = _painted(page)
            page.locator("#subspot-on").check()
            page.wait_for_selector("body[data-coloured-by^='subspot:populations:']", timeout=60_000)
            population = page.evaluate("document.getElementById('subspot-a').value")
            n_bins = page.evaluate("window.tmescopeViewer.state.bins.n")
            assert page.evaluate("window.tmescopeViewer.state.overlay.binsDrawn") == n_bins > 90
            assert page.evaluate("window.tmescopeViewer.state.overlay.drawn") == 0  # no spots
            assert page.locator("#legend-title").inner_text().startswith(population)
            assert page.locator("#legend-min").inner_text() != "–"
            assert _painted(page) > before  # squares tile what discs left bare
            page.wait_for_timeout(500)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "viewer-subspot.png"))

            page.select_option("#subspot-layer", "interface")
            assert page.locator("#subspot-b-label").is_visible()
            other = page.evaluate("document.getElementById('subspot-b').value")
            assert other != population
            page.wait_for_selector(
                f"body[data-coloured-by='subspot:interface:{population}|{other}']",
                timeout=30_000,
            )
            assert (
                page.locator("#legend-title").inner_text().startswith(f"{population} meets {other}")
            )

            page.locator("#subspot-on").uncheck()  # back to the spots, coloured as before
            page.wait_for_selector("body[data-coloured-by^='measured:']", timeout=30_000)
            assert page.evaluate("window.tmescopeViewer.state.overlay.drawn") == 90
            assert page.evaluate("window.tmescopeViewer.state.overlay.binsDrawn") == 0
            assert errors == []
        finally:
            browser.close()


@pytest.fixture(scope="module")
def with_a_slide(
    trained_store: tuple[Path, Path],
    viewer_subspot_model: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path]:
    """A copy of the viewer's store whose first sample is an H&E-only slide (no spots, no
    counts: an archived block), with the sub-spot model."""
    from tmescope.jobs.embed import EmbedSettings, SlideInput
    from tmescope.workflows import embed_samples, fullres_image_of

    store, model = viewer_subspot_model
    copy = tmp_path_factory.mktemp("first-view") / "cohort.zarr"
    shutil.copytree(store, copy)
    slide = SlideInput(
        fullres_image_of(store.parent / "cohort" / "synth_02"), sample_id="archive_00"
    )
    # No sub-spot bins for it: the first view never asks for them, and they triple the time.
    settings = EmbedSettings(subspot_um=0)
    embed_samples([slide], store=copy, encoder="test-vit-tiny", device="cpu", settings=settings)
    return copy, model


@pytest.fixture(scope="module")
def subspot_server(with_a_slide: tuple[Path, Path]) -> Iterator[str]:
    """The viewer of that store and the sub-spot model (shared: a server starts in seconds)."""
    with _serving(*with_a_slide) as url:
        yield url


def test_the_first_view_opens_a_sample_with_spots_and_every_list_filled(
    subspot_server: str,
) -> None:
    """Listed first, the H&E-only slide has nothing measured: the page starts on a sample with
    spots instead, and an H&E-only slide opens on its predictions, never on an error."""
    from playwright.sync_api import sync_playwright

    url = subspot_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_selector("body[data-slide='loaded'][data-coloured-by]", timeout=20_000)
            options = page.eval_on_selector_all("#sample option", "os => os.map(o => o.value)")
            assert options[0] == "archive_00"  # listed first, not opened first
            sample = page.evaluate("window.tmescopeViewer.state.sample")
            assert sample["id"] == "synth_00" and sample["n_spots"] == 90
            assert page.locator("#status.error").count() == 0
            assert page.locator("#status").inner_text() == "synth_00: 90 spots, 285 tiles"
            assert page.locator("#feature option").count() > 10  # states and genes
            populations = page.locator("#subspot-a option").count()
            assert populations > 2 and page.locator("#subspot-b option").count() == populations
            first = page.evaluate("document.getElementById('feature').value")
            assert page.locator("#legend-title").inner_text() == f"{first} — measured"

            page.select_option("#sample", "archive_00")  # the slide: its predictions
            page.wait_for_selector("body[data-coloured-by^='predicted:']", timeout=30_000)
            page.wait_for_function(
                "window.tmescopeViewer.state.sample.id === 'archive_00'", timeout=10_000
            )
            assert page.locator("#status.error").count() == 0
            assert page.locator("#layer option[value='measured']").is_disabled()
            assert page.evaluate("window.tmescopeViewer.state.overlay.drawn") > 0  # its tiles
            assert errors == []
        finally:
            browser.close()


@pytest.fixture(scope="module")
def compare_server(
    browser_ready: None, compare_store: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The viewer of a copy of the comparison's store whose inflamed group is named in HTML,
    which the page must show as text."""
    from tmescope.store import CohortStore

    store, model = compare_store
    copy = tmp_path_factory.mktemp("compare-page") / "cohort.zarr"
    shutil.copytree(store, copy)
    opened = CohortStore.open(copy, mode="a")
    for sample_id in opened.sample_ids():
        metadata = dict(opened.sample_record(sample_id).metadata)
        if metadata["group"] == "inflamed":
            opened.update_sample_metadata(sample_id, {**metadata, "group": HOSTILE_GROUP})
    with _serving(copy, model) as url:
        yield url


HOSTILE_GROUP = "<b>inflamed</b><img src=x onerror=alert(1)>"


def test_the_comparison_panel_shows_the_groups_pairs_and_phenotypes(compare_server: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("dialog", lambda dialog: errors.append(f"dialog {dialog.message}"))
            page.goto(compare_server)
            page.wait_for_selector("body[data-slide='loaded'][data-coloured-by]", timeout=20_000)
            assert page.locator("#compare").is_visible()
            assert page.locator("#compare-design").inner_text() == (
                f"Sections grouped by group: {HOSTILE_GROUP} (2 patients), excluded (2 patients)."
            )
            page.locator("#compare-load").click()
            page.wait_for_selector("body[data-compare]", timeout=90_000)
            status = page.locator("#compare-status").inner_text()
            assert status.endswith(f"µm sub-spot maps; effect: {HOSTILE_GROUP} − excluded.")
            head = page.locator("#compare-pairs tr").first.inner_text()
            assert "higher in" in head and "exact" in head and "naive p" in head
            assert page.locator("#compare-pairs tr").count() >= 3
            contact = page.locator("#compare-pairs tr", has_text="t_cell · tumour").inner_text()
            assert HOSTILE_GROUP in contact  # higher in the inflamed group, named as text
            # synth_00 is open: its group (as text) and its immune phenotype (ours in bold).
            line = page.locator("#compare-phenotype")
            assert line.inner_text().startswith(f"synth_00 (group {HOSTILE_GROUP}), immune phen")
            assert line.locator("b").count() == 1
            assert page.locator("#compare-counts tr").count() == 3  # the header and two groups
            assert page.locator("#compare img[src='x']").count() == 0  # nothing injected
            page.wait_for_function(
                "document.getElementById('compare-differences').complete && "
                "document.getElementById('compare-differences').naturalWidth > 0",
                timeout=30_000,
            )
            page.locator("#compare-pairs tr", has_text="t_cell · tumour").click()
            page.wait_for_function(
                "document.getElementById('compare-pair').complete && "
                "document.getElementById('compare-pair').naturalWidth > 0",
                timeout=30_000,
            )
            page.locator("#compare").scroll_into_view_if_needed()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "viewer-compare.png"))

            page.select_option("#sample", "synth_02")  # the line follows the open sample
            page.wait_for_function(
                "document.getElementById('compare-phenotype').textContent"
                ".startsWith('synth_02 (group excluded)')",
                timeout=20_000,
            )
            assert errors == []
        finally:
            browser.close()


def test_serve_refuses_a_port_in_use(trained_store: tuple[Path, Path]) -> None:
    store, _ = trained_store
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tmescope", "serve", str(store), "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert done.stderr.count("error:") == 1


def _stained_fraction(png: bytes) -> float:
    """The share of pixels that look like H&E (pink or purple), not glass or the page."""
    import io

    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(((r - g > 30) & (b - g > 10)).mean())


def _painted(page: Page) -> int:
    """How many pixels of the overlay canvas are painted (not transparent)."""
    return int(
        page.evaluate(
            "(() => { const c = document.querySelector('canvas.spot-overlay');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()"
        )
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"tmescope serve exited with {process.returncode}: {output}")
        try:
            with urllib.request.urlopen(url + "api/info", timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"tmescope serve did not answer at {url} within {timeout:.0f} s")
