"""One sample of ``tmescope interactions`` (labels on spots or tiles): the unit of work, serial or
a Dask task.

Labels are fitted on the whole cohort first (``interactions.cohort_labels``); then each sample's
statistics need only its own rows: their positions, labels and state scores (:class:`SampleSites`,
small), never another sample's. :func:`sample_statistics` computes them and returns matrices of a
few labels squared; :func:`draw_sample_figures` draws the sample's figures once the cohort's top
pairs are known.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.errors import TrainingDataError

if TYPE_CHECKING:
    from tmescope.analysis.crosscorr import CrossCorrResult
    from tmescope.jobs.interactions import InteractionSettings, SampleInteractions

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SampleSites:
    """The rows of one sample that are labelled (spots, or grid tiles): what its statistics and
    figures need, and nothing of the other samples."""

    sample_id: str
    coords_um: np.ndarray  # (n, 2) float64
    coords_px: np.ndarray  # (n, 2) float32 full-resolution px
    labels: Any  # (n,) object ndarray: each row's label
    states: np.ndarray  # (n, S) float32 predicted state scores


@dataclass(frozen=True)
class StatisticsTask:
    """What any sample's statistics need besides its sites: picklable."""

    settings: InteractionSettings
    categories: tuple[str, ...]
    state_names: tuple[str, ...]


@dataclass(frozen=True)
class FiguresTask:
    """What any sample's figures need besides its sites and statistics: picklable."""

    store: Path
    settings: InteractionSettings
    categories: tuple[str, ...]
    top_pairs: tuple[tuple[str, str], ...]  # the cohort's strongest pairs: the curves drawn
    out: Path


def sample_statistics(sites: SampleSites, task: StatisticsTask) -> SampleInteractions:
    """Neighbourhood enrichment, co-occurrence and cross-correlation of one sample."""
    from tmescope.analysis.cooccurrence import co_occurrence
    from tmescope.analysis.enrichment import nhood_enrichment
    from tmescope.jobs.interactions import SampleInteractions, neighbour_radius

    settings, categories = task.settings, task.categories
    sample_id, coords, lab = sites.sample_id, sites.coords_um, sites.labels
    present = sorted(set(lab.tolist()))
    if len(present) < 2:
        raise TrainingDataError(
            f"sample {sample_id!r} has only one population ({present[0]}) among its "
            f"{'tiles' if settings.grid else 'spots'}: interactions need at least 2; "
            "try --on niches, or leave the sample out"
        )
    radius = neighbour_radius(coords)
    log.info("interactions of %s: %d rows, radius %.0f µm", sample_id, len(lab), radius)
    enrichment = nhood_enrichment(
        coords, lab, radius_um=radius, n_perms=settings.n_perms, seed=settings.seed,
        categories=categories, sample_id=sample_id,
    )  # fmt: skip
    cooc = co_occurrence(coords, lab, categories=categories, sample_id=sample_id)
    return SampleInteractions(
        sample_id=sample_id,
        n=len(lab),
        counts={c: int((lab == c).sum()) for c in categories},
        radius_um=radius,
        enrichment=enrichment,
        cooccurrence=cooc,
        crosscorr=_crosscorr(sites, radius, task.state_names, settings),
    )


def draw_sample_figures(
    item: tuple[SampleSites, SampleInteractions], task: FiguresTask
) -> list[Path]:
    """A sample's enrichment heatmap, co-occurrence curves and label map over its H&E."""
    from tmescope.store import CohortStore
    from tmescope.viz.interaction_plots import plot_cooccurrence_curves, plot_enrichment_heatmap
    from tmescope.viz.label_maps import plot_label_map
    from tmescope.viz.thumbnails import sample_thumbnail

    sites, result = item
    sid, out, cats = result.sample_id, task.out, list(task.categories)
    what = "niches" if task.settings.on == "niches" else "dominant TME state"
    where = "grid tiles" if task.settings.grid else "spots"
    thumb, scale = sample_thumbnail(CohortStore.open(task.store, mode="r"), sid)
    return [
        plot_enrichment_heatmap(
            result.enrichment.zscore, cats, out / f"enrichment_{sid}.png",
            title=f"{sid}: neighbourhood enrichment (z), {what} of {where}",
        ),
        plot_cooccurrence_curves(
            result.cooccurrence.ratio, result.cooccurrence.distances_um, cats,
            out / f"cooccurrence_{sid}.png", pairs=list(task.top_pairs),
            title=f"{sid}: co-occurrence by distance",
        ),
        plot_label_map(
            thumb, sites.coords_px * scale, sites.labels, cats, out / f"labels_{sid}.png",
            title=f"{sid}: {what} of {where}", marker_px=3.0 if task.settings.grid else 4.0,
        ),
    ]  # fmt: skip


def _crosscorr(
    sites: SampleSites, radius: float, names: tuple[str, ...], settings: InteractionSettings
) -> CrossCorrResult | None:
    """Bivariate Moran's I of every pair of state scores over row-standardised neighbours."""
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    from tmescope.analysis.crosscorr import cross_correlation, row_standardise

    if len(names) < 2:
        return None
    coords = sites.coords_um
    pairs = cKDTree(coords).query_pairs(radius, output_type="ndarray")
    source, target = np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]
    n = len(coords)
    weights = sp.csr_matrix((np.ones(source.size), (source, target)), shape=(n, n))
    return cross_correlation(
        sites.states, names, row_standardise(weights),
        n_perms=settings.crosscorr_perms, seed=settings.seed,
    )  # fmt: skip
