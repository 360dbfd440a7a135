"""The static report of a cohort store (twin of ``tmescope report``): an index and a page per sample.

Joins the rooms: reads the store (and the model, when given), draws each sample in turn
(``jobs.report_samples``) and writes its page at once, searches the similarity index for the
galleries, and hands plain arrays to ``viz.report``, which draws and assembles. The index holds
the cohort: the cross-validation table, the samples table (a thumbnail and a link per sample),
the galleries and the cohort-level parts callers add (:class:`~tmescope.viz.report.ReportPart`:
niches, interactions, sub-spot pairs), whose per-sample sections go on the samples' pages.
Memory holds one sample's figures at a time; the cost grows linearly with the samples.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope._version import __version__
from tmescope.errors import InvalidParameterError
from tmescope.jobs.report_files import check_pages_folder, write_report_files
from tmescope.jobs.report_samples import HEAD, SampleDrawer
from tmescope.progress import Eta, duration
from tmescope.viz.report.folder import ReportLayout, pages_folder
from tmescope.viz.report.gallery import GalleryQuery, similar_regions
from tmescope.viz.report.genes import measured_genes, measured_panel, predicted_genes
from tmescope.viz.report.page import ReportPart, ReportSection, note, render_page
from tmescope.viz.report.sample import OverviewRow, samples_overview
from tmescope.viz.report.sources import SlideSources

if TYPE_CHECKING:
    from tmescope.fusion.model_dir import FusionModel
    from tmescope.store import CohortStore

log = logging.getLogger(__name__)

MAX_QUERIES = 3  # similar-region galleries
GALLERY_K = 6  # regions per gallery
Progress = Callable[[str], None]


def write_report(
    store: Path | str,
    out: Path | str,
    *,
    model_dir: Path | str | None = None,
    samples: Sequence[str] | None = None,
    genes: Sequence[str] | None = None,
    sections: Sequence[ReportSection | ReportPart] = (),
    progress: Progress | None = None,
) -> Path:
    """Write the report of ``store``: its index at ``out`` (HTML) and a page per sample in the
    folder beside it (``<out stem>_files/``); return the index's path.

    With ``model_dir`` (a ``tmescope train`` folder) the report holds its cross-validation
    table and, per sample, measured beside predicted maps and the TME states; without, measured
    maps only. ``samples`` defaults to every complete sample, ``genes`` to the model's best
    cross-validated genes (the most variable measured ones without a model), at most
    four (``viz.report.genes.MAX_GENES``). ``sections`` are added after the galleries: a
    :class:`ReportSection` to the index, a :class:`ReportPart` to the index and to each
    sample's page. ``progress`` hears which sample is being drawn, and the time left.
    Everything is checked before drawing; the index and its pages are put in place together,
    whole or not at all, replacing an earlier report at ``out``.
    """
    from tmescope.store import CohortStore

    out = _check_out(Path(out))
    opened = CohortStore.open(store, mode="r")
    chosen = _choose_samples(opened, samples)
    model = _load_model(Path(model_dir), opened) if model_dir is not None else None
    cv: Mapping[str, Any] = dict(model.info.get("cv") or {}) if model is not None else {}
    if model is not None:
        shown = predicted_genes(genes, model.spec.genes, cv=cv, head=HEAD, model_path=model.path)
    else:
        shown = measured_genes(genes, measured_panel(opened, chosen))
    parts = [s if isinstance(s, ReportPart) else ReportPart(index=(s,)) for s in sections]
    layout = ReportLayout.of(out, chosen)
    title = f"tmescope report: {opened.path.name}"
    cohort: list[ReportSection] = [_cv_part(model, cv)] if model is not None else []

    def write(work: Path) -> None:
        (work / layout.pages_name).mkdir()
        with ExitStack() as stack:
            sources = SlideSources(opened, stack)
            drawer = SampleDrawer(opened, model=model, cv=cv, genes=shown, sources=sources)
            rows, peaks = _write_pages(
                work / layout.pages_name, layout, drawer, sources, parts, title=title,
                progress=progress,
            )  # fmt: skip
            queries = _queries(opened, chosen, model, cv, peaks)
            _say(progress, f"report: similar-region galleries for {len(queries)} queries")
            gallery = similar_regions(opened, sources, queries, k=GALLERY_K, layout=layout)
        index = render_page(
            title=title, facts=_header_facts(opened, chosen, model),
            sections=[
                *cohort, samples_overview(rows, columns=drawer.columns), gallery,
                *(s for part in parts for s in part.index),
            ],
        )  # fmt: skip
        (work / layout.index_name).write_text(index, encoding="utf-8")

    write_report_files(out, write)
    _say(progress, _sizes(out, pages_folder(out)))
    return out


def _write_pages(
    folder: Path,
    layout: ReportLayout,
    drawer: SampleDrawer,
    sources: SlideSources,
    parts: Sequence[ReportPart],
    *,
    title: str,
    progress: Progress | None,
) -> tuple[list[OverviewRow], dict[str, GalleryQuery]]:
    """Draw each sample and write its page at once; keep its row of the samples table and
    where each TME state peaks highest so far (a few numbers), nothing else."""
    rows: list[OverviewRow] = []
    peaks: dict[str, GalleryQuery] = {}
    n, eta = len(layout.order), Eta(len(layout.order))
    for i, sample_id in enumerate(layout.order):
        left = eta.left(i)
        tail = f"; about {duration(left)} left" if left is not None else ""
        _say(progress, f"report: drawing sample {sample_id} ({i + 1} of {n}){tail}")
        drawn = drawer.draw(sample_id)
        sources.release(sample_id)  # its counts and slide: opened again only for a gallery
        page = render_page(
            title=f"{sample_id} · {title}", facts=drawn.facts,
            sections=[drawn.maps, *(s for part in parts for s in part.sections_of(sample_id))],
            links=layout.links_of(sample_id),
        )  # fmt: skip
        (folder / layout.files[sample_id]).write_text(page, encoding="utf-8")
        rows.append(
            OverviewRow(sample_id, layout.page_href(sample_id), drawn.thumbnail, drawn.cells)
        )
        for peak in drawn.peaks:
            if peak.label not in peaks or peak.value > peaks[peak.label].value:
                peaks[peak.label] = peak
    return rows, peaks


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
    else:  # once: the CLI shows progress itself, and its log handler would say it again
        log.info("%s", message)


def _sizes(index: Path, pages: Path) -> str:
    sizes = [p.stat().st_size for p in pages.iterdir()]
    return (
        f"report: wrote {index} ({index.stat().st_size / 1e6:.1f} MB) and {len(sizes)} "
        f"sample pages in {pages} (largest {max(sizes, default=0) / 1e6:.1f} MB)"
    )


def _check_out(out: Path) -> Path:
    if out.is_dir():
        raise InvalidParameterError(
            f"--out must name an HTML file to write, but {out} is a directory; give a file "
            f"path such as {out / 'report.html'}"
        )
    check_pages_folder(out)
    return out


def _choose_samples(store: CohortStore, samples: Sequence[str] | None) -> list[str]:
    from tmescope.fusion.cohort import check_samples

    if samples:
        return check_samples(store, list(dict.fromkeys(samples)))
    complete = store.sample_ids()
    if not complete:
        raise InvalidParameterError(
            f"{store.path} holds no complete sample to report on; embed samples into it with "
            "`tmescope embed`"
        )
    return complete


def _load_model(model_dir: Path, store: CohortStore) -> FusionModel:
    from tmescope.fusion.model_dir import load_model
    from tmescope.jobs.predict import check_model_fits_store

    model = load_model(model_dir, device="cpu")  # a light head: a report needs no GPU
    check_model_fits_store(model, store.fingerprint, where=str(store.path))
    return model


def _cv_part(model: FusionModel, cv: Mapping[str, Any]) -> ReportSection:
    from tmescope.viz.report.tables import cv_section

    if not cv.get("models"):
        body = note(f"{model.path}/model.json holds no cross-validation report.", warning=True)
    else:
        body = cv_section(cv)
    return ReportSection("Cross-validation", body)


def _queries(
    store: CohortStore,
    chosen: Sequence[str],
    model: FusionModel | None,
    cv: Mapping[str, Any],
    peaks: Mapping[str, GalleryQuery],
) -> list[GalleryQuery]:
    """Query spots: where the best-predicted states peak; without a model, a sample's centre."""
    from tmescope.store import RowKind
    from tmescope.viz.report.tables import top_targets

    if model is not None:
        states = top_targets(cv, list(peaks), key="per_state", model=HEAD)[:MAX_QUERIES]
        return [peaks[s] for s in states]
    sample_id = chosen[0]
    spots = np.flatnonzero(store.read_kind(sample_id) == RowKind.SPOT)
    if spots.size == 0:
        return []
    coords = store.read_coords(sample_id)[spots].astype(np.float64)
    centre = int(np.argmin(np.hypot(*(coords - coords.mean(axis=0)).T)))
    x, y = (float(v) for v in coords[centre])
    barcode = str(store.read_barcodes(sample_id)[spots[centre]])
    return [GalleryQuery(f"centre of {sample_id}", float("nan"), sample_id, barcode, x, y)]


