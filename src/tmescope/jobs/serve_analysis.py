"""Niches and interactions for the viewer (``viz.app.analysis.CohortAnalysis``), computed once,
and its sub-spot maps (``viz.app.subspot.SubspotMaps``), predicted once per sample.

The first request that needs them reads the model's fused sets from the store (computing the
missing ones in memory: the viewer opens the store read-only), fits the niches and runs the
interaction statistics of every sample and of the cohort, with the same defaults as
``tmescope niches`` and ``tmescope interactions``; later requests reuse them. Figures are drawn
on demand into a temporary folder that lives as long as the viewer. A sample's sub-spot maps are
``tmescope predict --resolution``'s, made in memory on the sample's first request.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.viz.app.kept import Kept
from tmescope.viz.app.subspot import PAIR_SEP, SubspotBins

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.fusion.model_dir import FusionModel
    from tmescope.jobs.fused import FusedCohort
    from tmescope.jobs.interactions import InteractionReport
    from tmescope.jobs.niches import NicheReport
    from tmescope.store import CohortStore
    from tmescope.viz.app.analysis import FigureKind
    from tmescope.viz.app.subspot import SubspotLayer

PAIRS_SHOWN = 12
MAPS_KEPT = 4  # samples whose sub-spot maps stay in memory
INTERFACE_RADIUS_UM = 30.0  # as `tmescope interactions --resolution`: contact, not region
# Where each sub-spot layer (but the interface, computed from the shares) is in the AnnData.
_OBSM: dict[str, str] = {
    "populations": "populations",
    "uncertainty": "populations_std",
    "image": "populations_image",
}


class ViewerAnalysis:
    """The cohort's niches and interactions, computed on first use under one lock."""

    def __init__(self, store: CohortStore, model: FusionModel) -> None:
        self._store = store
        self._model = model
        self._lock = threading.Lock()
        self._fused: FusedCohort | None = None
        self._niches: NicheReport | None = None
        self._interactions: InteractionReport | None = None
        # Removed by its finalizer when the viewer's process ends: nothing to close by hand.
        self._folder = tempfile.TemporaryDirectory(prefix="tmescope-viewer-")
        self._figures: dict[tuple[str, str], Path] = {}

    def niches(self, sample_id: str) -> tuple[list[str], np.ndarray]:
        fused, niches = self._ready()[:2]
        rows = fused.samples[sample_id]
        labels = np.full(self._store.sample_record(sample_id).n, -1, dtype=np.int64)
        labels[rows.data.rows] = niches.labels[sample_id]
        return list(niches.names), labels

    def interactions(self, sample_id: str | None) -> dict[str, Any]:
        report = self._ready()[2]
        settings = report.settings
        out: dict[str, Any] = {
            "sample_id": sample_id, "on": settings.on, "n_perms": settings.n_perms,
            "categories": list(report.categories),
        }  # fmt: skip
        if sample_id is None:
            _check_pooled(report)
            pairs = [p for p in report.pairs() if p["a"] != p["b"]]
            out.update(pooled=True, n_samples=len(report.samples))
        else:
            result = next(r for r in report.samples if r.sample_id == sample_id)
            z = result.enrichment.zscore
            index = {c: i for i, c in enumerate(report.categories)}
            pairs = [
                {"a": p["a"], "b": p["b"], "z": _num(z[index[p["a"]], index[p["b"]]])}
                for p in report.pairs()
                if p["a"] != p["b"] and np.isfinite(z[index[p["a"]], index[p["b"]]])
            ]
            pairs.sort(key=lambda p: -abs(p["z"] or 0.0))
            out.update(pooled=False, counts=dict(result.counts))
        out["pairs"] = pairs[:PAIRS_SHOWN]
        return out

    def figure(self, sample_id: str | None, kind: FigureKind) -> bytes:
        from tmescope.viz.interaction_plots import plot_cooccurrence_curves, plot_enrichment_heatmap

        report = self._ready()[2]
        key = (sample_id or "", kind)
        with self._lock:
            path = self._figures.get(key)
            if path is None:
                cats = list(report.categories)
                # The file name is ours (a counter), never built from the request.
                path = Path(self._folder.name) / f"figure-{len(self._figures)}.png"
                if sample_id is None:
                    _check_pooled(report)
                    assert report.cohort is not None and report.cooccurrence_mean is not None
                    z, spread, ratio = (
                        report.cohort.mean_z,
                        report.cohort.std_z,
                        report.cooccurrence_mean,
                    )
                    where = f"cohort of {len(report.samples)} samples"
                else:
                    result = next(r for r in report.samples if r.sample_id == sample_id)
                    z, spread, ratio = result.enrichment.zscore, None, result.cooccurrence.ratio
                    where = sample_id
                if kind == "enrichment":
                    plot_enrichment_heatmap(
                        z, cats, path, title=f"neighbourhood enrichment (z), {where}",
                        spread=spread,
                    )  # fmt: skip
                else:
                    pairs = [(p["a"], p["b"]) for p in report.pairs() if p["a"] != p["b"]][:6]
                    plot_cooccurrence_curves(
                        ratio, report.samples[0].cooccurrence.distances_um, cats, path,
                        pairs=pairs, title=f"co-occurrence by distance, {where}",
                    )  # fmt: skip
                self._figures[key] = path
        return path.read_bytes()

    def _ready(self) -> tuple[FusedCohort, NicheReport, InteractionReport]:
        from tmescope.jobs.fused import fused_for
        from tmescope.jobs.interactions import InteractionSettings, interactions_of
        from tmescope.jobs.niches import niches_of

        with self._lock:
            if self._fused is None:
                samples = self._store.sample_ids()
                self._fused = fused_for(self._store, self._model, samples)
                self._niches = niches_of(self._fused)
                self._interactions = interactions_of(self._fused, samples, InteractionSettings())
            assert self._niches is not None and self._interactions is not None
            return self._fused, self._niches, self._interactions


