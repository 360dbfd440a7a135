"""One sample drawn for the report: its maps (measured, predicted, TME states), its facts, its
row of the samples table and where its TME states peak (the galleries' queries).

Joins the rooms for one sample at a time: reads its rows from the store, predicts them with the
model (when given), reads its H&E from the folder the store recorded, and hands plain arrays to
``viz.report``. Nothing of a sample is kept once it is drawn but its thumbnail and its peaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.io.slide_sample import HE_ONLY
from tmescope.viz.report.gallery import GalleryQuery
from tmescope.viz.report.page import ReportSection

if TYPE_CHECKING:
    from tmescope.fusion.model_dir import FusionModel
    from tmescope.store import CohortStore
    from tmescope.viz.report.maps import Backdrop
    from tmescope.viz.report.sources import SlideSources

HEAD = "gat"  # the model saved by `tmescope train`, whose scores pick the genes shown
OVERVIEW_COLUMNS = ("spots", "grid tiles", "µm/px", "counts", "H&E readable")
MODEL_COLUMN = "model"  # how the model saw the sample: trained on it, or held out


@dataclass(frozen=True)
class DrawnSample:
    """What a sample's page needs, and what the index keeps of it."""

    facts: list[tuple[str, str]]
    maps: ReportSection
    thumbnail: bytes | None  # JPEG of its H&E, small
    cells: tuple[str, ...]  # its row of the samples table, after the id and the picture
    peaks: list[GalleryQuery]  # where each TME state peaks on it (with a model)


