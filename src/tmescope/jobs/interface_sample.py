"""One sample of ``tmescope interactions --resolution``: the unit of work, serial or a Dask task.

:func:`sample_interfaces` takes the sample's saved maps (predicting and saving them when there
are none), its pair statistics kept in the store for these maps and parameters (computing and
keeping them when there are none) and, with ``--out``, its figures (drawn unless a finished run
drew them already). It opens the store itself and returns only the statistics (P × P matrices)
and the paths of its figures, so that it can run on any worker of a cluster. A run killed
part-way therefore takes up every sample it finished, and gives the same statistics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmescope.jobs.interfaces import InterfaceSettings, SampleInterfaces

if TYPE_CHECKING:
    from tmescope.analysis.interfaces import PairStatistics
    from tmescope.jobs.subspot_maps import SubspotPredictor
    from tmescope.store import CohortStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InterfaceTask:
    """What a worker needs for any sample: picklable paths and settings."""

    store: Path
    model_dir: Path
    settings: InterfaceSettings
    out: Path | None
    keep: bool  # whether the store may be written (maps and statistics kept)


@dataclass(frozen=True)
class SampleOutcome:
    """A sample's statistics, its figures, and what had to be done for them."""

    result: SampleInterfaces
    figures: tuple[Path, ...]
    computed: tuple[str, ...]  # of "maps", "statistics", "figures": what was not reused


def stats_params(settings: InterfaceSettings) -> dict[str, Any]:
    """Everything besides the maps that changes a sample's pair statistics. The maps are shares
    of cells, so the null is the closed shift (statistics kept under the plain shift, keyed
    ``"toroidal"``, are not taken up: they are computed again)."""
    return {"radius_um": float(settings.radius_um), "n_shifts": int(settings.n_shifts),
            "seed": int(settings.seed), "null": "toroidal-closed", "min_shift": "2 radius"}  # fmt: skip


def sample_interfaces(sample_id: str, task: InterfaceTask) -> SampleOutcome:
    """Pair statistics (and, with ``task.out``, figures) of one sample, reusing what is kept."""
    from tmescope.jobs.interface_figures import finished_figures
    from tmescope.jobs.subspot_maps import load_predictor
    from tmescope.store import CohortStore
    from tmescope.store.maps import fresh_maps_version

    store = CohortStore.open(task.store, mode="a" if task.keep else "r")
    predictor = load_predictor(task.model_dir)
    version = fresh_maps_version(store, predictor.model_id, sample_id)
    stamp = _figure_stamp(task.settings, version)
    kept = _kept_stats(store, predictor, sample_id, task.settings, version)
    figures = finished_figures(task.out, sample_id, stamp) if task.out and version else None
    if kept is not None and (task.out is None or figures is not None):
        log.info("pair statistics of %s: kept in the store", sample_id)
        return SampleOutcome(kept, tuple(figures or ()), ())
    return _compute(store, predictor, sample_id, task, kept)


def _compute(
    store: CohortStore,
    predictor: SubspotPredictor,
    sample_id: str,
    task: InterfaceTask,
    kept: SampleInterfaces | None,
) -> SampleOutcome:
    from tmescope.analysis.adata_pairs import adata_pair_statistics
    from tmescope.analysis.interfaces import ClosedShift
    from tmescope.jobs.interface_figures import draw_sample, record_figures
    from tmescope.jobs.predict_bins import maps_anndata
    from tmescope.jobs.subspot_maps import sample_maps
    from tmescope.store.maps import fresh_maps_version

    s = task.settings
    computed = [] if fresh_maps_version(store, predictor.model_id, sample_id) else ["maps"]
    maps = sample_maps(store, predictor, sample_id)
    adata = maps_anndata(
        store, predictor, sample_id, maps, model_dir=task.model_dir, expression=False, image=False
    )
    result = kept
    if result is None:
        log.info("pair statistics of %s: %d bins, %d shifts", sample_id, adata.n_obs, s.n_shifts)
        # The maps are shares (compositions of each bin, to within the reconciliation's
        # convergence): the closed null, named rather than guessed from the sums.
        stats = adata_pair_statistics(
            adata, radius_um=s.radius_um, n_shifts=s.n_shifts, seed=s.seed, null=ClosedShift()
        )
        result = SampleInterfaces(sample_id, adata.n_obs, stats)
        computed.append("statistics")
        if store.writable and maps.version:
            _keep_stats(store, predictor, sample_id, s, maps.version, result)
    figures: list[Path] = []
    if task.out is not None:
        figures = draw_sample(store, result, adata, s, task.out)
        computed.append("figures")
        if maps.version:
            record_figures(task.out, sample_id, _figure_stamp(s, maps.version), figures)
    return SampleOutcome(result, tuple(figures), tuple(computed))


def _kept_stats(
    store: CohortStore,
    predictor: SubspotPredictor,
    sample_id: str,
    settings: InterfaceSettings,
    version: str | None,
) -> SampleInterfaces | None:
    from tmescope.analysis.interfaces import PairStatistics
    from tmescope.store.pair_stats import read_pair_stats

    if not version:
        return None
    found = read_pair_stats(
        store, predictor.model_id, sample_id, params=stats_params(settings), maps_version=version
    )
    if found is None:
        return None
    matrices, attrs = found
    stats = PairStatistics(
        names=tuple(attrs["names"]), ratio=matrices["ratio"], null_mean=matrices["null_mean"],
        null_std=matrices["null_std"], zscore=matrices["zscore"], pvalue=matrices["pvalue"],
        n_shifts=int(attrs["n_shifts"]), radius=float(attrs["radius"]), n=int(attrs["n"]),
        null=str(attrs.get("null", "toroidal")),
    )  # fmt: skip
    return SampleInterfaces(sample_id, int(attrs["n_bins"]), stats)


def _keep_stats(
    store: CohortStore,
    predictor: SubspotPredictor,
    sample_id: str,
    settings: InterfaceSettings,
    version: str,
    result: SampleInterfaces,
) -> None:
    from tmescope.store.pair_stats import write_pair_stats

    stats: PairStatistics = result.stats
    try:
        write_pair_stats(
            store, predictor.model_id, sample_id, params=stats_params(settings),
            maps_version=version,
            matrices={"ratio": stats.ratio, "null_mean": stats.null_mean,
                      "null_std": stats.null_std, "zscore": stats.zscore, "pvalue": stats.pvalue},
            attrs={"names": list(stats.names), "n_shifts": stats.n_shifts,
                   "radius": stats.radius, "n": stats.n, "n_bins": result.n_bins,
                   "null": stats.null},
        )  # fmt: skip
    except OSError as error:  # the maps were replaced meanwhile: they are recomputed next time
        log.warning("pair statistics of %s not kept (%s)", sample_id, error)


def _figure_stamp(settings: InterfaceSettings, version: str | None) -> dict[str, Any]:
    """What a sample's figures show: these maps, these statistics, these pairs and bins."""
    return {"maps_version": version, **stats_params(settings),
            "pairs": [list(p) for p in settings.pairs],
            "resolution_um": float(settings.resolution_um)}  # fmt: skip
