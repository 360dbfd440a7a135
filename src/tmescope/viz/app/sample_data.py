"""What the viewer's API reads: a store's rows, measured values, predictions and similar regions.

Everything is read lazily: a sample's rows on its first request, and kept; its measured
expression and its :class:`~tmescope.fusion.prediction.SamplePrediction` (when a model was
given) on the first request that needs them, kept for the latest few samples only (a
:class:`~tmescope.viz.app.kept.Kept`: two concurrent first requests compute once).
Rows are always in the store's order (spots and tiles as stored), so every per-row array the API
returns lines up with :meth:`CohortData.rows`.

Running a model and computing its targets join rooms, which is the job layer's work: the app is
handed a :class:`ModelSource` and a reader of measured values (``tmescope.jobs.serve`` builds
both) and never runs ``fusion`` itself.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import scipy.sparse as sp

from tmescope.errors import (
    InvalidParameterError,
    SampleNotFoundError,
    SpotNotFoundError,
    StoreError,
)
from tmescope.store import CohortStore
from tmescope.store.schema import row_kind_names
from tmescope.viz.app.kept import Kept

if TYPE_CHECKING:
    from tmescope.fusion.prediction import SamplePrediction
    from tmescope.store.index import CohortIndex, SearchResult, VectorSpace

Layer = Literal["measured", "predicted", "std"]
LAYERS: tuple[Layer, ...] = ("measured", "predicted", "std")
SPACES = ("raw", "fused")  # where similar regions are searched
MAX_K = 50
MEASURED_KEPT = 4  # samples whose measured tables stay in memory
PREDICTIONS_KEPT = 8  # samples whose predictions stay in memory (a few MB each; seconds to make)


class PredictionsUnavailableError(StoreError):
    """Predictions were asked of a viewer started without a model."""


class FeatureNotFoundError(StoreError, LookupError):
    """A gene or TME state the sample cannot be coloured by in the layer asked for."""


@dataclass(frozen=True)
class SampleRows:
    """A sample's rows in store order: names, kinds and full-resolution positions."""

    names: np.ndarray  # (n,) str: barcodes, then tile_<i>
    kinds: np.ndarray  # (n,) str: "spot", "tile" or "cover"
    coords: np.ndarray  # (n, 2) float32 (x, y)

    def row_of(self, sample_id: str, name: str) -> int:
        hits = np.flatnonzero(self.names == name)
        if hits.size == 0:
            raise SpotNotFoundError(f"no spot or tile {name!r} in sample {sample_id!r}")
        return int(hits[0])


@dataclass(frozen=True)
class Edge:
    """One attention edge into a spot: the neighbour it attended to and the weight."""

    barcode: str
    kind: str
    x: float
    y: float
    weight: float


@dataclass(frozen=True)
class FeatureValues:
    """One feature at one row in each layer (NaN where the layer has none)."""

    feature: str
    measured: float
    predicted: float
    std: float


@dataclass(frozen=True)
class MeasuredTable:
    """Measured values of one sample's spots: one column per feature, one row per spot.

    ``table`` is dense for a model's few targets and sparse (CSC) for every gene of the counts,
    which would not fit in memory densely for a large sample. Empty for a sample without counts.
    """

    features: tuple[str, ...]
    table: np.ndarray | sp.csc_matrix  # (n_spots, features)
    spot_rows: np.ndarray  # (n_spots,) the store row of each table row

    @classmethod
    def empty(cls) -> MeasuredTable:
        return cls((), np.empty((0, 0), dtype=np.float32), np.empty(0, dtype=np.int64))


class ModelSource(Protocol):
    """A trained model as the viewer sees it, served by the job layer."""

    @property
    def model_id(self) -> str: ...

    @property
    def genes(self) -> tuple[str, ...]: ...

    @property
    def state_names(self) -> tuple[str, ...]: ...

    def predict(self, sample_id: str) -> SamplePrediction:
        """The model's prediction for every spot (and tile) of a stored sample."""
        ...

    def measured(self, sample_id: str) -> MeasuredTable:
        """The sample's measured values of the model's targets (genes, then states)."""
        ...


@dataclass(frozen=True)
class _Measured:
    """A :class:`MeasuredTable` placed among the sample's ``n_rows`` store rows."""

    features: tuple[str, ...]
    table: np.ndarray | sp.csc_matrix  # (n_spots, features)
    spot_rows: np.ndarray  # (n_spots,)
    n_rows: int

    def column(self, sample_id: str, feature: str) -> np.ndarray:
        """``(n_rows,)`` float32, NaN for tiles."""
        j = _column(self.features, feature, sample_id)
        table = self.table
        column = table[:, j] if isinstance(table, np.ndarray) else table[:, [j]].toarray().ravel()
        out = np.full(self.n_rows, np.nan, dtype=np.float32)
        out[self.spot_rows] = column
        return out

    def at(self, row: int) -> dict[str, float]:
        """Every feature at one store row (empty for a tile: it has no counts)."""
        position = int(np.searchsorted(self.spot_rows, row))
        if position >= self.spot_rows.size or self.spot_rows[position] != row:
            return {}
        table = self.table
        if isinstance(table, np.ndarray):
            dense = table[position]
        else:
            dense = table[[position]].toarray().ravel()
        return dict(zip(self.features, dense.astype(float).tolist(), strict=True))


