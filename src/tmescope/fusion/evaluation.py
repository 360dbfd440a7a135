"""Cross-validation of the head and its baselines on the same folds, with the same targets.

For each fold, :func:`prepare_fold` fixes the targets from the fold's training samples only
(``target_spec.fit_targets``) and turns every sample into arrays: embeddings, neighbour-averaged
embeddings, its spot graph and its targets. :func:`cross_validate` then fits every model on the
training samples and scores it on the held-out ones: Pearson per gene (and per TME state) on
each test sample's spots, averaged over genes, then over folds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tmescope.errors import InvalidParameterError
from tmescope.fusion.cohort import SpotTable, standardise_by_spots
from tmescope.fusion.folds import Fold
from tmescope.fusion.genesets import GeneSet
from tmescope.fusion.graph import SpotGraph, build_knn_graph, build_visium_graph, neighbour_mean
from tmescope.fusion.metrics import interval_coverage, mean_pearson, pearson_per_gene
from tmescope.fusion.reference import ReferenceProfiles
from tmescope.fusion.target_spec import TargetKind, TargetSpec, check_genes, fit_targets

log = logging.getLogger(__name__)

MODEL_NAMES: tuple[str, ...] = ("gat", "mlp", "ridge", "ridge-cv", "smooth-ridge")
VISIUM_PITCH_UM = 100.0


@dataclass(frozen=True)
class PreparedSample:
    """One sample as the models see it in one fold."""

    sample_id: str
    x: np.ndarray  # (n, d) float32 embeddings, standardised by the sample's own spots
    x_smooth: np.ndarray  # (n, d) float32 mean over the spot and its graph neighbours
    graph: SpotGraph
    y: np.ndarray  # (n, t) float32 targets (TargetSpec.names)


@dataclass(frozen=True)
class FoldData:
    """A fold's target recipe and its samples: tuples in memory, or sequences that read each
    sample when it is asked for (:class:`~tmescope.fusion.spot_cache.CachedSamples`)."""

    fold: Fold
    spec: TargetSpec
    train: Sequence[PreparedSample]
    test: Sequence[PreparedSample]


@dataclass
class ModelScores:
    """A model's scores over the folds: expression genes and TME states apart."""

    expression: list[float] = field(default_factory=list)  # mean Pearson per fold
    states: list[float] = field(default_factory=list)
    per_target: dict[str, list[float]] = field(default_factory=dict)  # name → per-fold Pearson
    fit_seconds: list[float] = field(default_factory=list)
    coverage_90: list[float] = field(default_factory=list)  # ensembles only
    # Held-out predictions, per test sample: (n_spots, len(spec.names)) in the fold's targets.
    predictions: dict[str, np.ndarray] = field(default_factory=dict)

    def extend(self, other: ModelScores) -> None:
        """Append ``other``'s folds (scored after this one's) to these scores."""
        self.expression += other.expression
        self.states += other.states
        for name, values in other.per_target.items():
            self.per_target.setdefault(name, []).extend(values)
        self.fit_seconds += other.fit_seconds
        self.coverage_90 += other.coverage_90
        self.predictions.update(other.predictions)

    def to_state(self) -> dict[str, Any]:
        """Everything but the predictions, as plain JSON (a fold's checkpoint)."""
        return {
            "expression": self.expression, "states": self.states,
            "per_target": self.per_target, "fit_seconds": self.fit_seconds,
            "coverage_90": self.coverage_90,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: Mapping[str, Any], predictions: Mapping[str, np.ndarray]) -> ModelScores:
        return cls(
            expression=[float(v) for v in state["expression"]],
            states=[float(v) for v in state["states"]],
            per_target={k: [float(x) for x in v] for k, v in state["per_target"].items()},
            fit_seconds=[float(v) for v in state["fit_seconds"]],
            coverage_90=[float(v) for v in state["coverage_90"]],
            predictions=dict(predictions),
        )

    def to_json(self, spec_names: Sequence[str] = ()) -> dict[str, Any]:
        genes = {k: v for k, v in self.per_target.items() if not k.startswith("state:")}
        states = {k[6:]: v for k, v in self.per_target.items() if k.startswith("state:")}
        headline = self.expression or self.states
        out: dict[str, Any] = {
            "mean": _mean(headline),
            "folds": [round(v, 4) for v in headline],
            "per_gene": {k: _mean(v) for k, v in genes.items()},
            "fit_seconds": _mean(self.fit_seconds),
        }
        if self.expression and self.states:
            out["states"] = {
                "mean": _mean(self.states),
                "folds": [round(v, 4) for v in self.states],
                "per_state": {k: _mean(v) for k, v in states.items()},
            }
        elif self.states:
            out["per_state"] = {k: _mean(v) for k, v in states.items()}
        if self.coverage_90:
            out["coverage_90"] = _mean(self.coverage_90)
        return out


