"""A training run's spots on disk, written once and read back one sample at a time.

Cross-validation visits every sample in every fold; holding the whole cohort's embeddings and
counts in memory for that would make training's memory grow with the cohort. Instead each
sample is read from the store once and its spot-level inputs are kept in a scratch folder::

    <sample_id>/
      x.npy          (n, d)  float32  embeddings standardised by the sample's own spots
      x_smooth.npy   (n, d)  float32  their mean over each spot and its graph neighbours
      edges.npy      (2, E)  int64    the spot graph (source → target)
      distance.npy   (E,)    float32  its edges' lengths in µm
      counts.npz             the raw counts (CSR, spots × genes)
      moments.npy    (3, g)  float64  per-gene sums of log1p expression (sum, squares, detected)
      sample.json            sample id, genes, µm/px

A fold then needs only the moments of its training samples to fix its targets
(:func:`~tmescope.fusion.target_spec.fit_targets_from_moments`), and reads each sample's arrays
when a model trains or predicts on it. A sample folder is written whole (renamed into place), so
a killed run leaves complete samples that the next run reuses.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from tmescope.fusion.cohort import SpotTable, standardise_by_spots
from tmescope.fusion.evaluation import PreparedSample
from tmescope.fusion.graph import SpotGraph, neighbour_mean
from tmescope.fusion.targets import SampleMoments

_FILES = ("x.npy", "x_smooth.npy", "edges.npy", "distance.npy", "counts.npz", "moments.npy")
_HEADER = "sample.json"


class SpotCache:
    """The spot-level inputs of a training run's samples, in ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __contains__(self, sample_id: object) -> bool:
        where = self.folder / str(sample_id)
        return (where / _HEADER).is_file() and all((where / f).is_file() for f in _FILES)

    def add(self, table: SpotTable, graph: SpotGraph) -> None:
        """Keep ``table``'s spots (with their counts) and ``graph``; replaces an earlier copy."""
        if table.counts is None:
            raise ValueError(f"sample {table.sample_id!r} was read without its counts")
        (x,) = standardise_by_spots(table.embeddings)
        target = self.folder / table.sample_id
        partial = self.folder / f".tmp-{table.sample_id}-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
        np.save(partial / "x.npy", x)
        np.save(partial / "x_smooth.npy", neighbour_mean(x, graph).astype(np.float32))
        np.save(partial / "edges.npy", graph.edge_index.astype(np.int64))
        np.save(partial / "distance.npy", graph.distance_um.astype(np.float32))
        sp.save_npz(partial / "counts.npz", sp.csr_matrix(table.counts), compressed=False)
        moments = SampleMoments.of(table.sample_id, table.counts, table.genes)
        np.save(partial / "moments.npy", moments.sums)
        header = {"sample_id": table.sample_id, "genes": list(table.genes), "mpp": table.mpp,
                  "n": table.n}  # fmt: skip
        (partial / _HEADER).write_text(json.dumps(header), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)

    def _header(self, sample_id: str) -> dict[str, object]:
        return dict(json.loads((self.folder / sample_id / _HEADER).read_text(encoding="utf-8")))

    def genes(self, sample_id: str) -> tuple[str, ...]:
        return tuple(str(g) for g in self._header(sample_id)["genes"])  # type: ignore[attr-defined]

    def moments(self, sample_id: str) -> SampleMoments:
        header = self._header(sample_id)
        sums = np.load(self.folder / sample_id / "moments.npy")
        return SampleMoments(sample_id, self.genes(sample_id), int(header["n"]), sums)  # type: ignore[call-overload]

    def counts_table(self, sample_id: str) -> SpotTable:
        """The sample's counts and genes as a :class:`SpotTable` (what targets are computed
        from); its embeddings are the standardised ones, memory-mapped, not read."""
        where = self.folder / sample_id
        header = self._header(sample_id)
        x = np.load(where / "x.npy", mmap_mode="r")
        n = int(header["n"])  # type: ignore[call-overload]
        return SpotTable(
            sample_id=sample_id, mpp=float(header["mpp"]),  # type: ignore[arg-type]
            rows=np.arange(n), embeddings=x, coords_px=np.zeros((n, 2), np.float32),
            barcodes=np.zeros(n, dtype=str), counts=sp.load_npz(where / "counts.npz").tocsr(),
            genes=self.genes(sample_id),
        )  # fmt: skip

    def prepared(self, sample_id: str, y: np.ndarray) -> PreparedSample:
        """The sample as the models of a fold see it, with that fold's targets ``y``."""
        where = self.folder / sample_id
        edges = np.load(where / "edges.npy")
        x = np.load(where / "x.npy")
        graph = SpotGraph(edges, np.load(where / "distance.npy"), int(x.shape[0]))
        return PreparedSample(sample_id, x, np.load(where / "x_smooth.npy"), graph, y)


class CachedSamples(Sequence[PreparedSample]):
    """Samples of a fold read from a :class:`SpotCache` when asked for, never all at once."""

    def __init__(self, cache: SpotCache, targets: Mapping[str, np.ndarray]) -> None:
        self.cache = cache
        self.targets = dict(targets)  # sample → (n, t) targets of the fold: small, kept
        self.ids = tuple(self.targets)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> PreparedSample:  # type: ignore[override]
        sample_id = self.ids[index]
        return self.cache.prepared(sample_id, self.targets[sample_id])

    def __iter__(self) -> Iterator[PreparedSample]:
        return (self[i] for i in range(len(self)))