def _header_facts(
    store: CohortStore, chosen: Sequence[str], model: FusionModel | None
) -> list[tuple[str, str]]:
    from tmescope.store.fingerprint import describe_fingerprint

    fingerprint = store.fingerprint
    detail = ", ".join(
        f"{label} {fingerprint[key]}"
        for key, label in (("input_px", "input px"), ("mpp", "µm/px"), ("pooling", "pooling"),
                           ("embed_dim", "dim"))
        if key in fingerprint
    )  # fmt: skip
    records = [store.sample_record(s) for s in chosen]
    facts = [
        ("store", str(store.path)),
        ("encoder", f"{describe_fingerprint(fingerprint)}" + (f"; {detail}" if detail else "")),
        ("samples", f"{len(chosen)} reported of {len(store.sample_ids())} in the store"),
        (
            "spots",
            f"{sum(r.n_spots for r in records):,} spots, {sum(r.n_tiles for r in records):,} "
            "grid tiles",
        ),
    ]
    if model is not None:
        spec = model.spec
        facts += [
            ("model", f"{model.model_id or 'unnamed'} ({model.path})"),
            ("trained on", ", ".join(map(str, model.info.get("samples", []))) or "not recorded"),
            ("targets", f"{spec.n_genes} genes, {len(spec.state_names)} TME states"),
        ]
    written = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    facts += [("written", written), ("tmescope", __version__)]
    return facts