class ViewerSubspot:
    """Each sample's sub-spot maps, predicted on its first request (under its own lock, so that
    two samples predict at once and niches never wait), the last :data:`MAPS_KEPT` kept."""

    def __init__(self, store: CohortStore, model: FusionModel) -> None:
        self._store = store
        self._model = model
        self._lock = threading.Lock()  # guards _about, never held while predicting
        self._maps: Kept[str, ad.AnnData] = Kept(MAPS_KEPT)
        self._about: tuple[float, tuple[str, ...]] | None = None  # bin size, populations

    @property
    def available(self) -> bool:
        from tmescope.fusion.subspot_model import SUBSPOT_DIR

        return (self._model.path / SUBSPOT_DIR).is_dir()

    @property
    def populations(self) -> tuple[str, ...]:
        return self._model_about()[1]

    def _model_about(self) -> tuple[float, tuple[str, ...]]:
        """The sub-spot model's bin size and populations, read once (a missing model raises,
        saying how to train one)."""
        from tmescope.errors import ModelMismatchError
        from tmescope.fusion.subspot_model import SUBSPOT_DIR, SubspotModel

        if not self.available:
            raise ModelMismatchError(
                f"the model {self._model.path} has no sub-spot model, so there are no sub-spot "
                "layers: train it with `tmescope train STORE --out MODEL_DIR --resolution 16` "
                "(with --reference REF.h5ad for shares of cells) and serve that model"
            )
        with self._lock:
            if self._about is None:
                loaded = SubspotModel.load(self._model.path / SUBSPOT_DIR)
                self._about = (loaded.bin_um, tuple(loaded.populations))
            return self._about

    def bins(self, sample_id: str) -> SubspotBins:
        maps = self._maps_of(sample_id)
        about = maps.uns["subspot"]
        return SubspotBins(
            bin_um=float(about["bin_um"]), um_per_px=float(about["um_per_px"]),
            populations=tuple(str(c) for c in maps.obsm["populations"].columns),
            xy=np.asarray(maps.obsm["spatial"], dtype=np.float64),
        )  # fmt: skip

    def values(self, sample_id: str, layer: SubspotLayer, feature: str) -> np.ndarray:
        maps = self._maps_of(sample_id)
        if layer == "interface":
            from tmescope.analysis.adata_pairs import adata_interface_maps

            a, b = feature.split(PAIR_SEP)
            scores = adata_interface_maps(maps, [(a, b)], radius_um=INTERFACE_RADIUS_UM)
            return np.asarray(next(iter(scores.values())), dtype=np.float64)
        return maps.obsm[_OBSM[layer]][feature].to_numpy(dtype=np.float64)

    def _maps_of(self, sample_id: str) -> ad.AnnData:
        return self._maps.get(sample_id, lambda: self._predict(sample_id))

    def _predict(self, sample_id: str) -> ad.AnnData:
        import anndata as ad
        import pandas as pd

        from tmescope.jobs.predict_bins import subspot_anndata

        bin_um = self._model_about()[0]
        full = subspot_anndata(
            self._store.path, self._model.path, sample=sample_id, resolution_um=bin_um,
            expression=False,
        )  # fmt: skip
        # Only what the layers read: X (bins × genes) would hold gigabytes for a whole slide.
        return ad.AnnData(
            obs=pd.DataFrame(index=full.obs_names),
            obsm={key: full.obsm[key] for key in ("spatial", *_OBSM.values())},
            uns={"subspot": dict(full.uns["subspot"])},
        )


def _check_pooled(report: InteractionReport) -> None:
    from tmescope.errors import TrainingDataError

    if report.cohort is None:
        raise TrainingDataError(
            "the store holds one sample: pooled statistics need two or more; ask for the sample"
        )


def _num(value: Any) -> float | None:
    value = float(value)
    return round(value, 3) if np.isfinite(value) else None
