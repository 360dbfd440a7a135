"""The static report of a cohort store (twin of ``tmescope report``): one self-contained HTML file.

Joins the rooms: reads the store (and the model, when given), predicts each sample, goes back
to the Space Ranger folders recorded in the store for the H&E, searches the similarity index,
and hands plain arrays to ``viz.report``, which draws and assembles. Callers add parts of their
own (niches, interaction statistics) as :class:`~tmescope.viz.report.ReportSection` objects,
placed after the samples and galleries.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope._version import __version__
from tmescope.errors import InvalidParameterError
from tmescope.store.atomic import write_atomically
from tmescope.viz.report.gallery import GalleryQuery, similar_regions
from tmescope.viz.report.genes import (
    Measured,
    measured_genes,
    measured_log1p,
    predicted_genes,
)
from tmescope.viz.report.page import ReportSection, note, render_page
from tmescope.viz.report.sample import samples_overview
from tmescope.viz.report.sources import SlideSources

if TYPE_CHECKING:
    from tmescope.fusion.model_dir import FusionModel
    from tmescope.store import CohortStore, SampleRecord
    from tmescope.viz.report.maps import Backdrop

log = logging.getLogger(__name__)

MAX_QUERIES = 3  # similar-region galleries
GALLERY_K = 6  # regions per gallery
HEAD = "gat"  # the model saved by `tmescope train`, whose scores pick the genes shown


def write_report(
    store: Path | str,
    out: Path | str,
    *,
    model_dir: Path | str | None = None,
    samples: Sequence[str] | None = None,
    genes: Sequence[str] | None = None,
    sections: Sequence[ReportSection] = (),
) -> Path:
    """Write the report of ``store`` to ``out`` (HTML) and return its path.

    With ``model_dir`` (a ``tmescope train`` folder) the report holds its cross-validation
    table and, per sample, measured beside predicted maps and the TME states; without, measured
    maps only. ``samples`` defaults to every complete sample, ``genes`` to the model's best
    cross-validated genes (the most variable measured ones without a model), at most
    four (``viz.report.genes.MAX_GENES``). ``sections`` are appended after the samples and galleries. Everything is
    checked before drawing; the file is written whole or not at all.
    """
    from tmescope.store import CohortStore

    out = _check_out(Path(out))
    opened = CohortStore.open(store, mode="r")
    chosen = _choose_samples(opened, samples)
    model = _load_model(Path(model_dir), opened) if model_dir is not None else None
    cv: Mapping[str, Any] = dict(model.info.get("cv") or {}) if model is not None else {}
    measured: Measured = {}
    if model is not None:
        shown = predicted_genes(genes, model.spec.genes, cv=cv, head=HEAD, model_path=model.path)
    else:
        measured = measured_log1p(opened, chosen)
        shown = measured_genes(genes, measured)
    parts: list[ReportSection] = []
    if model is not None:
        parts.append(_cv_part(model, cv))
    with ExitStack() as stack:
        sources = SlideSources(opened, stack)
        sample_parts: list[ReportSection] = []
        peaks: dict[str, list[GalleryQuery]] = {}
        for i, sample_id in enumerate(chosen, start=1):
            log.info("report: drawing sample %s (%d of %d)", sample_id, i, len(chosen))
            section, found = _sample_part(
                opened, sample_id, model=model, cv=cv, genes=shown, measured=measured,
                sources=sources,
            )  # fmt: skip
            sample_parts.append(section)
            for peak in found:
                peaks.setdefault(peak.label, []).append(peak)
        queries = _queries(opened, chosen, model, cv, peaks)
        log.info("report: similar-region galleries for %d queries", len(queries))
        gallery = similar_regions(opened, sources, queries, k=GALLERY_K)
        overview = samples_overview([
            (s, _overview_cells(opened.sample_record(s), he=s not in sources.problems))
            for s in chosen
        ])  # fmt: skip
    parts += [overview, *sample_parts, gallery, *sections]
    page = render_page(
        title=f"tmescope report: {opened.path.name}",
        facts=_header_facts(opened, chosen, model),
        sections=parts,
    )
    return _write_atomically(out, page)


def _check_out(out: Path) -> Path:
    if out.is_dir():
        raise InvalidParameterError(
            f"--out must name an HTML file to write, but {out} is a directory; give a file "
            f"path such as {out / 'report.html'}"
        )
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


def _sample_part(
    store: CohortStore,
    sample_id: str,
    *,
    model: FusionModel | None,
    cv: Mapping[str, Any],
    genes: Sequence[str],
    measured: Measured,
    sources: SlideSources,
) -> tuple[ReportSection, list[GalleryQuery]]:
    """The sample's section and, with a model, where each TME state peaks on it."""
    from tmescope.viz.report.sample import TRAINED_ON_NOTE, sample_section

    record = store.sample_record(sample_id)
    meta = record.meta
    # An H&E-only slide has no spots (its diameter is null): its tiles are drawn at that size.
    spot_px = float(dict(meta.extra).get("spot_diameter_um") or 55.0) / float(meta.mpp)
    source = sources.get(sample_id)
    notes: list[tuple[str, bool]] = []
    if source is None:
        notes.append((
            f"The H&E cannot be shown: {sources.problems.get(sample_id)}. Maps are drawn on a "
            "blank background.", True,
        ))  # fmt: skip
    peaks: list[GalleryQuery] = []
    if model is None:
        if sample_id not in measured:
            notes.append(("This sample was stored without counts: nothing measured to map.", False))
        backdrop, figures = _measured_figures(
            store, sample_id, source, spot_px=spot_px, genes=genes, measured=measured
        )
    else:
        if sample_id in model.info.get("samples", ()):
            notes.append((TRAINED_ON_NOTE, False))
        if not record.has_counts:
            notes.append((
                "An H&E-only slide: nothing measured; the maps are the head's predictions on "
                "its tiles, from the image alone.", False,
            ))  # fmt: skip
        backdrop, figures, peaks = _predicted_figures(
            store, sample_id, source, spot_px=spot_px, genes=genes, model=model, cv=cv
        )
    facts = [
        ("spots", f"{record.n_spots:,}"),
        ("grid tiles", f"{record.n_tiles:,}"),
        ("µm per pixel", f"{meta.mpp:.4g}"),
        (
            "H&E slide" if meta.extra.get("platform") == "he_only" else "Space Ranger folder",
            meta.source_path,
        ),
    ]
    section = sample_section(
        sample_id, facts=facts, notes=notes, backdrop=backdrop, figures=figures
    )
    return section, peaks