class CohortData:
    """A read-only store (and, optionally, a model fitted to it) as the viewer sees it."""

    def __init__(
        self,
        store: CohortStore,
        *,
        measured: Callable[[str], MeasuredTable],
        model: ModelSource | None = None,
    ) -> None:
        """``measured(sample_id)`` reads a sample's measured expression (every gene) for a viewer
        without a model; with one, ``model`` predicts and gives its own measured targets."""
        self.store = store
        self.model = model
        self._read_expression = measured
        self._sample_ids = tuple(store.sample_ids())
        self._known = frozenset(self._sample_ids)
        self._rows: dict[str, SampleRows] = {}
        # Without a model a measured table holds every gene: keep only the latest few samples.
        self._measured: Kept[str, _Measured] = Kept(MEASURED_KEPT)
        self._gene_names: dict[str, tuple[str, ...]] = {}
        self._predictions: Kept[str, tuple[SamplePrediction, np.ndarray]] = Kept(PREDICTIONS_KEPT)
        self._indexes: dict[str, CohortIndex] = {}  # "raw" and "fused", loaded when first asked
        self._index_lock = threading.Lock()

    @property
    def sample_ids(self) -> tuple[str, ...]:
        """The complete samples when the viewer started (the only ids any request may name)."""
        return self._sample_ids

    @property
    def has_predictions(self) -> bool:
        return self.model is not None

    def check_sample(self, sample_id: str) -> str:
        """``sample_id`` if the store holds it, else a :class:`SampleNotFoundError`."""
        if sample_id not in self._known:
            raise SampleNotFoundError(
                f"no sample {sample_id!r} in this store; it holds {', '.join(self._sample_ids)}"
            )
        return sample_id

    def genes(self, sample_id: str) -> tuple[str, ...]:
        """The genes a sample can be coloured by: the model's, else every measured gene."""
        if self.model is not None:
            return tuple(self.model.genes)
        if sample_id not in self._gene_names:
            self._gene_names[sample_id] = self._measured_of(sample_id).features
        return self._gene_names[sample_id]

    def state_names(self) -> tuple[str, ...]:
        return tuple(self.model.state_names) if self.model is not None else ()

    def rows(self, sample_id: str) -> SampleRows:
        self.check_sample(sample_id)
        rows = self._rows.get(sample_id)
        if rows is None:
            kinds = row_kind_names(self.store.read_kind(sample_id))
            rows = SampleRows(
                names=self.store.read_barcodes(sample_id),
                kinds=kinds.astype(str),
                coords=np.asarray(self.store.read_coords(sample_id), dtype=np.float32),
            )
            self._rows[sample_id] = rows
        return rows

    def values(self, sample_id: str, *, layer: str, feature: str) -> np.ndarray:
        """``(n_rows,)`` float32 of one gene or TME state in one layer; NaN where undefined."""
        self.check_sample(sample_id)
        if layer not in LAYERS:
            raise InvalidParameterError(f"layer must be one of {', '.join(LAYERS)}, got {layer!r}")
        if layer == "measured":
            return self._measured_of(sample_id).column(sample_id, feature)
        prediction, order = self.prediction(sample_id)
        genes, states = prediction.genes, prediction.state_names
        if feature in genes:
            table = prediction.expression if layer == "predicted" else prediction.expression_std
            column = genes.index(feature)
        else:
            table = prediction.states if layer == "predicted" else prediction.states_std
            column = _column(states, feature, sample_id)
        out = np.full(order.size, np.nan, dtype=np.float32)
        known = order >= 0
        out[known] = table[order[known], column]
        return out

    def values_at(self, sample_id: str, name: str) -> list[FeatureValues]:
        """Every feature's values at one spot or tile (states first, then genes)."""
        row = self.rows(sample_id).row_of(sample_id, name)
        measured = self._measured_of(sample_id).at(row)
        predicted: dict[str, tuple[float, float]] = {}
        if self.model is not None:
            prediction, order = self.prediction(sample_id)
            node = int(order[row])
            if node >= 0:
                for names, mean, std in (
                    (prediction.genes, prediction.expression, prediction.expression_std),
                    (prediction.state_names, prediction.states, prediction.states_std),
                ):
                    for j, feature in enumerate(names):
                        predicted[feature] = (float(mean[node, j]), float(std[node, j]))
        return [
            FeatureValues(
                feature, measured.get(feature, math.nan), *predicted.get(feature, (math.nan,) * 2)
            )
            for feature in (*self.state_names(), *self.genes(sample_id))
        ]

    def attention(self, sample_id: str, name: str) -> list[Edge]:
        """The edges into a spot or tile in the model's last attention layer, heaviest first."""
        rows = self.rows(sample_id)
        row = rows.row_of(sample_id, name)
        prediction, order = self.prediction(sample_id)
        node = int(order[row])
        if node < 0 or not prediction.attention:
            return []
        edge_index, weight = prediction.attention[-1]
        into = np.flatnonzero(edge_index[1] == node)
        into = into[np.argsort(-weight[into], kind="stable")]
        return [
            Edge(
                barcode=str(prediction.names[source]),
                kind=str(prediction.kinds[source]),
                x=float(prediction.coords_px[source, 0]),
                y=float(prediction.coords_px[source, 1]),
                weight=float(weight[e]),
            )
            for e, source in zip(into.tolist(), edge_index[0, into].tolist(), strict=True)
        ]

    def similar(
        self, sample_id: str, name: str, *, k: int, space: str = "raw"
    ) -> list[SearchResult]:
        """The ``k`` regions of the cohort most like a spot or tile, itself left out.

        ``space="raw"`` compares the encoder's embeddings (patches that look alike);
        ``"fused"`` the model's fused embeddings (alike in image and surroundings), through the
        index ``tmescope index STORE --space fused --model MODEL_DIR`` built.
        """
        if isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise InvalidParameterError(f"k must be 1 to {MAX_K}, got {k!r}")
        if space not in SPACES:
            raise InvalidParameterError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
        row = self.rows(sample_id).row_of(sample_id, name)
        vector = self._query_vector(sample_id, name, row, space)
        index = self._loaded_index(space)
        k_fetch = min(k + 1, index.n)
        with self._index_lock:
            hits = index.search(vector[None, :], k=k_fetch)[0]
        others = [h for h in hits if (h.sample_id, h.barcode) != (sample_id, name)][:k]
        return [replace(h, rank=i) for i, h in enumerate(others, start=1)]

    def _query_vector(self, sample_id: str, name: str, row: int, space: str) -> np.ndarray:
        from tmescope.store.search import spot_vector

        if space == "raw":
            return spot_vector(self.store, sample_id, name)
        from tmescope.store.fused import read_fused_sample

        data = read_fused_sample(self.store, self._fused_space().model_id or "", sample_id)
        position = np.flatnonzero(data.rows == row)
        if position.size == 0:
            raise SpotNotFoundError(f"{name!r} of {sample_id!r} has no fused embedding")
        return np.asarray(data.fused[int(position[0])], dtype=np.float32)

    def _fused_space(self) -> VectorSpace:
        from tmescope.store.index import VectorSpace

        if self.model is None:
            raise PredictionsUnavailableError(
                "no fused space: the viewer was started without a model; start it with "
                "`tmescope serve STORE --model MODEL_DIR`"
            )
        return VectorSpace(self.model.model_id)

    def prediction(self, sample_id: str) -> tuple[SamplePrediction, np.ndarray]:
        """The sample's prediction and, per store row, its row in the prediction (-1: none)."""
        self.check_sample(sample_id)
        if self.model is None:
            raise PredictionsUnavailableError(
                "no predictions: the viewer was started without a model; start it with "
                "`tmescope serve STORE --model MODEL_DIR`"
            )
        model = self.model

        def make() -> tuple[SamplePrediction, np.ndarray]:
            prediction = model.predict(sample_id)
            order = np.full(self.store.sample_record(sample_id).n, -1, dtype=np.int64)
            order[prediction.store_rows] = np.arange(prediction.n)
            return prediction, order

        return self._predictions.get(sample_id, make)

    def _measured_of(self, sample_id: str) -> _Measured:
        self.check_sample(sample_id)
        return self._measured.get(sample_id, lambda: self._read_measured(sample_id))

    def _read_measured(self, sample_id: str) -> _Measured:
        """With a model, its own targets (genes, then states) computed as in training; without,
        every gene as the reader handed in gives it."""
        n_rows = self.rows(sample_id).names.size
        if not self.store.sample_record(sample_id).has_counts:
            table = MeasuredTable.empty()
        elif self.model is not None:
            table = self.model.measured(sample_id)
        else:
            table = self._read_expression(sample_id)
        return _Measured(table.features, table.table, table.spot_rows, n_rows)

    def _loaded_index(self, space: str = "raw") -> CohortIndex:
        """The store's index of ``space``, reloaded when it has been rebuilt since."""
        from tmescope.store.index import RAW, load_index, read_index_info

        vectors = RAW if space == "raw" else self._fused_space()
        info = read_index_info(self.store, vectors)
        generation = info.generation if info is not None else None
        with self._index_lock:
            cached = self._indexes.get(space)
            if cached is None or generation != cached.info.generation:
                cached = load_index(self.store, warn_stale=False, space=vectors)
                self._indexes[space] = cached
            return cached


def _column(features: tuple[str, ...], feature: str, sample_id: str) -> int:
    if feature not in features:
        shown = ", ".join(features[:8]) + (" …" if len(features) > 8 else "")
        raise FeatureNotFoundError(
            f"no feature {feature!r} for sample {sample_id!r}; it has {shown or 'none'}"
        )
    return features.index(feature)
