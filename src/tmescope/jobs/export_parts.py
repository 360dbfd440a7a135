"""An export written sample by sample: one task per sample writes its part, the parts are joined.

``export`` gathers each sample's maps (spot predictions, sub-spot maps, niches) and lays them out
with its image and embeddings: work that grows with the sample, not with the cohort. Each sample
is one task (:func:`tmescope.jobs.cluster.SampleRunner`), serial or on a Dask worker, that loads
the model once per process, reads the sample and writes its part into a hidden folder of the
export being written; the task returns only the names of what it wrote. The parts are then joined
in the samples' order (``export_spatialdata.join_parts``, ``export_geojson.join_parts``), so the
export is the same however the tasks ran. The niches are the cohort's: they are found once, here,
and each task is handed its sample's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tmescope.jobs.export import ExportModel
    from tmescope.store import CohortStore

PARTS = ".parts"  # the hidden folder, inside or beside the export, holding the samples' parts


@dataclass(frozen=True)
class ExportItem:
    """One sample to export, with its niches by store row (empty: none)."""

    sample_id: str
    niches: Mapping[int, str]


@dataclass(frozen=True)
class ExportTask:
    """What a worker needs to write any sample's part: picklable paths and names."""

    store: Path
    model_dir: Path | None
    bin_um: float | None  # the sub-spot model's bin size; None without one
    niche_names: tuple[str, ...]  # every niche of the cohort, in order
    parts: Path

    def open_store(self) -> CohortStore:
        from tmescope.store import CohortStore

        return CohortStore.open(self.store, mode="r")

    def model(self, item: ExportItem) -> ExportModel | None:
        """The model as :class:`ExportModel`, with this sample's niches (loaded once per
        process: a worker reuses it for every sample it is given)."""
        from tmescope.jobs.export import ExportModel
        from tmescope.jobs.predict import cached_model

        if self.model_dir is None:
            return None
        return ExportModel(
            self.model_dir, cached_model(self.model_dir, device="cpu"), self.bin_um,
            {item.sample_id: dict(item.niches)} if item.niches else {},
            niche_classes=self.niche_names,
        )  # fmt: skip


def export_items(samples: list[str], model: ExportModel | None) -> list[ExportItem]:
    """Each sample with its niches."""
    niches = model.niches if model is not None else {}
    return [ExportItem(s, dict(niches.get(s, {}))) for s in samples]


def export_task(store: CohortStore, model: ExportModel | None, parts: Path) -> ExportTask:
    return ExportTask(
        store=store.path, model_dir=model.path if model is not None else None,
        bin_um=model.bin_um if model is not None else None,
        niche_names=tuple(model.niche_names) if model is not None else (), parts=parts,
    )  # fmt: skip
