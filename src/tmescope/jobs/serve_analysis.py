"""Niches and interactions for the viewer (``viz.app.analysis.CohortAnalysis``), computed once,
its sub-spot maps (``viz.app.subspot.SubspotMaps``), predicted once per sample, and what differs
between groups of samples (``viz.app.analysis.GroupComparisons``), compared once per column.

The first request that needs them reads the model's fused sets from the store (computing the
missing ones in memory: the viewer opens the store read-only), fits the niches and runs the
interaction statistics of every sample and of the cohort, with the same defaults as
``tmescope niches`` and ``tmescope interactions``; later requests reuse them. Figures are drawn
on demand into a temporary folder that lives as long as the viewer. A sample's sub-spot maps are
``tmescope predict --resolution``'s, made in memory on the sample's first request. A comparison
is ``tmescope compare``'s with the report's defaults; each section's summary (read from its maps
saved in the store, else from maps predicted in memory and not kept) serves every column asked.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.viz.app.analysis import ColumnNotFoundError, NoComparisonError
from tmescope.viz.app.kept import Kept
from tmescope.viz.app.subspot import PAIR_SEP, SubspotBins

if TYPE_CHECKING:
    import anndata as ad

    from tmescope.analysis.sample_summary import SampleSummary
    from tmescope.fusion.model_dir import FusionModel
    from tmescope.jobs.compare import CompareReport, CompareSettings
    from tmescope.jobs.fused import FusedCohort
    from tmescope.jobs.interactions import InteractionReport
    from tmescope.jobs.niches import NicheReport
    from tmescope.store import CohortStore
    from tmescope.viz.app.analysis import CompareFigureKind, FigureKind
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


@dataclass(frozen=True)
class _Plan:
    """Who is compared for one column: read from the samples' metadata, before any map."""

    by: str
    subject: str  # patient when every compared sample names one, else sample
    samples: list[str]  # the samples with a group, in the store's order
    metadata: dict[str, dict[str, str]]
    groups: dict[str, int]  # each group's number of subjects
    left_out: list[str]  # samples without the column, or with it empty


