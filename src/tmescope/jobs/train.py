"""Train from a store (twin of ``tmescope train``): cross-validate the head against its
baselines on the same folds, then fit the final head on every sample and save it.

Joins the rooms: reads the store, hands arrays to ``fusion`` and writes the model directory.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmescope.cpus import ensure_threads
from tmescope.errors import InvalidParameterError, TrainingDataError

log = logging.getLogger(__name__)

MODEL_CHOICES = ("gat", "mlp", "ridge", "ridge-cv", "smooth-ridge")
TARGET_CHOICES = ("expression", "states", "both")
LEAVE_SAMPLE_OUT = "leave-sample-out"
DEFAULT_LABEL_KEY = "cell_type"  # the cell-type column of a reference when --label-key is not given


@dataclass(frozen=True)
class TrainSettings:
    """What ``tmescope train`` was asked for (validated on creation)."""

    target: str = "both"
    n_genes: int = 50
    models: tuple[str, ...] = MODEL_CHOICES
    folds: str = LEAVE_SAMPLE_OUT  # or a CSV/JSON file of folds
    groups: Path | None = None  # CSV sample_id → group (patient)
    group_key: str | None = None
    reference: Path | None = None  # single-cell .h5ad for cell-type proportions
    label_key: str | None = None  # its cell-type column; None: "cell_type"
    gene_sets: Path | None = None  # TOML/JSON; the default TME sets otherwise
    n_members: int = 5
    seed: int = 0
    device: str = "auto"
    holdout: tuple[str, ...] = ()  # samples kept out of training altogether
    # Also fit the sub-spot model on bins of this size; its populations are the reference's
    # cell types, or without a reference the population sets of the gene sets.
    resolution_um: float | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGET_CHOICES:
            raise InvalidParameterError(
                f"--target must be one of {', '.join(TARGET_CHOICES)}, got {self.target!r}"
            )
        unknown = [m for m in self.models if m not in MODEL_CHOICES]
        if unknown or not self.models:
            raise InvalidParameterError(
                f"--model must be one of {', '.join(MODEL_CHOICES)} or all, got "
                f"{', '.join(unknown) or 'none'}"
            )
        for name in ("n_genes", "n_members"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = "--genes" if name == "n_genes" else "--members"
                raise InvalidParameterError(f"{flag} must be a positive integer, got {value!r}")
        if self.label_key is not None and self.reference is None:
            raise InvalidParameterError(
                f"--label-key {self.label_key} names a column of a reference: give --reference "
                "SC.h5ad too"
            )
        if self.resolution_um is not None and not (
            math.isfinite(self.resolution_um) and self.resolution_um > 0
        ):
            raise InvalidParameterError(
                f"--resolution must be a bin size in µm (e.g. 16), got {self.resolution_um}"
            )
        if self.group_key is not None and self.groups is None:
            raise InvalidParameterError(
                f"--group-key {self.group_key} needs --groups FILE.csv (columns sample_id and "
                f"{self.group_key}) to know which patient each sample comes from"
            )


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    report: dict[str, Any]  # JSON: models → {mean, folds, per_gene, …}, folds, genes, …


def parse_models(value: str) -> tuple[str, ...]:
    """``"all"`` or a comma-separated list of model names."""
    names = MODEL_CHOICES if value == "all" else tuple(v.strip() for v in value.split(","))
    return tuple(dict.fromkeys(n for n in names if n))


def train_model(
    store: Path | str,
    out: Path | str,
    *,
    settings: TrainSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Cross-validate the chosen models on ``store`` and save the final head to ``out``."""
    ensure_threads()  # before fusion loads torch: its OpenMP reads the wait policy once
    from tmescope.fusion.cohort import read_spot_table
    from tmescope.fusion.evaluation import (
        cross_validate,
        fit_gat,
        prepare_fold,
        prepare_samples,
        spot_graph,
    )
    from tmescope.fusion.model_dir import check_destination, save_model
    from tmescope.fusion.subspot_model import SUBSPOT_DIR
    from tmescope.store import CohortStore

    settings = settings or TrainSettings()
    say = progress or (lambda message: None)
    out = Path(out)
    check_destination(out)
    opened = CohortStore.open(store, mode="r")
    sample_ids = _training_samples(opened, settings.holdout)
    folds = _folds(settings, sample_ids)
    gene_sets, reference = _state_sources(settings)
    subspot_reference: Any = None
    if settings.resolution_um is not None:
        # With --target expression the states take no reference, but the sub-spot model does.
        subspot_reference = reference or (_load_reference(settings) if settings.reference else None)
        _check_subspot_inputs(opened, sample_ids, settings.resolution_um, subspot_reference)
    device = device_name(settings.device)
    start = time.perf_counter()
    tables = {s: read_spot_table(opened, s) for s in sample_ids}
    if settings.resolution_um is not None and subspot_reference is None:
        subspot_reference = _marker_reference(settings, [t.genes for t in tables.values()])
    gene_sets = scorable_sets(gene_sets, [t.genes for t in tables.values()])
    graphs = {
        s: spot_graph(t.coords_um, platform=sample_platform(opened, s)) for s, t in tables.items()
    }
    say(f"read {sum(t.n for t in tables.values()):,} spots of {len(tables)} samples")
    prepared = [
        prepare_fold(
            tables, fold, graphs=graphs, kind=settings.target,  # type: ignore[arg-type]
            n_genes=settings.n_genes, gene_sets=gene_sets, reference=reference,
        )
        for fold in folds
    ]  # fmt: skip
    say(f"{len(folds)} folds; models {', '.join(settings.models)}")
    scores = cross_validate(
        prepared, models=settings.models, n_members=settings.n_members, seed=settings.seed,
        device=device, progress=say,
    )  # fmt: skip
    # The saved model is always the head, whatever --model compared: it learns from every
    # sample, with targets fixed on all of them and early stopping on held-out spots as in
    # each fold; its figures are the cross-validated ones above.
    say(f"fitting the final head ({settings.n_members} members) on all {len(tables)} samples")
    spec, everything, _ = prepare_samples(
        tables, sample_ids, (), graphs=graphs, kind=settings.target,  # type: ignore[arg-type]
        n_genes=settings.n_genes, gene_sets=gene_sets, reference=reference,
    )  # fmt: skip
    ensemble = fit_gat(everything, n_members=settings.n_members, seed=settings.seed, device=device)
    parts = {}
    if settings.resolution_um is not None:
        subspot = _fit_subspot(opened, sample_ids, settings, subspot_reference, say)
        parts[SUBSPOT_DIR] = subspot.save
    report = {
        "store": str(opened.path),
        "target": settings.target,
        "n_samples": len(tables),
        "n_spots": sum(t.n for t in tables.values()),
        "folds": [{"name": f.name, "train": list(f.train), "test": list(f.test)} for f in folds],
        "models": {name: s.to_json() for name, s in scores.items()},
        "genes": list(spec.genes),
        "states": list(spec.state_names),
        "seconds": round(time.perf_counter() - start, 1),
    }
    save_model(
        out, ensemble=ensemble, spec=spec, fingerprint=opened.fingerprint,
        info={
            "samples": sample_ids,
            "graph": {"visium_pitch_um": 100.0, "grid_neighbours": 6},
            "n_members": settings.n_members,
            "seed": settings.seed,
            "cv": report,
            "holdout": list(settings.holdout),
            "resolution_um": settings.resolution_um,
        },
        parts=parts,
    )  # fmt: skip
    say(f"model written to {out}")
    return TrainResult(out, report)


