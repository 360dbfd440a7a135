"""``tmescope compare``: what differs between groups of tumours, with patients as the units.

Each sample's sub-spot maps (saved by ``predict``/``interactions --resolution``, else predicted
now and saved) are summarised — co-location ratio of every pair of populations, mean shares,
the immune phenotype (:mod:`tmescope.analysis.sample_summary`) — one Dask task per sample with
``scheduler``; the groups are then compared across patients
(:mod:`tmescope.analysis.group_compare`). Groups and patients come from the samples' metadata in
the store, or from a sample sheet given again (``samplesheet``) to compare another grouping
without re-embedding. Everything is checked before any map is computed, and the output folder
is put in place whole (tables, JSON, figures), or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmescope.analysis.adata_compare import compare_adatas, one_hot_types
from tmescope.analysis.interfaces import DEFAULT_RADIUS_UM
from tmescope.errors import InvalidParameterError, SampleNotFoundError

if TYPE_CHECKING:
    from tmescope.analysis.group_compare import GroupComparison
    from tmescope.analysis.sample_summary import SampleSummary
    from tmescope.store import CohortStore

__all__ = [
    "CompareReport",
    "CompareSettings",
    "compare_adatas",  # the twin on any list of AnnData, re-exported for tmescope.workflows
    "one_hot_types",
    "run_compare",
]

log = logging.getLogger(__name__)

COMPARISON_JSON = "comparison.json"


@dataclass(frozen=True)
class CompareSettings:
    """The grouping, the units, the maps' bin size, the contact radius and the pairs to plot."""

    by: str
    subject: str = "patient"
    resolution_um: float = 16.0
    radius_um: float = DEFAULT_RADIUS_UM
    pairs: tuple[tuple[str, str], ...] = ()
    t_cell: str | None = None  # the populations the immune phenotype reads (default: by name)
    tumour: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.by.strip():
            raise InvalidParameterError("--by needs a metadata column, e.g. --by group")
        if not self.radius_um > 0:
            raise InvalidParameterError(f"--radius must be > 0 µm; found {self.radius_um}")
        for pair in self.pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise InvalidParameterError(
                    f"--pair takes two different populations, as A,B; found {','.join(pair)}"
                )


@dataclass(frozen=True)
class CompareTask:
    """What a worker needs for any sample: picklable paths and settings."""

    store: Path
    model_dir: Path
    settings: CompareSettings
    keep: bool  # whether maps predicted now may be saved in the store


@dataclass(frozen=True)
class CompareReport:
    comparison: GroupComparison
    model_dir: str
    settings: CompareSettings
    metadata_from: str  # the store, or the sheet's path
    out: Path | None = None
    figures: tuple[Path, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            **self.comparison.to_json(),
            "model_dir": self.model_dir,
            "resolution_um": self.settings.resolution_um,
            "metadata_from": self.metadata_from,
            "out": str(self.out) if self.out else None,
            "figures": [str(p) for p in self.figures],
        }