def _measured_figures(
    store: CohortStore,
    sample_id: str,
    source: Any,
    *,
    spot_px: float,
    genes: Sequence[str],
    measured: Measured,
) -> tuple[Backdrop, list[tuple[bytes, str]]]:
    """Without a model: the measured maps of ``genes`` (none when the sample has no counts)."""
    from tmescope.store import RowKind
    from tmescope.viz.report.maps import SpotLayout, read_backdrop
    from tmescope.viz.report.sample import gene_figure

    coords = store.read_coords(sample_id)
    spots_xy = coords[store.read_kind(sample_id) == RowKind.SPOT]
    layout = SpotLayout.of(spots_xy, spot_px=spot_px, tiles_xy=np.empty((0, 2)))
    # An H&E-only slide has no spots: the backdrop is the tissue its tiles cover.
    backdrop = read_backdrop(source, spots_xy if len(spots_xy) else coords, margin_px=spot_px)
    if sample_id not in measured or not genes:
        return backdrop, []
    matrix, names = measured[sample_id]
    column = {g: j for j, g in enumerate(names)}
    values = np.asarray(matrix[:, [column[g] for g in genes]].toarray(), dtype=np.float32)
    figure = gene_figure(backdrop, layout, genes=genes, measured=values, predicted=None, scores={})
    return backdrop, [figure]


