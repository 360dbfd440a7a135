"""One sample's page of the report (its H&E, gene maps, measured beside predicted, and TME states)
and its row in the index's samples table.

Takes plain arrays (spots first, then grid tiles) so that it knows nothing of stores or models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tmescope.viz.report.maps import (
    JPEG,
    Backdrop,
    MapPanel,
    SpotLayout,
    encode_jpeg,
    plot_map_rows,
)
from tmescope.viz.report.page import ReportSection, escape, figure, image_tag, link, note

STATES_PER_ROW = 2  # each state takes two panels: prediction and its uncertainty
MEASURED_PER_ROW = 4
GENE_PANEL_IN = 2.4
STATE_PANEL_IN = 2.0
THUMB_PX = 96  # long side of a sample's thumbnail in the samples table

TRAINED_ON_NOTE = (
    "The model learnt from this sample, so its maps here show fit, not accuracy on new slides: "
    "read the cross-validation table for that."
)
SAMPLES_INTRO = (
    "<p>Each sample has a page of its own: its spots coloured over its H&amp;E (measured and "
    "predicted), its TME states and, when the cohort was analysed, its niches, where its "
    "populations meet and its sub-spot maps. Click a sample or its picture to open it.</p>"
)
SAMPLE_INTRO = (
    "<p>Spots coloured over the H&amp;E. Expression is log1p of counts per 10,000 per spot; "
    "colour scales run from the 1st to the 99th percentile of the values shown.</p>"
)
MEASURED_CAPTION = (
    "Measured expression (log1p of counts per 10,000 per spot). Give a model "
    "(<code>--model</code>) to see its predictions beside them."
)
GENE_CAPTION = (
    "Per gene: measured expression, the model's prediction on the same colour scale, and the "
    "prediction's uncertainty (standard deviation: the ensemble members' disagreement plus the "
    "error left on held-out training spots; high means trust it less). Squares are grid tiles "
    "between the spots, each predicted from its own patch and the spots around it. "
    "<i>CV r</i>: held-out Pearson from the cross-validation table; <i>here r</i>: Pearson "
    "over this slide's spots."
)
STATE_CAPTION = (
    "TME states as the model predicts them (gene-set scores or cell-type proportions, as it was "
    "trained), each beside its uncertainty (standard deviation). <i>CV r</i>: the state's "
    "held-out Pearson."
)


@dataclass(frozen=True)
class Predicted:
    """Predicted values of some targets: ensemble mean and spread, rows spots then tiles."""

    names: tuple[str, ...]
    mean: np.ndarray  # (n_spots + n_tiles, k)
    std: np.ndarray  # (n_spots + n_tiles, k)


def gene_figure(
    backdrop: Backdrop,
    layout: SpotLayout,
    *,
    genes: Sequence[str],
    measured: np.ndarray | None,
    predicted: Predicted | None,
    scores: Mapping[str, float],
) -> tuple[bytes, str]:
    """A row per gene: measured | predicted | its uncertainty; measured, predicted on one scale.

    ``measured`` is ``(n_spots, len(genes))`` (``None`` without counts); ``predicted`` holds at
    least ``genes`` (``None`` without a model: measured maps only); ``scores`` each gene's
    cross-validated Pearson. Returns the JPEG and its caption.
    """
    n = len(layout.spots_xy)
    if predicted is None:  # measured maps alone: side by side, each on its own scale
        if measured is None:
            raise ValueError("gene_figure needs measured or predicted values")
        panels = [MapPanel(f"{g} measured", measured[:, j]) for j, g in enumerate(genes)]
        rows = [panels[i : i + MEASURED_PER_ROW] for i in range(0, len(panels), MEASURED_PER_ROW)]
        caption = f"<b>{escape(', '.join(genes))}</b>. {MEASURED_CAPTION}"
        return plot_map_rows(backdrop, layout, rows, panel_in=GENE_PANEL_IN), caption
    rows = []
    for j, gene in enumerate(genes):
        k = predicted.names.index(gene)
        mean, std = predicted.mean[:, k], predicted.std[:, k]
        title = f"{gene} predicted" + _score(scores.get(gene))
        row = []
        if measured is not None:
            row.append(MapPanel(f"{gene} measured", measured[:, j], scale=gene))
            title += _slide_r(measured[:, j], mean[:n])
        row.append(MapPanel(title, mean[:n], _tiles(mean, n), scale=gene))
        row.append(MapPanel(f"{gene} uncertainty", std[:n], _tiles(std, n), cmap="magma"))
        rows.append(row)
    caption = f"<b>{escape(', '.join(genes))}</b>. {GENE_CAPTION}"
    return plot_map_rows(backdrop, layout, rows, panel_in=GENE_PANEL_IN), caption


def state_figure(
    backdrop: Backdrop, layout: SpotLayout, predicted: Predicted, *, scores: Mapping[str, float]
) -> tuple[bytes, str]:
    """Each TME state predicted, beside its uncertainty, two states a row; JPEG and caption."""
    n = len(layout.spots_xy)
    panels = []
    for k, name in enumerate(predicted.names):
        mean, std = predicted.mean[:, k], predicted.std[:, k]
        title = f"{name}" + _score(scores.get(name))
        panels.append(MapPanel(title, mean[:n], _tiles(mean, n), cmap="viridis"))
        panels.append(MapPanel(f"{name} uncertainty", std[:n], _tiles(std, n), cmap="magma"))
    width = 2 * STATES_PER_ROW
    rows = [panels[i : i + width] for i in range(0, len(panels), width)]
    caption = f"<b>TME states</b>. {STATE_CAPTION}"
    return plot_map_rows(backdrop, layout, rows, panel_in=STATE_PANEL_IN), caption


def sample_section(
    sample_id: str,
    *,
    notes: Sequence[tuple[str, bool]],
    backdrop: Backdrop,
    figures: Sequence[tuple[bytes, str]],
) -> ReportSection:
    """The maps of a sample's page: remarks (``(text, is_warning)``), the H&E, then each figure.

    Figure captions are markup.
    """
    parts = [note(text, warning=warning) for text, warning in notes]
    if backdrop.pixels is not None:
        he = encode_jpeg(backdrop.pixels)
        parts.append(
            figure(
                he,
                mime=JPEG,
                alt=f"H&E of {sample_id}",
                caption=f"H&amp;E of {escape(sample_id)}",
                css="he",
            )
        )
    parts += [
        figure(data, mime=JPEG, alt=f"maps of {sample_id}", caption=caption)
        for data, caption in figures
    ]
    return ReportSection("Maps", SAMPLE_INTRO + "\n".join(parts), anchor="maps")


def thumbnail(backdrop: Backdrop) -> bytes | None:
    """The H&E under a sample's spots, small, for its row of the samples table."""
    return None if backdrop.pixels is None else encode_jpeg(backdrop.pixels, max_px=THUMB_PX)