def spot_graph(coords_um: np.ndarray, *, platform: str) -> SpotGraph:
    """The spot graph of a sample: the hexagonal lattice for Visium, 6 nearest otherwise.

    A Visium sample whose spots do not sit on the 100 µm lattice (cropped or re-registered
    coordinates) falls back to nearest neighbours, so that no spot is left alone.
    """
    if platform == "visium" and len(coords_um) > 1:
        graph = build_visium_graph(coords_um, pitch_um=VISIUM_PITCH_UM)
        if np.median(graph.degree) >= 3:
            return graph
        log.warning("spots are not on a 100 µm Visium lattice: using 6 nearest neighbours")
    return build_knn_graph(coords_um, k=min(6, max(1, len(coords_um) - 1)))


def prepare_fold(
    tables: Mapping[str, SpotTable],
    fold: Fold,
    *,
    graphs: Mapping[str, SpotGraph],
    kind: TargetKind,
    n_genes: int,
    gene_sets: Sequence[GeneSet],
    reference: ReferenceProfiles | None,
) -> FoldData:
    """Fix the fold's targets on its training samples, then lay out every sample of the fold."""
    spec, train, test = prepare_samples(
        tables, fold.train, fold.test, graphs=graphs, kind=kind, n_genes=n_genes,
        gene_sets=gene_sets, reference=reference,
    )  # fmt: skip
    return FoldData(fold=fold, spec=spec, train=train, test=test)


def prepare_samples(
    tables: Mapping[str, SpotTable],
    train_ids: Sequence[str],
    test_ids: Sequence[str],
    *,
    graphs: Mapping[str, SpotGraph],
    kind: TargetKind,
    n_genes: int,
    gene_sets: Sequence[GeneSet],
    reference: ReferenceProfiles | None,
) -> tuple[TargetSpec, tuple[PreparedSample, ...], tuple[PreparedSample, ...]]:
    """Targets fixed on ``train_ids`` alone; every sample laid out with them."""
    spec = fit_targets(
        [tables[s] for s in train_ids], kind=kind, n_genes=n_genes, gene_sets=gene_sets,
        reference=reference,
    )  # fmt: skip
    check_genes([tables[s] for s in test_ids], spec)

    def prepared(sample_id: str) -> PreparedSample:
        table, graph = tables[sample_id], graphs[sample_id]
        (x,) = standardise_by_spots(table.embeddings)
        return PreparedSample(
            sample_id=sample_id,
            x=x,
            x_smooth=neighbour_mean(x, graph).astype(np.float32),
            graph=graph,
            y=spec.compute(table),
        )

    return spec, tuple(map(prepared, train_ids)), tuple(map(prepared, test_ids))


def cross_validate(
    folds: Sequence[FoldData],
    *,
    models: Sequence[str],
    n_members: int = 5,
    seed: int = 0,
    device: str = "cpu",
    head_config: Any = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, ModelScores]:
    """Fit each model on each fold's training samples; score it on the fold's test samples."""
    scores = {m: ModelScores() for m in check_models(models)}
    for data in folds:
        fold_scores = score_fold(
            data, models=models, n_members=n_members, seed=seed, device=device,
            head_config=head_config, progress=progress,
        )  # fmt: skip
        for name in models:
            scores[name].extend(fold_scores[name])
    return scores


def check_models(models: Sequence[str]) -> list[str]:
    """``models`` if every name is known; a named error otherwise."""
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        raise InvalidParameterError(
            f"unknown model {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)} or all"
        )
    return list(models)