def _predicted_figures(
    store: CohortStore,
    sample_id: str,
    source: Any,
    *,
    spot_px: float,
    genes: Sequence[str],
    model: FusionModel,
    cv: Mapping[str, Any],
) -> tuple[Backdrop, list[tuple[bytes, str]], list[GalleryQuery]]:
    """With a model: gene maps (measured, predicted, uncertainty), TME states, state peaks."""
    from tmescope.jobs.predict import predict_rows
    from tmescope.viz.report.maps import SpotLayout, read_backdrop
    from tmescope.viz.report.sample import Predicted, gene_figure, state_figure
    from tmescope.viz.report.tables import per_target

    tiles = store.sample_record(sample_id).n_tiles > 0
    p = predict_rows(store, model, sample_id, grid=tiles)
    order = np.concatenate([np.flatnonzero(p.is_spot), np.flatnonzero(~p.is_spot)])
    n = int(p.is_spot.sum())
    coords = p.coords_px[order]
    layout = SpotLayout.of(coords[:n], spot_px=spot_px, tiles_xy=coords[n:])
    backdrop = read_backdrop(source, coords, margin_px=spot_px)
    head = cv.get("models", {}).get(HEAD, {})
    figures = []
    if genes:
        columns = [p.genes.index(g) for g in genes]
        truth = None if p.measured is None else p.measured[order][:n][:, columns]
        expression = Predicted(p.genes, p.expression[order], p.expression_std[order])
        figures.append(gene_figure(
            backdrop, layout, genes=genes, measured=truth, predicted=expression,
            scores=per_target(head, "per_gene"),
        ))  # fmt: skip
    peaks = []
    if p.state_names:
        states = Predicted(p.state_names, p.states[order], p.states_std[order])
        figures.append(state_figure(backdrop, layout, states, scores=per_target(head, "per_state")))
        shown = n or len(order)  # where states peak: the spots, or an H&E-only slide's tiles
        names = p.names[order][:shown]
        for k, name in enumerate(p.state_names):
            column = p.states[order][:shown, k]
            best = int(np.argmax(column))
            x, y = (float(v) for v in coords[best])
            peaks.append(GalleryQuery(name, float(column[best]), sample_id, str(names[best]), x, y))
    return backdrop, figures, peaks


def _queries(
    store: CohortStore,
    chosen: Sequence[str],
    model: FusionModel | None,
    cv: Mapping[str, Any],
    peaks: Mapping[str, Sequence[GalleryQuery]],
) -> list[GalleryQuery]:
    """Query spots: where the best-predicted states peak; without a model, a sample's centre."""
    from tmescope.store import RowKind
    from tmescope.viz.report.tables import top_targets

    if model is not None:
        states = top_targets(cv, list(peaks), key="per_state", model=HEAD)[:MAX_QUERIES]
        return [max(peaks[s], key=lambda p: p.value) for s in states]
    sample_id = chosen[0]
    spots = np.flatnonzero(store.read_kind(sample_id) == RowKind.SPOT)
    if spots.size == 0:
        return []
    coords = store.read_coords(sample_id)[spots].astype(np.float64)
    centre = int(np.argmin(np.hypot(*(coords - coords.mean(axis=0)).T)))
    x, y = (float(v) for v in coords[centre])
    barcode = str(store.read_barcodes(sample_id)[spots[centre]])
    return [GalleryQuery(f"centre of {sample_id}", float("nan"), sample_id, barcode, x, y)]


def _overview_cells(record: SampleRecord, *, he: bool) -> list[str]:
    """A sample's row of the samples table."""
    return [
        f"{record.n_spots:,}", f"{record.n_tiles:,}", f"{record.meta.mpp:.4g}",
        "yes" if record.has_counts else "no", "yes" if he else "not readable",
    ]  # fmt: skip


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


def _write_atomically(out: Path, page: str) -> Path:
    """Write through a temporary file beside ``out`` and rename: whole or absent, never partial."""
    write_atomically(out, lambda partial: partial.write_text(page, encoding="utf-8"))
    log.info("report written to %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out