@dataclass(frozen=True)
class OverviewRow:
    """A sample's row of the samples table: a link to its page, its thumbnail, its facts."""

    sample_id: str
    href: str  # relative, from the index
    thumbnail: bytes | None  # JPEG
    cells: tuple[str, ...]  # plain text, one per column after the sample and its picture


def samples_overview(rows: Sequence[OverviewRow], *, columns: Sequence[str]) -> ReportSection:
    """The samples table of the index: a row per sample, its thumbnail linking to its page."""
    head = "".join(f"<th>{escape(h)}</th>" for h in ("sample", "H&E", *columns))
    body = "".join(
        f"<tr><td>{link(row.sample_id, row.href)}</td>"
        f'<td class="thumb">{_thumb(row)}</td>'
        + "".join(f"<td>{escape(c)}</td>" for c in row.cells)
        + "</tr>"
        for row in rows
    )
    table = f'<div class="scroll"><table><thead><tr>{head}</tr></thead>{body}</table></div>'
    return ReportSection("Samples", SAMPLES_INTRO + table)


def _thumb(row: OverviewRow) -> str:
    if row.thumbnail is None:
        return ""
    picture = image_tag(row.thumbnail, mime=JPEG, alt=f"H&E of {row.sample_id}")
    return f'<a href="{escape(row.href)}">{picture}</a>'


def _tiles(values: np.ndarray, n_spots: int) -> np.ndarray | None:
    return values[n_spots:] if values.shape[0] > n_spots else None


def _score(value: float | None) -> str:
    return f"\nCV r {value:.2f}" if value is not None and math.isfinite(value) else ""


def _slide_r(measured: np.ndarray, predicted: np.ndarray) -> str:
    """Pearson r of the two over this slide's spots ('' when either is constant)."""
    keep = np.isfinite(measured) & np.isfinite(predicted)
    if keep.sum() < 3 or np.std(measured[keep]) == 0 or np.std(predicted[keep]) == 0:
        return ""
    r = float(np.corrcoef(measured[keep], predicted[keep])[0, 1])
    return f", here r {r:.2f}"