class SampleDrawer:
    """Draws the samples of one report, one at a time, with the same model, genes and slides."""

    def __init__(
        self,
        store: CohortStore,
        *,
        model: FusionModel | None,
        cv: Mapping[str, Any],
        genes: Sequence[str],
        sources: SlideSources,
    ) -> None:
        self._store, self._model, self._cv = store, model, cv
        self._genes, self._sources = list(genes), sources
        self._trained_on = set(model.info.get("samples", ())) if model is not None else set()

    @property
    def columns(self) -> tuple[str, ...]:
        """The samples table's columns after the id and the picture."""
        return (*OVERVIEW_COLUMNS, MODEL_COLUMN) if self._model is not None else OVERVIEW_COLUMNS

    def draw(self, sample_id: str) -> DrawnSample:
        from tmescope.viz.report.sample import TRAINED_ON_NOTE, sample_section, thumbnail

        record = self._store.sample_record(sample_id)
        meta = record.meta
        # An H&E-only slide has no spots (its diameter is null): its tiles are drawn at that size.
        spot_px = float(dict(meta.extra).get("spot_diameter_um") or 55.0) / float(meta.mpp)
        source = self._sources.get(sample_id)
        notes: list[tuple[str, bool]] = []
        if source is None:
            notes.append((
                f"The H&E cannot be shown: {self._sources.problems.get(sample_id)}. Maps are "
                "drawn on a blank background.", True,
            ))  # fmt: skip
        peaks: list[GalleryQuery] = []
        he_only = meta.extra.get("platform") == HE_ONLY
        if self._model is None:
            if not record.has_counts:
                notes.append(
                    ("This sample was stored without counts: nothing measured to map.", False)
                )
            backdrop, figures = self._measured(sample_id, source, spot_px=spot_px)
        else:
            if sample_id in self._trained_on:
                notes.append((TRAINED_ON_NOTE, False))
            if not record.has_counts:
                notes.append((
                    "An H&E-only slide: nothing measured; the maps are the head's predictions "
                    "on its tiles, from the image alone.", False,
                ))  # fmt: skip
            backdrop, figures, peaks = self._predicted(sample_id, source, spot_px=spot_px)
        facts = [
            ("spots", f"{record.n_spots:,}"),
            ("grid tiles", f"{record.n_tiles:,}"),
            ("µm per pixel", f"{meta.mpp:.4g}"),
            ("H&E slide" if he_only else "Space Ranger folder", meta.source_path),
        ]
        cells = [
            f"{record.n_spots:,}", f"{record.n_tiles:,}", f"{meta.mpp:.4g}",
            "yes" if record.has_counts else "no", "yes" if source is not None else "not readable",
        ]  # fmt: skip
        if self._model is not None:
            cells.append(self._role(sample_id, he_only=he_only))
        maps = sample_section(sample_id, notes=notes, backdrop=backdrop, figures=figures)
        return DrawnSample(facts, maps, thumbnail(backdrop), tuple(cells), peaks)

    def _role(self, sample_id: str, *, he_only: bool) -> str:
        if sample_id in self._trained_on:
            return "trained on"
        return "H&E only, not trained on" if he_only else "held out"

    def _measured(
        self, sample_id: str, source: Any, *, spot_px: float
    ) -> tuple[Backdrop, list[tuple[bytes, str]]]:
        """Without a model: the measured maps of the genes (none when it has no counts)."""
        from tmescope.store import RowKind
        from tmescope.viz.report.genes import measured_log1p
        from tmescope.viz.report.maps import SpotLayout, read_backdrop
        from tmescope.viz.report.sample import gene_figure

        store = self._store
        coords = store.read_coords(sample_id)
        spots_xy = coords[store.read_kind(sample_id) == RowKind.SPOT]
        layout = SpotLayout.of(spots_xy, spot_px=spot_px, tiles_xy=np.empty((0, 2)))
        # An H&E-only slide has no spots: the backdrop is the tissue its tiles cover.
        backdrop = read_backdrop(source, spots_xy if len(spots_xy) else coords, margin_px=spot_px)
        found = measured_log1p(store, sample_id) if self._genes else None
        if found is None:
            return backdrop, []
        matrix, names = found
        column = {g: j for j, g in enumerate(names)}
        genes = self._genes
        values = np.asarray(matrix[:, [column[g] for g in genes]].toarray(), dtype=np.float32)
        figure = gene_figure(
            backdrop, layout, genes=genes, measured=values, predicted=None, scores={}
        )
        return backdrop, [figure]

    def _predicted(
        self, sample_id: str, source: Any, *, spot_px: float
    ) -> tuple[Backdrop, list[tuple[bytes, str]], list[GalleryQuery]]:
        """With a model: gene maps (measured, predicted, uncertainty), TME states, state peaks."""
        from tmescope.jobs.predict import predict_rows
        from tmescope.viz.report.maps import SpotLayout, read_backdrop
        from tmescope.viz.report.sample import Predicted, gene_figure, state_figure
        from tmescope.viz.report.tables import per_target

        assert self._model is not None  # only called with a model
        store, genes = self._store, self._genes
        tiles = store.sample_record(sample_id).n_tiles > 0
        p = predict_rows(store, self._model, sample_id, grid=tiles)
        order = np.concatenate([np.flatnonzero(p.is_spot), np.flatnonzero(~p.is_spot)])
        n = int(p.is_spot.sum())
        coords = p.coords_px[order]
        layout = SpotLayout.of(coords[:n], spot_px=spot_px, tiles_xy=coords[n:])
        backdrop = read_backdrop(source, coords, margin_px=spot_px)
        head = self._cv.get("models", {}).get(HEAD, {})
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
            scores = per_target(head, "per_state")
            figures.append(state_figure(backdrop, layout, states, scores=scores))
            shown = n or len(order)  # where states peak: the spots, or an H&E-only slide's tiles
            names = p.names[order][:shown]
            for k, name in enumerate(p.state_names):
                column = p.states[order][:shown, k]
                best = int(np.argmax(column))
                x, y = (float(v) for v in coords[best])
                peaks.append(
                    GalleryQuery(name, float(column[best]), sample_id, str(names[best]), x, y)
                )
        return backdrop, figures, peaks
