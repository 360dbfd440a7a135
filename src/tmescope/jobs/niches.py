"""Niches of a cohort (twin of ``tmescope niches``): cluster fused embeddings, name and count them.

The fused embeddings come from the store (``jobs.fused.write_fused`` writes the missing ones).
Niches are fitted on the spots of every sample at once, then each grid tile is placed in the
nearest niche. Each niche is named by its mean TME-state profile and its top predicted genes,
and each sample's composition (fraction of its spots per niche; of its tiles for an H&E-only
slide, which has no spots and takes no part in the fit) is reported. Given
annotations (a pathologist's regions, or a synthetic cohort's truth), the agreement of niches
with them is measured by the adjusted Rand index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tmescope.errors import InputNotFoundError, InvalidParameterError

if TYPE_CHECKING:
    from tmescope.analysis.niches import NicheModel
    from tmescope.jobs.fused import FusedCohort

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NicheReport:
    """Niches of a cohort: how they were found, what they are, where they lie."""

    model_id: str
    method: str
    params: Mapping[str, Any]
    names: tuple[str, ...]  # one per niche, "N<i> <state>+ ..."
    profiles: pd.DataFrame  # niche × state, z-scored mean state
    top_genes: Mapping[int, list[str]]
    composition: pd.DataFrame  # sample × niche, fraction of spots
    labels: Mapping[str, np.ndarray]  # sample → niche of each fused row (spots, then tiles)
    is_spot: Mapping[str, np.ndarray]  # sample → which of those rows are spots
    agreement: Mapping[str, float]  # "cohort" and each sample → ARI with the annotations
    figures: tuple[Path, ...] = ()
    # With compare_views: for each view (fused, image, expression, joint) its cohort ARI with
    # the annotations at the same k (None without annotations).
    views: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.names)

    def to_json(self) -> dict[str, Any]:
        sizes = np.zeros(self.k, dtype=np.int64)
        for sample, labels in self.labels.items():
            sizes += np.bincount(labels[self.is_spot[sample]], minlength=self.k)
        return {
            "model_id": self.model_id,
            "method": self.method,
            "params": dict(self.params),
            "k": self.k,
            "niches": [
                {
                    "niche": i,
                    "name": self.names[i],
                    "n_spots": int(sizes[i]),
                    "states": {str(k): _finite(v) for k, v in self.profiles.loc[i].items()},
                    "top_genes": list(self.top_genes.get(i, [])),
                }
                for i in range(self.k)
            ],
            "composition": {
                str(sample): {self.names[j]: float(v) for j, v in enumerate(row)}
                for sample, row in zip(
                    self.composition.index, self.composition.to_numpy(), strict=True
                )
            },
            "adjusted_rand_index": {k: _finite(v) for k, v in self.agreement.items()},
            "views": {k: _finite(v) if v is not None else None for k, v in self.views.items()},
            "figures": [str(p) for p in self.figures],
        }


def find_niches(
    store: Path | str,
    model_dir: Path | str,
    *,
    k: int | None = None,
    resolution: float | None = None,
    seed: int = 0,
    annotations: Path | str | None = None,
    annotation_key: str = "region",
    out: Path | str | None = None,
    compare_views: bool = False,
    device: str = "auto",
    scheduler: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> NicheReport:
    """Niches of every sample of ``store`` in the fused space of ``model_dir``'s model.

    ``k`` fixes the number of k-means niches (default: chosen by silhouette); ``resolution``
    asks for Leiden instead. ``annotations`` is a CSV with columns ``sample_id``, ``barcode``
    and ``annotation_key``: the adjusted Rand index of niches against it is reported. With
    ``out``, niche maps over each H&E thumbnail and the composition bars are drawn there.
    With ``compare_views``, the spots are also clustered into as many niches from the image
    alone, the measured expression alone and both jointly (:mod:`tmescope.jobs.niche_views`),
    and each view's agreement with the annotations is reported beside the fused one's.
    With ``scheduler`` (``local:N`` or a Dask scheduler's address), the missing fused sets and
    the niche maps are one Dask task per sample; the clustering runs here, on the cohort's
    fused embeddings.
    """
    from tmescope.jobs.cluster import check_scheduler
    from tmescope.jobs.fused import write_fused

    if k is not None and resolution is not None:  # before any work: refused input costs nothing
        raise InvalidParameterError("give either --k or --leiden-resolution, not both")
    check_scheduler(scheduler)
    truth = read_annotations(annotations, annotation_key) if annotations else None
    cohort = write_fused(store, model_dir, device=device, scheduler=scheduler, progress=progress)
    report = niches_of(cohort, k=k, resolution=resolution, seed=seed, truth=truth)
    if compare_views:
        from tmescope.store import CohortStore

        opened = CohortStore.open(store, mode="r")
        report = replace(report, views=view_agreement(opened, cohort, report, truth, seed=seed))
    if out is not None:
        figures = draw_niches(store, cohort, report, Path(out), scheduler=scheduler)
        report = replace(report, figures=tuple(figures))
    return report


def niches_of(
    cohort: FusedCohort,
    *,
    k: int | None = None,
    resolution: float | None = None,
    seed: int = 0,
    truth: pd.DataFrame | None = None,
) -> NicheReport:
    """:func:`find_niches` on fused sets already read."""
    from tmescope.analysis.niches import (
        composition,
        fit_niches,
        niche_names,
        niche_profiles,
        top_genes,
    )

    spots = {sid: rows.is_spot for sid, rows in cohort.samples.items()}
    fused = np.concatenate([r.data.fused[spots[s]] for s, r in cohort.samples.items()])
    model = fit_niches(fused, k=k, resolution=resolution, seed=seed)
    labels = _labels_by_sample(cohort, model, spots)
    spot_labels = {s: labels[s][spots[s]] for s in labels}
    states = np.concatenate([r.data.states[spots[s]] for s, r in cohort.samples.items()])
    expression = np.concatenate([r.data.expression[spots[s]] for s, r in cohort.samples.items()])
    profiles = niche_profiles(model.labels, states, cohort.info.state_names)
    report = NicheReport(
        model_id=cohort.model_id,
        method=model.method,
        params=dict(model.params),
        names=tuple(niche_names(profiles)),
        profiles=profiles,
        top_genes=top_genes(model.labels, expression, cohort.info.genes),
        composition=composition(
            {s: labels[s][sites(r)] for s, r in cohort.samples.items()}, model.k
        ),
        labels=labels,
        is_spot=spots,
        agreement=_agreement(cohort, spot_labels, truth) if truth is not None else {},
    )
    return report


def view_agreement(
    store: Any, cohort: FusedCohort, report: NicheReport, truth: pd.DataFrame | None, *, seed: int
) -> dict[str, float | None]:
    """Each view's niches at the report's number of niches, and their cohort ARI (None without
    annotations): which of image, expression or both finds the annotated regions best."""
    from dataclasses import replace

    from tmescope.analysis.niches import fit_niches
    from tmescope.jobs.niche_views import VIEWS, spot_view

    # The views compare spots, where image and expression both exist: H&E-only slides have
    # neither spots nor expression and take no part.
    measured = {s: r for s, r in cohort.samples.items() if store.sample_record(s).has_counts}
    cohort = replace(cohort, samples=measured)
    scores: dict[str, float | None] = {}
    for view in VIEWS:
        if view == "fused":
            labels = {s: report.labels[s][report.is_spot[s]] for s in cohort.samples}
        else:
            matrices = spot_view(store, cohort, view)
            stacked = np.concatenate([matrices[s] for s in cohort.samples])
            model = fit_niches(stacked, k=report.k, seed=seed, scale_columns=view != "joint")
            sizes = np.cumsum([0] + [len(matrices[s]) for s in cohort.samples])
            labels = {
                s: model.labels[sizes[i] : sizes[i + 1]] for i, s in enumerate(cohort.samples)
            }
        scores[view] = None if truth is None else _agreement(cohort, labels, truth)["cohort"]
    return scores


def read_annotations(path: Path | str, key: str) -> pd.DataFrame:
    """A CSV of ``sample_id, barcode, <key>`` rows; one clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(
            f"no annotations file at {path}: give a CSV of sample_id, barcode, {key}"
        )
    try:
        table = pd.read_csv(path, dtype=str)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidParameterError(f"{path} is not a readable CSV ({error})") from error
    missing = [c for c in ("sample_id", "barcode", key) if c not in table.columns]
    if missing:
        raise InvalidParameterError(
            f"{path} needs columns sample_id, barcode and {key}; it lacks {', '.join(missing)} "
            f"(it has {', '.join(map(str, table.columns))})"
        )
    return table[["sample_id", "barcode", key]].rename(columns={key: "annotation"}).dropna()


def draw_niches(
    store: Path | str,
    cohort: FusedCohort,
    report: NicheReport,
    out: Path,
    *,
    scheduler: str | None = None,
) -> list[Path]:
    """Niche maps over each sample's H&E thumbnail (one task per sample on ``scheduler``'s
    cluster, else in turn), and the composition bars, as PNG."""
    from tmescope.jobs.cluster import sample_runner
    from tmescope.viz.label_maps import plot_composition

    names = np.asarray(report.names, dtype=object)
    items = []
    for sample_id, rows in cohort.samples.items():
        spots = sites(rows)  # the niches are the spots'; tiles would hide the H&E under them
        labels = names[report.labels[sample_id][spots]]
        items.append(NicheMap(sample_id, rows.coords_px[spots], labels))
    task = NicheMapTask(Path(store), tuple(report.names), report.method, out)
    with sample_runner(scheduler) as runner:
        figures = runner.map(draw_niche_map, items, task, name="niche-maps")
    figures.append(
        plot_composition(
            report.composition.to_numpy(), list(map(str, report.composition.index)),
            list(report.names), out / "niche_composition.png",
            title="niche composition per sample",
        )
    )  # fmt: skip
    return figures


@dataclass(frozen=True, eq=False)
class NicheMap:
    """One sample's niche map to draw: its sites and their niche names."""

    sample_id: str
    coords_px: np.ndarray  # (n, 2) full-resolution px
    labels: Any  # (n,) object ndarray of niche names


@dataclass(frozen=True)
class NicheMapTask:
    store: Path
    names: tuple[str, ...]
    method: str
    out: Path


def draw_niche_map(item: NicheMap, task: NicheMapTask) -> Path:
    """One sample's niche map over its H&E thumbnail (the unit of work of :func:`draw_niches`)."""
    from tmescope.store import CohortStore
    from tmescope.viz.label_maps import plot_label_map
    from tmescope.viz.thumbnails import sample_thumbnail

    sid = item.sample_id
    thumb, scale = sample_thumbnail(CohortStore.open(task.store, mode="r"), sid)
    return plot_label_map(
        thumb, item.coords_px * scale, item.labels, list(task.names),
        task.out / f"niches_{sid}.png", title=f"{sid}: niches ({task.method})",
    )  # fmt: skip


def sites(rows: Any) -> np.ndarray:
    """Which fused rows of a sample a niche map and composition count: its spots, or for an
    H&E-only slide (no spots) all its tiles, which stand where spots would."""
    spots = np.asarray(rows.is_spot, dtype=bool)
    return spots if spots.any() else np.ones(rows.n, dtype=bool)


def _labels_by_sample(
    cohort: FusedCohort, model: NicheModel, spots: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    labels = {}
    start = 0
    for sample_id, rows in cohort.samples.items():
        mask = spots[sample_id]
        out = np.empty(rows.n, dtype=np.int64)
        out[mask] = model.labels[start : start + int(mask.sum())]
        start += int(mask.sum())
        if (~mask).any():
            out[~mask] = model.assign(rows.data.fused[~mask])
        labels[sample_id] = out
    return labels


def _agreement(
    cohort: FusedCohort, spot_labels: Mapping[str, np.ndarray], truth: pd.DataFrame
) -> dict[str, float]:
    """Adjusted Rand index of niches against annotations, per sample and over the cohort."""
    from sklearn.metrics import adjusted_rand_score

    found, given = [], []
    scores: dict[str, float] = {}
    for sample_id, rows in cohort.samples.items():
        table = truth[truth["sample_id"] == sample_id].drop_duplicates("barcode")
        annotation = table.set_index("barcode")["annotation"]
        barcodes = rows.names[rows.is_spot]
        known = np.isin(barcodes, annotation.index.to_numpy())
        if known.sum() < 2:
            continue
        found.append(spot_labels[sample_id][known])
        given.append(annotation.loc[barcodes[known]].to_numpy())
        scores[sample_id] = float(adjusted_rand_score(given[-1], found[-1]))
    if not scores:
        raise InvalidParameterError(
            "the annotations name no spot of the store's samples: check their sample_id and "
            "barcode columns"
        )
    # Niche ids are shared by every sample, so the cohort's score pools the spots as they are.
    pooled = float(adjusted_rand_score(np.concatenate(given), np.concatenate(found)))
    return {"cohort": pooled, **scores}


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