def _training_samples(store: Any, holdout: Sequence[str]) -> list[str]:
    """The store's complete samples with measured expression, less the held-out ones (each of
    which must be in the store); H&E-only slides have nothing to train on and are skipped."""
    sample_ids = store.sample_ids()
    unknown = [s for s in holdout if s not in sample_ids]
    if unknown:
        raise TrainingDataError(
            f"--holdout {', '.join(unknown)}: no such complete sample in the store (it holds "
            f"{', '.join(sample_ids[:8])}{', …' if len(sample_ids) > 8 else ''})"
        )
    without = [s for s in sample_ids if not store.sample_record(s).has_counts]
    if without:
        log.info("not trained on (no measured expression): %s", ", ".join(without))
    return [s for s in sample_ids if s not in set(holdout) and s not in set(without)]


def _check_subspot_inputs(
    store: Any, sample_ids: Sequence[str], resolution_um: float, reference: Any
) -> None:
    """Before any fitting: every training sample has bins of that size, and the reference (when
    one is given) can give shares of cells."""
    from tmescope.fusion.subspot_data import check_reference, check_resolution

    if reference is not None:
        check_reference(reference)
    for sample_id in sample_ids:
        check_resolution(store, sample_id, resolution_um)


def _fit_subspot(
    store: Any,
    sample_ids: Sequence[str],
    settings: TrainSettings,
    reference: Any,
    say: Callable[[str], None],
) -> Any:
    """The sub-spot model, fitted on the training samples' bins (never a held-out sample's)."""
    from tmescope.fusion.bin_head import BinHeadConfig
    from tmescope.fusion.subspot_data import read_bin_sample
    from tmescope.fusion.subspot_model import fit_subspot_model

    assert settings.resolution_um is not None
    samples = [
        read_bin_sample(store, s, reference=reference, bin_um=settings.resolution_um)
        for s in sample_ids
    ]
    n_bins = sum(len(s.xy) for s in samples)
    say(f"fitting the sub-spot model on {n_bins:,} bins of {len(samples)} samples")
    config = BinHeadConfig(n_members=min(settings.n_members, 3))
    return fit_subspot_model(samples, reference=reference, config=config, seed=settings.seed)


