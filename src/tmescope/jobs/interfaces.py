"""``tmescope interactions … --resolution UM``: where populations meet, on the sub-spot maps.

Each sample's sub-spot maps at ``UM`` bins (as ``predict --resolution`` saves them in the store),
then every pair of populations (or the pairs asked for) gets its co-location
ratio at ``radius_um`` on the continuous abundances, with a toroidal-shift null that keeps each
population's own spatial structure (:mod:`tmescope.analysis.interfaces`). Over several samples the
log ratios are pooled as mean ± spread and the z-scores by Stouffer's method. A sample's
statistics are kept with its maps (:mod:`tmescope.jobs.interface_sample`, the unit of work, one
Dask task per sample with ``scheduler``): a run killed part-way, or the report after it, takes up
the finished samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.analysis.adata_pairs import adata_interface_maps, adata_pair_statistics
from tmescope.analysis.interfaces import DEFAULT_RADIUS_UM
from tmescope.errors import InvalidParameterError

if TYPE_CHECKING:
    from tmescope.analysis.interfaces import CohortPairs, PairStatistics

__all__ = [
    "InterfaceReport",
    "InterfaceSettings",
    "SampleInterfaces",
    "adata_interface_maps",  # the twin on any AnnData, re-exported for tmescope.workflows
    "adata_pair_statistics",
    "run_interfaces",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InterfaceSettings:
    """Bin size, the pairs to map (all by default), the contact radius and the null's size."""

    resolution_um: float = 16.0
    pairs: tuple[tuple[str, str], ...] = ()
    radius_um: float = DEFAULT_RADIUS_UM
    n_shifts: int = 199
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.radius_um > 0:
            raise InvalidParameterError(f"--radius must be > 0 µm; found {self.radius_um}")
        if not 10 <= self.n_shifts <= 100_000:
            raise InvalidParameterError(f"--perms must be from 10 to 100000; found {self.n_shifts}")
        for pair in self.pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise InvalidParameterError(
                    f"--pair takes two different populations, as A,B; found {','.join(pair)}"
                )


@dataclass(frozen=True)
class SampleInterfaces:
    sample_id: str
    n_bins: int
    stats: PairStatistics


@dataclass(frozen=True)
class InterfaceReport:
    """Per-sample pair statistics and, over two or more samples, their pooled form."""

    model_dir: str
    settings: InterfaceSettings
    populations: tuple[str, ...]
    samples: tuple[SampleInterfaces, ...]
    cohort: CohortPairs | None
    figures: tuple[Path, ...] = field(default=())

    def pairs(self) -> list[dict[str, Any]]:
        """The pairs asked for (every pair by default), strongest evidence first."""
        from tmescope.analysis.interfaces import pairs_of

        rows = []
        for a, b in pairs_of(self.populations, self.settings.pairs or None):
            ratios = [s.stats.ratio[a, b] for s in self.samples]
            if self.cohort is not None:
                z = self.cohort.stouffer_z[a, b]
                p = np.nan
                log_ratio, spread = (
                    self.cohort.mean_log_ratio[a, b],
                    self.cohort.std_log_ratio[a, b],
                )
            else:
                z, p = self.samples[0].stats.zscore[a, b], self.samples[0].stats.pvalue[a, b]
                log_ratio, spread = np.log(ratios[0]), np.nan
            if not np.isfinite(log_ratio):
                continue  # a population too rare in every sample
            rows.append(
                {"a": self.populations[a], "b": self.populations[b],
                 "ratio": _num(np.exp(log_ratio)), "log_ratio_sd": _num(spread),
                 "z": _num(z), "p": _num(p),
                 "per_sample": {s.sample_id: _num(r) for s, r in zip(self.samples, ratios, strict=True)}}
            )  # fmt: skip
        return sorted(rows, key=lambda r: -abs(r["z"] or 0.0))

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "model_dir": self.model_dir,
            "resolution_um": s.resolution_um,
            "radius_um": s.radius_um,
            "n_shifts": s.n_shifts,
            "seed": s.seed,
            "null": "toroidal shifts of the second population's map, the other shares of each "
            "bin renormalised with it (closed: the closure of shares is in the null)",
            "populations": list(self.populations),
            "pairs": self.pairs(),
            "samples": {r.sample_id: {"n_bins": r.n_bins} for r in self.samples},
            "figures": [str(p) for p in self.figures],
        }


def run_interfaces(
    store: Path | str,
    model_dir: Path | str,
    *,
    samples: Sequence[str] | None = None,
    settings: InterfaceSettings | None = None,
    out: Path | str | None = None,
    scheduler: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> InterfaceReport:
    """Pair statistics of ``samples`` (default: every sample of the store) at sub-spot bins.

    Each sample is one task (:func:`tmescope.jobs.interface_sample.sample_interfaces`): in turn
    here, or on the Dask cluster ``scheduler`` names (``local:N`` or an address). A sample's
    maps and statistics are kept in the store, so that a second run (or the report) reads them;
    the pooled statistics are computed here, in the samples' order: the result is the same
    however the tasks ran. ``progress(sample_id, done, total)`` is called as each finishes.
    """
    from tmescope.analysis.interfaces import pairs_of, pool_pairs
    from tmescope.fusion.cohort import check_samples
    from tmescope.fusion.subspot_data import check_resolution
    from tmescope.jobs.cluster import check_scheduler, sample_runner
    from tmescope.jobs.interface_figures import draw_cohort
    from tmescope.jobs.interface_sample import InterfaceTask, sample_interfaces
    from tmescope.jobs.subspot_maps import (
        check_predictor,
        load_predictor,
        open_for_saving,
        save_maps_info,
    )

    settings = settings or InterfaceSettings()
    check_scheduler(scheduler)
    opened = open_for_saving(store)
    wanted = list(samples) if samples else opened.sample_ids()
    check_samples(opened, wanted)
    predictor = load_predictor(model_dir)
    populations = tuple(predictor.subspot.populations)
    pairs_of(populations, settings.pairs or None)  # an unknown name fails before any work
    check_predictor(opened, predictor, settings.resolution_um)
    for sample_id in wanted:
        check_resolution(opened, sample_id, settings.resolution_um)
    if opened.writable:
        save_maps_info(opened, predictor)  # once, before the tasks write its samples
    out_dir = Path(out) if out is not None else None
    task = InterfaceTask(
        store=opened.path, model_dir=Path(model_dir), settings=settings, out=out_dir,
        keep=opened.writable,
    )  # fmt: skip
    finished = 0

    def done(i: int, outcome: Any) -> None:
        nonlocal finished
        finished += 1
        reused = "" if outcome.computed else " (kept from an earlier run)"
        log.info("interfaces of %s done%s", wanted[i], reused)
        if progress is not None:
            progress(wanted[i], finished, len(wanted))

    with sample_runner(scheduler) as runner:
        outcomes = runner.map(sample_interfaces, wanted, task, name="interfaces", on_done=done)
    results = [o.result for o in outcomes]
    report = InterfaceReport(
        model_dir=str(model_dir),
        settings=settings,
        populations=populations,
        samples=tuple(results),
        cohort=pool_pairs([r.stats for r in results]) if len(results) > 1 else None,
    )
    figures = [path for o in outcomes for path in o.figures]
    if out_dir is not None and report.cohort is not None:
        figures.insert(0, draw_cohort(report, out_dir))
    return replace(report, figures=tuple(figures))


def _num(value: Any) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None
