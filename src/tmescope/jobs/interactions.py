"""Where TME populations meet (twin of ``tmescope interactions``), per sample and pooled.

Each spot (or, with ``grid``, each grid tile between the spots) gets a label — its dominant
predicted TME state, or its niche — and three statistics are computed per sample:

* neighbourhood enrichment (squidpy): for each pair of labels, how many more neighbour pairs
  than under random relabelling, as a permutation z-score;
* co-occurrence (squidpy): ``P(B within d | A) / P(B)`` as a function of distance ``d`` in µm;
* cross-correlation of the continuous state scores (bivariate Moran's I, ours), with
  permutation p-values.

Across the cohort, z-scores are pooled as their mean ± spread over samples and a Stouffer z,
co-occurrence ratios and Moran's I as mean ± spread. Labels come from cohort-wide statistics,
so a label means the same in every sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tmescope.errors import InvalidParameterError, TrainingDataError

if TYPE_CHECKING:
    from tmescope.analysis.cooccurrence import CooccurrenceResult
    from tmescope.analysis.crosscorr import CrossCorrResult
    from tmescope.analysis.enrichment import CohortNhood, NhoodResult
    from tmescope.jobs.cluster import SampleRunner
    from tmescope.jobs.fused import FusedCohort, FusedRows
    from tmescope.jobs.interaction_sample import SampleSites

log = logging.getLogger(__name__)

LabelSource = Literal["states", "niches"]
NEIGHBOUR_REACH = 1.5  # neighbours lie within this many nearest-neighbour spacings


@dataclass(frozen=True)
class InteractionSettings:
    """What to label, at which resolution, and the permutation nulls' size and seed."""

    on: LabelSource = "states"
    grid: bool = False
    n_perms: int = 1000
    crosscorr_perms: int = 199
    seed: int = 0
    k: int | None = None  # niches: as `tmescope niches`
    resolution: float | None = None

    def __post_init__(self) -> None:
        if self.on not in ("states", "niches"):
            raise InvalidParameterError(f"--on must be states or niches, got {self.on!r}")
        for name in ("n_perms", "crosscorr_perms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 10 <= value <= 100_000:
                flag = "--perms" if name == "n_perms" else name
                raise InvalidParameterError(
                    f"{flag} must be an int from 10 to 100000, got {value!r}"
                )


@dataclass(frozen=True)
class SampleInteractions:
    """One sample's statistics."""

    sample_id: str
    n: int
    counts: Mapping[str, int]  # label → rows
    radius_um: float
    enrichment: NhoodResult
    cooccurrence: CooccurrenceResult
    crosscorr: CrossCorrResult | None


@dataclass(frozen=True)
class InteractionReport:
    """Per-sample statistics and, over two or more samples, their pooled form."""

    model_id: str
    settings: InteractionSettings
    categories: tuple[str, ...]
    samples: tuple[SampleInteractions, ...]
    cohort: CohortNhood | None
    cooccurrence_mean: np.ndarray | None  # (c, c, d) over samples
    cooccurrence_std: np.ndarray | None
    crosscorr_mean: np.ndarray | None  # (s, s) Moran's I over samples
    crosscorr_std: np.ndarray | None
    state_names: tuple[str, ...]
    figures: tuple[Path, ...] = field(default=())
    labels: Mapping[str, np.ndarray] = field(default_factory=dict)  # sample → label per fused row

    def pairs(self) -> list[dict[str, Any]]:
        """Each unordered pair of labels with its enrichment: pairs of two different labels
        strongest first, then each label with itself (how clustered it is)."""
        rows = []
        c = self.categories
        for i in range(len(c)):
            for j in range(i, len(c)):
                if self.cohort is not None:
                    mean, std = self.cohort.mean_z[i, j], self.cohort.std_z[i, j]
                    stouffer, n = self.cohort.stouffer_z[i, j], int(self.cohort.n_samples[i, j])
                else:
                    z = self.samples[0].enrichment.zscore[i, j]
                    mean, std, stouffer, n = z, np.nan, z, int(np.isfinite(z))
                if n == 0:
                    continue
                rows.append(
                    {"a": c[i], "b": c[j], "mean_z": _num(mean), "std_z": _num(std),
                     "stouffer_z": _num(stouffer), "n_samples": n}
                )  # fmt: skip
        return sorted(rows, key=lambda r: (r["a"] == r["b"], -abs(r["stouffer_z"] or 0.0)))

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {
            "model_id": self.model_id,
            "on": s.on,
            "grid": s.grid,
            "n_perms": s.n_perms,
            "seed": s.seed,
            "categories": list(self.categories),
            "pairs": self.pairs(),
            "samples": {r.sample_id: _sample_json(r) for r in self.samples},
            "figures": [str(p) for p in self.figures],
        }
        if self.cohort is not None:
            out["cohort"] = {
                "n_samples": len(self.samples),
                "enrichment": {
                    "mean_z": _nested(self.cohort.mean_z),
                    "std_z": _nested(self.cohort.std_z),
                    "stouffer_z": _nested(self.cohort.stouffer_z),
                    "n_samples": self.cohort.n_samples.astype(int).tolist(),
                },
                "cooccurrence": {
                    "distances_um": self.samples[0].cooccurrence.distances_um.tolist(),
                    "mean": _nested(self.cooccurrence_mean),
                    "std": _nested(self.cooccurrence_std),
                },
                "crosscorr": None
                if self.crosscorr_mean is None
                else {
                    "names": list(self.state_names),
                    "mean_I": _nested(self.crosscorr_mean),
                    "std_I": _nested(self.crosscorr_std),
                },
            }
        return out


def run_interactions(
    store: Path | str,
    model_dir: Path | str,
    *,
    samples: Sequence[str] | None = None,
    settings: InteractionSettings | None = None,
    out: Path | str | None = None,
    device: str = "auto",
    scheduler: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> InteractionReport:
    """Interaction statistics of ``samples`` (default: the whole cohort, pooled).

    Labels are fitted on every sample of the store, so a sample's labels do not depend on
    which samples were asked for. With ``scheduler`` (``local:N`` or a Dask scheduler's
    address) the fused sets, each sample's statistics and its figures are one Dask task per
    sample; labels and pooling stay here, in the samples' order, so the result is the same.
    """
    from tmescope.jobs.cluster import check_scheduler, sample_runner
    from tmescope.jobs.fused import write_fused
    from tmescope.store import CohortStore

    settings = settings or InteractionSettings()
    check_scheduler(scheduler)
    opened = CohortStore.open(store, mode="r")
    wanted = list(samples) if samples else opened.sample_ids()
    _check_samples(opened, wanted, grid=settings.grid)
    cohort = write_fused(store, model_dir, device=device, scheduler=scheduler, progress=progress)
    finished = 0

    def done(i: int, _: object) -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(wanted[i], finished, len(wanted))

    with sample_runner(scheduler) as runner:
        report = interactions_of(cohort, wanted, settings, runner=runner, on_done=done)
        if out is not None:
            report = _draw(opened, cohort, report, Path(out), runner)
    return report


def interactions_of(
    cohort: FusedCohort,
    samples: Sequence[str],
    settings: InteractionSettings,
    *,
    runner: SampleRunner | None = None,
    on_done: Callable[[int, SampleInteractions], None] | None = None,
) -> InteractionReport:
    """:func:`run_interactions` on fused sets already read (each sample's statistics on
    ``runner``'s cluster when given, else in turn here; ``on_done(i, result)`` as sample
    ``samples[i]`` is done)."""
    from tmescope.analysis.cooccurrence import pool_cooccurrence
    from tmescope.analysis.enrichment import pool_cohort
    from tmescope.jobs.cluster import SampleRunner
    from tmescope.jobs.interaction_sample import StatisticsTask, sample_statistics

    labels = cohort_labels(cohort, settings)
    categories = _categories(labels, samples, settings)
    task = StatisticsTask(settings, categories, tuple(cohort.info.state_names))
    sites = [sites_of(cohort.samples[s], labels[s], settings) for s in samples]
    results = (runner or SampleRunner()).map(
        sample_statistics, sites, task, name="interactions", on_done=on_done
    )
    pooled = len(results) > 1
    cooc_mean = cooc_std = cc_mean = cc_std = None
    if pooled:
        cooc_mean, cooc_std = pool_cooccurrence([r.cooccurrence for r in results])
        moran = [r.crosscorr.I for r in results if r.crosscorr is not None]
        if moran:
            cc_mean, cc_std = np.mean(moran, axis=0), np.std(moran, axis=0)
    return InteractionReport(
        model_id=cohort.model_id,
        settings=settings,
        categories=categories,
        samples=tuple(results),
        cohort=pool_cohort([r.enrichment for r in results]) if pooled else None,
        cooccurrence_mean=cooc_mean,
        cooccurrence_std=cooc_std,
        crosscorr_mean=cc_mean,
        crosscorr_std=cc_std,
        state_names=tuple(cohort.info.state_names),
        labels={s: labels[s] for s in samples},
    )


def sites_of(rows: FusedRows, labels: np.ndarray, settings: InteractionSettings) -> SampleSites:
    """The labelled rows of one sample (spots, or grid tiles with ``grid``)."""
    from tmescope.jobs.interaction_sample import SampleSites

    keep = _rows(rows, settings.grid)
    return SampleSites(
        sample_id=rows.sample_id, coords_um=rows.coords_um[keep], coords_px=rows.coords_px[keep],
        labels=labels[keep], states=rows.data.states[keep],
    )  # fmt: skip


def cohort_labels(cohort: FusedCohort, settings: InteractionSettings) -> dict[str, np.ndarray]:
    """Each sample's label per fused row: dominant state, or niche name."""
    if settings.on == "niches":
        from tmescope.jobs.niches import niches_of

        niches = niches_of(cohort, k=settings.k, resolution=settings.resolution, seed=settings.seed)
        names = np.asarray(niches.names, dtype=object)
        return {s: names[niches.labels[s]] for s in cohort.samples}
    return dominant_states(cohort)


def dominant_states(cohort: FusedCohort) -> dict[str, np.ndarray]:
    """The state each row stands out in most: argmax of the states z-scored over the cohort.

    State scores are on different scales (a gene-set score is not a proportion), so the raw
    argmax would favour whichever score runs highest; z-scored over every spot of the cohort,
    the label says which population is most over-represented at that place.
    """
    names = np.asarray(cohort.info.state_names, dtype=object)
    if names.size < 2:
        raise TrainingDataError(
            f"the model predicts {names.size} TME state(s): labelling by dominant state needs "
            "at least 2; train with gene sets or a reference that cover several populations"
        )
    spots = np.concatenate([r.data.states[r.is_spot] for r in cohort.samples.values()])
    mean = spots.mean(axis=0)
    std = spots.std(axis=0)
    std[std < 1e-12] = 1.0
    return {
        s: names[((r.data.states - mean) / std).argmax(axis=1)] for s, r in cohort.samples.items()
    }


def neighbour_radius(coords_um: np.ndarray) -> float:
    """Neighbours of a lattice: within 1.5 × the median nearest-neighbour spacing.

    On Visium's hexagonal lattice (100 µm) that is the ring of 6; on a square grid of tiles,
    the 8 around each tile.
    """
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(coords_um).query(coords_um, k=2)
    spacing = float(np.median(distances[:, 1]))
    return NEIGHBOUR_REACH * spacing


def _rows(rows: FusedRows, grid: bool) -> np.ndarray:
    """The rows labelled: grid tiles with ``grid``, else the spots (an H&E-only slide's tiles,
    which stand where spots would)."""
    from tmescope.jobs.niches import sites

    return ~rows.is_spot if grid else sites(rows)


def _categories(
    labels: Mapping[str, np.ndarray], samples: Sequence[str], settings: InteractionSettings
) -> tuple[str, ...]:
    """Every label present in the samples asked for, in a fixed order."""
    seen: set[str] = set()
    for sample_id in samples:
        seen.update(labels[sample_id].tolist())
    if len(seen) < 2:
        raise TrainingDataError(
            f"only {len(seen)} population(s) ({', '.join(sorted(seen))}) present in "
            f"{', '.join(samples)}: interactions need at least 2"
        )
    return tuple(sorted(seen))


def _check_samples(store: Any, samples: Sequence[str], *, grid: bool) -> None:
    from tmescope.fusion.cohort import check_samples

    check_samples(store, list(samples))
    if grid:
        missing = [s for s in samples if store.sample_record(s).n_tiles == 0]
        if missing:
            raise TrainingDataError(
                f"--grid needs grid tiles, but {', '.join(missing)} has none: embed with "
                "`tmescope embed ... --grid 55` (a tile every 55 µm) or leave out --grid"
            )


def _draw(
    store: Any, cohort: FusedCohort, report: InteractionReport, out: Path, runner: SampleRunner
) -> InteractionReport:
    """The cohort's figures here, each sample's as a task of ``runner``."""
    from dataclasses import replace

    from tmescope.jobs.interaction_sample import FiguresTask, draw_sample_figures
    from tmescope.viz.interaction_plots import plot_cooccurrence_curves, plot_enrichment_heatmap

    cats = list(report.categories)
    figures = []
    if report.cohort is not None:
        figures.append(
            plot_enrichment_heatmap(
                report.cohort.mean_z, cats, out / "enrichment_cohort.png",
                title=f"neighbourhood enrichment, {len(report.samples)} samples "
                f"(mean z ± spread)", spread=report.cohort.std_z,
            )
        )  # fmt: skip
        assert report.cooccurrence_mean is not None
        figures.append(
            plot_cooccurrence_curves(
                report.cooccurrence_mean, report.samples[0].cooccurrence.distances_um, cats,
                out / "cooccurrence_cohort.png", pairs=_top_pairs(report),
                title=f"co-occurrence by distance, mean of {len(report.samples)} samples",
            )
        )  # fmt: skip
    task = FiguresTask(
        store=store.path, settings=report.settings, categories=report.categories,
        top_pairs=tuple(_top_pairs(report)), out=out,
    )  # fmt: skip
    items = [
        (sites_of(cohort.samples[r.sample_id], report.labels[r.sample_id], report.settings), r)
        for r in report.samples
    ]
    for drawn in runner.map(draw_sample_figures, items, task, name="interaction-figures"):
        figures += drawn
    return replace(report, figures=tuple(figures))


def _top_pairs(report: InteractionReport, n: int = 6) -> list[tuple[str, str]]:
    """The most enriched pairs of distinct labels: the curves worth drawing."""
    pairs = [(p["a"], p["b"]) for p in report.pairs() if p["a"] != p["b"]]
    return pairs[:n] or [(report.categories[0], report.categories[1])]


def _sample_json(result: SampleInteractions) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": result.n,
        "counts": dict(result.counts),
        "radius_um": result.radius_um,
        "enrichment": {
            "z": _nested(result.enrichment.zscore),
            "count": _nested(result.enrichment.count),
        },
        "cooccurrence": {
            "distances_um": result.cooccurrence.distances_um.tolist(),
            "ratio": _nested(result.cooccurrence.ratio),
        },
    }
    if result.crosscorr is not None:
        out["crosscorr"] = {
            "I": _nested(result.crosscorr.I),
            "pvalue": _nested(result.crosscorr.pvalue),
            "n_perms": result.crosscorr.n_perms,
        }
    return out


def _nested(values: np.ndarray | None) -> Any:
    """A JSON-ready nested list with NaN as null."""
    if values is None:
        return None
    return _nested_item(np.asarray(values, dtype=np.float64))


def _nested_item(value: np.ndarray) -> Any:
    if np.ndim(value):
        return [_nested_item(v) for v in value]
    return _num(value)


def _num(value: Any) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None