class ViewerComparison:
    """What differs between the groups of a metadata column, as ``tmescope compare`` with the
    report's defaults (the column ``group``, patients as units when every sample names one):
    computed on a column's first request under one lock, then kept.

    The viewer never writes the store: each section's summary is read from the maps saved there
    (by ``predict``, ``interactions`` or ``compare`` at the sub-spot model's bin size), else from
    maps predicted in memory and not kept. A summary does not depend on the column, so it serves
    every column asked for. Samples without the column are left out (and listed), rather than
    refusing a cohort to which an ungrouped slide was added.
    """

    def __init__(self, store: CohortStore, model: FusionModel) -> None:
        self._store = store
        self._model = model
        self._lock = threading.Lock()
        self._summaries: dict[str, SampleSummary] = {}
        self._reports: dict[str, tuple[_Plan, CompareReport]] = {}
        # Removed by its finalizer when the viewer's process ends: nothing to close by hand.
        self._folder = tempfile.TemporaryDirectory(prefix="tmescope-viewer-compare-")
        self._figures: dict[tuple[str, str, str], Path] = {}

    @property
    def available(self) -> bool:
        from tmescope.fusion.subspot_model import SUBSPOT_DIR

        return (self._model.path / SUBSPOT_DIR).is_dir()

    def design(self, by: str) -> dict[str, Any]:
        plan = self._plan(by)
        return {
            "by": plan.by, "subject": plan.subject, "groups": dict(plan.groups),
            "n_samples": len(plan.samples), "left_out": list(plan.left_out),
        }  # fmt: skip

    def comparison(self, by: str) -> dict[str, Any]:
        plan, report = self._report(by)
        c = report.comparison
        counts: dict[str, dict[str, int]] = {g: {} for g in c.groups}
        for s in c.samples:
            call = str(s.get("phenotype") or "not called")
            row = counts.setdefault(str(s["group"]), {})
            row[call] = row.get(call, 0) + 1
        body = {
            **c.to_json(), "resolution_um": report.settings.resolution_um,
            "n_significant": len(c.significant()), "phenotype_counts": counts,
            "left_out": list(plan.left_out),
        }  # fmt: skip
        return _json_ready(body)

    def figure(self, by: str, kind: CompareFigureKind, pair: tuple[str, str] | None) -> bytes:
        from tmescope.analysis.immune_phenotype import INFLAMED_INFILTRATION
        from tmescope.errors import InvalidParameterError
        from tmescope.viz.app.sample_data import FeatureNotFoundError
        from tmescope.viz.compare_plots import (
            plot_differences,
            plot_pair_by_patient,
            plot_phenotypes,
        )

        c = self._report(by)[1].comparison
        if kind == "pair":
            if pair is None:
                raise InvalidParameterError("kind=pair needs pair=A,B: two populations")
            unknown = [p for p in pair if p not in c.populations]
            if unknown:
                raise FeatureNotFoundError(
                    f"no population {unknown[0]!r}; the model's are {', '.join(c.populations)}"
                )
        key = (by, str(kind), PAIR_SEP.join(pair) if kind == "pair" and pair else "")
        with self._lock:
            path = self._figures.get(key)
            if path is None:
                # The file name is ours (a counter), never built from the request.
                path = Path(self._folder.name) / f"compare-{len(self._figures)}.png"
                if kind == "differences":
                    plot_differences(c.pairs, path, title=f"What differs between groups of {c.by}")
                elif kind == "phenotypes":
                    plot_phenotypes(c.samples, path, threshold=INFLAMED_INFILTRATION)
                else:
                    assert pair is not None
                    a, b = pair
                    ab = f"{a}|{b}" if f"{a}|{b}" in c.patient_values else f"{b}|{a}"
                    row = next((r for r in c.pairs if {r["a"], r["b"]} == {a, b}), None)
                    plot_pair_by_patient(c.patient_values.get(ab, {}), row, path, pair=(a, b))
                self._figures[key] = path
        return path.read_bytes()

    def _plan(self, by: str) -> _Plan:
        """The design of the comparison of ``by``, or why there is none (one line each)."""
        from tmescope.analysis.group_compare import check_design
        from tmescope.errors import InvalidParameterError, ModelMismatchError

        if not self.available:
            raise ModelMismatchError(
                f"no comparison between groups: the model {self._model.path.name} has no sub-spot "
                "model, whose maps the comparison reads; train one with `tmescope train STORE "
                "--out MODEL_DIR --reference REF.h5ad --resolution 16` and serve that model"
            )
        samples = self._store.sample_ids()
        metadata = {s: dict(self._store.sample_record(s).metadata) for s in samples}
        having = [s for s in samples if by in metadata[s]]
        if not having:
            columns = sorted({c for m in metadata.values() for c in m})
            raise ColumnNotFoundError(
                f"no comparison between groups: no sample of the store has a {by!r} column in "
                f"its metadata (their columns: {', '.join(columns) or 'none'}); embed the "
                f"samples from a sample sheet with a {by!r} column (`tmescope embed "
                "--samplesheet`), or ask for another column"
            )
        subject = "patient" if all("patient" in metadata[s] for s in having) else "sample"
        try:
            design = check_design(having, metadata, by=by, subject=subject)
        except InvalidParameterError as why:
            text = " ".join(str(why).split()).removeprefix(f"--by {by}: ")
            raise NoComparisonError(f"no comparison between the groups of {by!r}: {text}") from why
        compared = [s for s in having if s in design.group_of]
        groups: dict[str, int] = {}
        for group in design.patient_group.values():
            groups[group] = groups.get(group, 0) + 1
        return _Plan(
            by=by, subject=subject, samples=compared, metadata=metadata,
            groups=dict(sorted(groups.items())),
            left_out=[s for s in samples if s not in design.group_of],
        )  # fmt: skip

    def _report(self, by: str) -> tuple[_Plan, CompareReport]:
        from tmescope.analysis.group_compare import compare_groups
        from tmescope.jobs.compare import CompareReport, CompareSettings
        from tmescope.jobs.subspot_maps import check_predictor, load_predictor

        plan = self._plan(by)  # cheap, and refuses before the lock is waited for
        with self._lock:
            kept = self._reports.get(by)
            if kept is None:
                predictor = load_predictor(self._model.path)
                check_predictor(self._store, predictor, predictor.bin_um)
                settings = CompareSettings(
                    by=by, subject=plan.subject, resolution_um=predictor.bin_um
                )
                self._check_bins(plan.samples, settings.resolution_um)
                summaries = [self._summary(s, settings) for s in plan.samples]
                comparison = compare_groups(
                    summaries, plan.metadata, by=by, subject=plan.subject, seed=settings.seed
                )
                report = CompareReport(comparison, str(self._model.path), settings, "store")
                kept = self._reports[by] = (plan, report)
            return kept

    def _check_bins(self, samples: list[str], bin_um: float) -> None:
        from tmescope.errors import TmescopeError
        from tmescope.fusion.subspot_data import check_resolution

        for sample_id in samples:
            try:
                check_resolution(self._store, sample_id, bin_um)
            except TmescopeError as why:
                raise NoComparisonError(f"no comparison between groups: {why}") from why

    def _summary(self, sample_id: str, settings: CompareSettings) -> SampleSummary:
        """A section's summary, kept: it reads the radius and populations of ``settings`` (the
        defaults, for every column), never its grouping."""
        from tmescope.jobs.compare import CompareTask, summarise_stored_sample

        got = self._summaries.get(sample_id)
        if got is None:
            task = CompareTask(
                store=self._store.path, model_dir=self._model.path, settings=settings, keep=False
            )
            got = self._summaries[sample_id] = summarise_stored_sample(sample_id, task)
        return got


def _json_ready(value: Any) -> Any:
    """``value`` with every non-finite float as ``None`` (JSON has no NaN) and numpy scalars as
    Python's."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _check_pooled(report: InteractionReport) -> None:
    from tmescope.errors import TrainingDataError

    if report.cohort is None:
        raise TrainingDataError(
            "the store holds one sample: pooled statistics need two or more; ask for the sample"
        )


def _num(value: Any) -> float | None:
    value = float(value)
    return round(value, 3) if np.isfinite(value) else None