def run_compare(
    store: Path | str,
    model_dir: Path | str,
    *,
    settings: CompareSettings,
    samplesheet: Path | str | None = None,
    out: Path | str | None = None,
    scheduler: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> CompareReport:
    """Compare the groups of ``settings.by`` (twin of ``tmescope compare``); with ``out``, write
    the tables, the JSON and the figures there (whole, or nothing)."""
    from tmescope.analysis.group_compare import check_design, compare_groups
    from tmescope.analysis.interfaces import pairs_of
    from tmescope.fusion.subspot_data import check_resolution
    from tmescope.jobs.cluster import check_scheduler, sample_runner
    from tmescope.jobs.subspot_maps import (
        check_predictor,
        load_predictor,
        open_for_saving,
        save_maps_info,
    )

    check_scheduler(scheduler)
    out_dir = _check_out(out)
    opened = open_for_saving(store)
    listed, metadata, source = _metadata(opened, samplesheet)
    design = check_design(listed, metadata, by=settings.by, subject=settings.subject)
    samples = [s for s in listed if s in design.group_of]  # an empty group: left out
    predictor = load_predictor(model_dir)
    populations = tuple(predictor.subspot.populations)
    pairs_of(populations, settings.pairs or None)  # an unknown name fails before any work
    for flag, name in (("--t-cells", settings.t_cell), ("--tumour", settings.tumour)):
        if name is not None and name not in populations:
            raise InvalidParameterError(
                f"{flag} {name}: no such population; the model's are {', '.join(populations)}"
            )
    check_predictor(opened, predictor, settings.resolution_um)
    for sample_id in samples:
        check_resolution(opened, sample_id, settings.resolution_um)
    if opened.writable:
        save_maps_info(opened, predictor)
    task = CompareTask(
        store=opened.path, model_dir=Path(model_dir), settings=settings, keep=opened.writable
    )
    finished = 0

    def done(i: int, _: Any) -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(samples[i], finished, len(samples))

    with sample_runner(scheduler) as runner:
        summaries = runner.map(summarise_stored_sample, samples, task, name="compare",
                               on_done=done)  # fmt: skip
    comparison = compare_groups(
        summaries, metadata, by=settings.by, subject=settings.subject, seed=settings.seed
    )
    report = CompareReport(comparison, str(model_dir), settings, source, out_dir)
    if out_dir is None:
        return report
    from tmescope.jobs.compare_outputs import write_outputs

    return write_outputs(report, out_dir)


def summarise_stored_sample(sample_id: str, task: CompareTask) -> SampleSummary:
    """One sample's summary from its maps (saved, else predicted and saved): the unit of work."""
    import numpy as np

    from tmescope.analysis.sample_summary import summarise_sample
    from tmescope.jobs.subspot_maps import load_predictor, sample_maps
    from tmescope.store import CohortStore

    store = CohortStore.open(task.store, mode="a" if task.keep else "r")
    predictor = load_predictor(task.model_dir)
    maps = sample_maps(store, predictor, sample_id)
    mpp = float(store.sample_record(sample_id).meta.mpp)
    coords_um = np.asarray(store.read_bins(sample_id).coords, dtype=np.float64) * mpp
    s = task.settings
    log.info("compare: %s, %d bins", sample_id, maps.n_bins)
    return summarise_sample(
        sample_id, coords_um, maps.reconciled, predictor.subspot.populations,
        radius_um=s.radius_um, t_cell=s.t_cell, tumour=s.tumour,
    )  # fmt: skip


def _metadata(
    store: CohortStore, samplesheet: Path | str | None
) -> tuple[list[str], dict[str, dict[str, str]], str]:
    """The samples compared and their metadata: the sheet's rows (each must be in the store),
    or every sample of the store with the metadata kept there."""
    known = store.sample_ids()
    if samplesheet is None:
        return known, {s: dict(store.sample_record(s).metadata) for s in known}, "store"
    from tmescope.jobs.embed_sheet import read_samplesheet

    sheet = read_samplesheet(samplesheet)
    missing = [s for s in sheet.samples if s not in known]
    if missing:
        raise SampleNotFoundError(
            f"sample sheet {samplesheet} names sample(s) {', '.join(map(repr, missing[:5]))} "
            f"that {store.path} lacks (it holds {', '.join(known[:8]) or 'none'}"
            f"{' …' if len(known) > 8 else ''}); embed them first, or drop their rows"
        )
    return sheet.samples, sheet.metadata(), str(samplesheet)


def _check_out(out: Path | str | None) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InvalidParameterError(f"--out {path} is a file; expected a folder (new or a "
                                    "previous comparison's, which is replaced)")  # fmt: skip
    if path.is_dir() and any(path.iterdir()) and not (path / COMPARISON_JSON).is_file():
        raise InvalidParameterError(
            f"--out {path} holds files that are not a comparison's; a comparison replaces its "
            "folder whole, so name an empty or new folder"
        )
    return path


def pairs_to_plot(report: CompareReport, n: int = 3) -> list[tuple[str, str]]:
    """The pairs drawn patient by patient: those asked for, else the ``n`` smallest q."""
    if report.settings.pairs:
        return list(report.settings.pairs)
    seen: list[tuple[str, str]] = []
    for row in report.comparison.pairs:
        key = (row["a"], row["b"])
        if key not in seen:
            seen.append(key)
        if len(seen) == n:
            break
    return seen