def _marker_reference(settings: TrainSettings, panels: Sequence[Sequence[str]]) -> Any:
    """The sub-spot populations without a reference: the population gene sets of --gene-sets
    (or the default sets) on the markers every training sample measures."""
    from tmescope.fusion.genesets import load_gene_sets
    from tmescope.fusion.marker_reference import marker_reference

    return marker_reference(load_gene_sets(settings.gene_sets), panels)


def _folds(settings: TrainSettings, sample_ids: Sequence[str]) -> list[Any]:
    from tmescope.fusion.folds import (
        leave_one_group_out,
        leave_one_sample_out,
        read_folds,
        read_sample_groups,
    )

    if len(sample_ids) < 2:
        raise TrainingDataError(
            f"cross-validation needs at least 2 complete samples; the store holds "
            f"{len(sample_ids)}: embed more samples into it"
        )
    if settings.folds != LEAVE_SAMPLE_OUT:
        return read_folds(Path(settings.folds), sample_ids)
    if settings.groups is None:
        return leave_one_sample_out(sample_ids)
    groups = read_sample_groups(settings.groups, group_key=settings.group_key)
    missing = [s for s in sample_ids if s not in groups]
    if missing:
        raise TrainingDataError(
            f"{settings.groups} gives no group for {', '.join(missing[:5])}; add a row for "
            "every sample of the store"
        )
    return leave_one_group_out({s: groups[s] for s in sample_ids})


def _state_sources(settings: TrainSettings) -> tuple[tuple[Any, ...], Any]:
    from tmescope.fusion.genesets import load_gene_sets

    if settings.target == "expression":
        return (), None
    if settings.reference is not None:
        return (), _load_reference(settings)
    return load_gene_sets(settings.gene_sets), None


def _load_reference(settings: TrainSettings) -> Any:
    from tmescope.fusion.reference import load_reference

    assert settings.reference is not None
    # With --resolution, a type with too few cells is an error (check_reference), not dropped:
    # sub-spot maps must show every population the user asked for.
    return load_reference(
        settings.reference,
        label_key=settings.label_key or DEFAULT_LABEL_KEY,
        min_cells=1 if settings.resolution_um is not None else 10,
    )


def scorable_sets(gene_sets: Sequence[Any], panels: Sequence[Sequence[str]]) -> tuple[Any, ...]:
    """The gene sets with at least 2 genes measured in every sample; one warning for the rest.

    Deciding this once for the cohort (rather than in every fold) keeps the TME states the same
    across folds and the warning to one line.
    """
    import warnings

    from tmescope.errors import GeneSetError, TmescopeWarning

    if not gene_sets:
        return ()
    shared = set.intersection(*({g.upper() for g in panel} for panel in panels))
    kept = tuple(s for s in gene_sets if sum(g.upper() in shared for g in s.genes) >= 2)
    dropped = [s.name for s in gene_sets if s not in kept]
    if not kept:
        raise GeneSetError(
            "no gene set has 2 genes measured in every sample; are genes named by symbol? "
            "pass --gene-sets with sets that fit this panel"
        )
    if dropped:
        warnings.warn(
            f"TME states {', '.join(dropped)} left out: fewer than 2 of their genes are measured "
            "in every sample",
            TmescopeWarning,
            stacklevel=2,
        )
    return kept


def sample_platform(store: Any, sample_id: str) -> str:
    """The platform a stored sample came from (``visium``, ``visium-hd``)."""
    return str(dict(store.sample_record(sample_id).meta.extra).get("platform", "visium"))


def device_name(device: str) -> str:
    """``auto``/``cpu``/``cuda[:i]`` resolved to what torch will use (``auto``: CUDA if present)."""
    from tmescope.embed.pipeline import resolve_device

    return str(resolve_device(device))