def score_fold(
    data: FoldData,
    *,
    models: Sequence[str],
    n_members: int = 5,
    seed: int = 0,
    device: str = "cpu",
    head_config: Any = None,
    progress: Callable[[str], None] | None = None,
    spill: Path | None = None,
) -> dict[str, ModelScores]:
    """One fold of :func:`cross_validate`: each model's scores on the fold's test samples
    (``spill``: a scratch folder for the head's training pieces, see :func:`fit_gat`)."""
    scores = {m: ModelScores() for m in check_models(models)}
    for name in models:
        start = time.perf_counter()
        predictions, stds = _fit_predict(
            name, data, n_members=n_members, seed=seed, device=device, config=head_config,
            spill=spill,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        _score(scores[name], data, predictions, stds, elapsed)
        if progress is not None:
            latest = (scores[name].expression or scores[name].states)[-1]
            progress(f"{data.fold.name}: {name} mean Pearson {latest:.3f} ({elapsed:.1f} s)")
    return scores


def _fit_predict(
    name: str,
    data: FoldData,
    *,
    n_members: int,
    seed: int,
    device: str,
    config: Any,
    spill: Path | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Predictions for each test sample of the fold (and the ensemble's std for ``gat``)."""
    if name == "gat":
        ensemble = fit_gat(
            data.train, n_members=n_members, seed=seed, device=device, config=config, spill=spill
        )
        outputs = [ensemble.predict(as_graph_sample(s)) for s in data.test]
        return [o.mean for o in outputs], [o.std for o in outputs]
    from tmescope.fusion.baselines import HestRidgeProbe, SpotMLP, TunedRidgeProbe

    smooth = name == "smooth-ridge"
    x = np.concatenate([s.x_smooth if smooth else s.x for s in data.train])
    y = np.concatenate([s.y for s in data.train])
    groups = np.concatenate([np.full(len(s.y), s.sample_id) for s in data.train])
    model: Any
    if name == "ridge":
        model = HestRidgeProbe()
    elif name == "mlp":
        model = SpotMLP(seed=seed)
    else:
        model = TunedRidgeProbe()
    # The MLP stops early on held-out spots of the training samples, as the head does.
    model.fit(x, y, groups=None if name == "mlp" else groups)
    return [model.predict(s.x_smooth if smooth else s.x) for s in data.test], None


def fit_gat(
    train: Sequence[PreparedSample],
    *,
    n_members: int,
    seed: int,
    device: str,
    config: Any = None,
    metadata: Mapping[str, Any] | None = None,
    spill: Path | None = None,
) -> Any:
    """An ensemble of heads fitted on every training sample, early-stopped on held-out spots.

    A tenth of each training sample's spots leave the loss and decide when to stop (and how
    wide the predictive interval is); the test samples of the fold take no part. Samples are
    read one at a time; with ``spill`` (a scratch folder) the training pieces wait there between
    steps instead of in memory (:func:`~tmescope.fusion.train.fit_ensemble`).
    """
    from tmescope.fusion.train import fit_ensemble

    return fit_ensemble(
        _GraphSamples(train), [], n_members=n_members, config=config, seed=seed,
        device=device, metadata=metadata, spill=spill,
    )  # fmt: skip


class _GraphSamples(Sequence[Any]):
    """Prepared samples as training :class:`~tmescope.fusion.train.GraphSample` objects, made
    when asked for: samples read lazily from disk stay unread until the trainer reaches them."""

    def __init__(self, samples: Sequence[PreparedSample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        return as_graph_sample(self.samples[index], with_targets=True)


def as_graph_sample(sample: PreparedSample, *, with_targets: bool = False) -> Any:
    """A :class:`~tmescope.fusion.train.GraphSample` of a prepared sample."""
    from tmescope.fusion.train import GraphSample

    return GraphSample(
        sample_id=sample.sample_id,
        x=sample.x,
        edge_index=sample.graph.edge_index,
        y=sample.y if with_targets else None,
    )


def _score(
    scores: ModelScores,
    data: FoldData,
    predictions: Sequence[np.ndarray],
    stds: Sequence[np.ndarray] | None,
    seconds: float,
) -> None:
    """Pearson per target on the fold's test spots (pooled over its test samples)."""
    truth = np.concatenate([s.y for s in data.test])
    predicted = np.concatenate(predictions)
    per_target = pearson_per_gene(truth, predicted)
    g = data.spec.n_genes
    if g:
        scores.expression.append(mean_pearson(per_target[:g]))
    if len(data.spec.state_names):
        scores.states.append(mean_pearson(per_target[g:]))
    for name, value in zip(data.spec.names, per_target, strict=True):
        scores.per_target.setdefault(name, []).append(float(value))
    scores.fit_seconds.append(seconds)
    for sample, predicted_sample in zip(data.test, predictions, strict=True):
        scores.predictions[sample.sample_id] = predicted_sample
    if stds is not None:
        scores.coverage_90.append(interval_coverage(truth, predicted, np.concatenate(stds)))


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return round(float(np.mean(finite)), 4) if finite else float("nan")
