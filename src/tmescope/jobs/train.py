"""Train from a store (twin of ``tmescope train``): cross-validate the head against its
baselines on the same folds, then fit the final head on every sample and save it.

Joins the rooms: reads the store, hands arrays to ``fusion`` and writes the model directory.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmescope.cpus import ensure_threads
from tmescope.errors import InvalidParameterError, TmescopeWarning, TrainingDataError
from tmescope.progress import Eta

log = logging.getLogger(__name__)

MODEL_CHOICES = ("gat", "mlp", "ridge", "ridge-cv", "smooth-ridge")
TARGET_CHOICES = ("expression", "states", "both")
AUTO_FOLDS = "auto"
LEAVE_SAMPLE_OUT = "leave-sample-out"
LEAVE_GROUP_OUT = "leave-group-out"
DEFAULT_FOLDS = 5  # group folds of "auto": leave-one-group-out up to this many groups
DEFAULT_GROUP_KEY = "patient"  # the stored metadata column that groups samples when present
CV_MEMBERS_AT_SCALE = 3  # ensemble members per fold once folds hold several groups each
DEFAULT_LABEL_KEY = "cell_type"  # the cell-type column of a reference when --label-key is not given


@dataclass(frozen=True)
class TrainSettings:
    """What ``tmescope train`` was asked for (validated on creation)."""

    target: str = "both"
    n_genes: int = 50
    models: tuple[str, ...] = MODEL_CHOICES
    # "auto" (k group folds, leave-one-group-out with few groups), a number of group folds,
    # leave-sample-out, leave-group-out, or a CSV/JSON file of folds
    folds: str = AUTO_FOLDS
    groups: Path | None = None  # CSV sample_id → group (patient); default: stored metadata
    group_key: str | None = None  # the group column (of --groups, or of the stored metadata)
    cv_members: int | None = None  # ensemble members per fold; None: as CV_MEMBERS_AT_SCALE says
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
        flags = {"n_genes": "--genes", "n_members": "--members", "cv_members": "--cv-members"}
        for name, flag in flags.items():
            value = getattr(self, name)
            if name == "cv_members" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
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
        if self.folds.isdigit() and int(self.folds) < 2:
            raise InvalidParameterError(
                f"--folds {self.folds}: cross-validation needs at least 2 folds"
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
    """Cross-validate the chosen models on ``store`` and save the final head to ``out``.

    Memory is bounded by a sample: each sample's spots are read from the store once into the
    work folder (:mod:`tmescope.jobs.train_work`) and every later step reads them back one at a
    time. A training killed and started again with the same inputs resumes from that folder.
    """
    ensure_threads()  # before fusion loads torch: its OpenMP reads the wait policy once
    from tmescope.fusion.evaluation import FoldData, ModelScores, fit_gat, score_fold
    from tmescope.fusion.model_dir import check_destination, save_model
    from tmescope.fusion.subspot_model import SUBSPOT_DIR
    from tmescope.jobs.train_work import open_work
    from tmescope.store import CohortStore

    settings = settings or TrainSettings()
    say = progress or (lambda message: None)
    out = Path(out)
    check_destination(out)
    opened = CohortStore.open(store, mode="r")
    sample_ids = _training_samples(opened, settings.holdout)
    groups = sample_groups(opened, sample_ids, settings)
    folds = _folds(settings, sample_ids, groups)
    cv_members = settings.cv_members or (
        min(settings.n_members, CV_MEMBERS_AT_SCALE)
        if len({groups[s] for s in sample_ids}) > len(folds)
        else settings.n_members
    )
    gene_sets, reference = _state_sources(settings)
    subspot_reference: Any = None
    if settings.resolution_um is not None:
        # With --target expression the states take no reference, but the sub-spot model does.
        subspot_reference = reference or (_load_reference(settings) if settings.reference else None)
        _check_subspot_inputs(opened, sample_ids, settings.resolution_um, subspot_reference)
    device = device_name(settings.device)
    start = time.perf_counter()
    with open_work(out, _work_key(opened, sample_ids, settings)) as work:
        cache = _read_spots(opened, sample_ids, work.spots, say)
        panels = [cache.genes(s) for s in sample_ids]
        if settings.resolution_um is not None and subspot_reference is None:
            subspot_reference = _marker_reference(settings, panels)
        gene_sets = scorable_sets(gene_sets, panels)
        n_spots = sum(cache.moments(s).n_spots for s in sample_ids)
        say(
            f"cross-validation: {describe_folds(folds, groups, settings)}; models "
            f"{', '.join(settings.models)}; {cv_members} heads per fold ({settings.n_members} "
            "in the final head)"
        )
        recipe = _Recipe(settings.target, settings.n_genes, gene_sets, reference)
        scores = {m: ModelScores() for m in settings.models}
        fold_eta = Eta(len(folds))
        for i, fold in enumerate(folds):
            if work.has_fold(i):
                done = work.load_fold(i, settings.models)
            else:
                spec, train, test = fold_samples(
                    cache, fold.train, fold.test, recipe, say, name=fold.name
                )
                data = FoldData(fold=fold, spec=spec, train=train, test=test)
                done = score_fold(
                    data, models=settings.models, n_members=cv_members, seed=settings.seed,
                    device=device, progress=say, spill=work.pieces,
                )  # fmt: skip
                work.save_fold(i, done)
            for name in settings.models:
                scores[name].extend(done[name])
            say(fold_eta.status(f"cross-validation: {fold.name} done", i + 1))
        # The saved model is always the head, whatever --model compared: it learns from every
        # sample, with targets fixed on all of them and early stopping on held-out spots as in
        # each fold; its figures are the cross-validated ones above.
        spec, everything, _ = fold_samples(cache, sample_ids, (), recipe, say, name="all samples")
        ensemble = work.final_head(device)
        if ensemble is None:
            say(f"fitting the final head ({settings.n_members} members) on all {len(sample_ids)} "
                "samples")  # fmt: skip
            ensemble = fit_gat(
                everything, n_members=settings.n_members, seed=settings.seed, device=device,
                spill=work.pieces,
            )  # fmt: skip
            work.save_final_head(ensemble)
        parts = {}
        if settings.resolution_um is not None:
            subspot = _fit_subspot(
                opened, sample_ids, settings, subspot_reference, work.subspot, say
            )
            parts[SUBSPOT_DIR] = subspot.save
        report = {
            "store": str(opened.path),
            "target": settings.target,
            "n_samples": len(sample_ids),
            "n_spots": n_spots,
            "folds": [
                {"name": f.name, "train": list(f.train), "test": list(f.test)} for f in folds
            ],
            "fold_scheme": describe_folds(folds, groups, settings),
            "groups": {s: groups[s] for s in sample_ids},
            "cv_members": cv_members,
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


@dataclass(frozen=True)
class _Recipe:
    """What fixes a fold's targets besides its training samples."""

    kind: str
    n_genes: int
    gene_sets: tuple[Any, ...]
    reference: Any


def fold_samples(
    cache: Any,
    train: Sequence[str],
    test: Sequence[str],
    recipe: _Recipe,
    say: Callable[[str], None],
    *,
    name: str,
) -> tuple[Any, Any, Any]:
    """Targets fixed on the ``train`` samples' moments alone; every sample's targets computed
    with them, one sample's counts at a time; the samples read from the cache when asked for.
    Returns the target spec and the training and test samples."""
    from tmescope.fusion.spot_cache import CachedSamples
    from tmescope.fusion.target_spec import check_genes, fit_targets_from_moments

    spec = fit_targets_from_moments(
        [cache.moments(s) for s in train], kind=recipe.kind,  # type: ignore[arg-type]
        n_genes=recipe.n_genes, gene_sets=recipe.gene_sets, reference=recipe.reference,
    )  # fmt: skip
    check_genes([cache.moments(s) for s in test], spec)
    eta = Eta(len(train) + len(test))
    targets: dict[str, Any] = {}
    for i, sample_id in enumerate((*train, *test), start=1):
        targets[sample_id] = spec.compute(cache.counts_table(sample_id))
        if eta.worth_saying(i, lines=2):
            say(eta.status(f"{name}: targets of {sample_id}", i))
    return (
        spec,
        CachedSamples(cache, {s: targets[s] for s in train}),
        CachedSamples(cache, {s: targets[s] for s in test}),
    )


def _read_spots(
    store: Any, sample_ids: Sequence[str], folder: Path, say: Callable[[str], None]
) -> Any:
    """Each training sample's spots read from the store into the work folder's cache once."""
    from tmescope.fusion.cohort import read_spot_table
    from tmescope.fusion.evaluation import spot_graph
    from tmescope.fusion.spot_cache import SpotCache

    cache = SpotCache(folder)
    eta = Eta(len(sample_ids))
    for i, sample_id in enumerate(sample_ids, start=1):
        if sample_id not in cache:
            table = read_spot_table(store, sample_id)
            graph = spot_graph(table.coords_um, platform=sample_platform(store, sample_id))
            cache.add(table, graph)
            del table, graph
        if eta.worth_saying(i):
            say(eta.status(f"spots of {sample_id} read", i))
    return cache


def _work_key(store: Any, sample_ids: Sequence[str], settings: TrainSettings) -> dict[str, Any]:
    """What the work kept for a killed training depends on: another value starts afresh."""
    from dataclasses import asdict

    records = {s: store.sample_record(s) for s in sample_ids}
    files = {}
    for name in ("reference", "gene_sets", "groups", "folds"):
        value = getattr(settings, name)
        path = Path(value) if value else None
        if path is not None and path.is_file():
            stat = path.stat()
            files[name] = [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    return {
        "store": str(Path(store.path).resolve()),
        "samples": {s: [r.meta.source_hash, r.completed] for s, r in records.items()},
        "settings": {k: v for k, v in asdict(settings).items() if k != "device"},
        "files": files,
    }


def sample_groups(store: Any, sample_ids: Sequence[str], settings: TrainSettings) -> dict[str, str]:
    """Each training sample's group (patient) for cross-validation: from ``--groups``, else the
    stored metadata column ``--group-key`` (``patient`` by default, when the samples have it),
    else each sample its own group."""
    from tmescope.fusion.folds import read_sample_groups

    if settings.groups is not None:
        groups = read_sample_groups(settings.groups, group_key=settings.group_key)
        missing = [s for s in sample_ids if s not in groups]
        if missing:
            raise TrainingDataError(
                f"{settings.groups} gives no group for {', '.join(missing[:5])}; add a row for "
                "every sample of the store"
            )
        return {s: groups[s] for s in sample_ids}
    key = settings.group_key or DEFAULT_GROUP_KEY
    found = {s: stored_metadata(store, s).get(key, "").strip() for s in sample_ids}
    lacking = [s for s, g in found.items() if not g]
    if settings.group_key is not None and lacking:
        raise TrainingDataError(
            f"--group-key {key}: samples {', '.join(lacking[:5])} have no {key!r} in their stored "
            f"metadata; embed them with a sample sheet that has a {key} column, or give --groups "
            "FILE.csv (columns sample_id and a group)"
        )
    if len(lacking) == len(sample_ids):
        return {s: s for s in sample_ids}  # nothing known: every sample is its own patient
    if lacking:
        log.warning("no %r in the metadata of %s: each counts as a %s of its own", key,
                    ", ".join(lacking[:5]), key)  # fmt: skip
    return {s: g or s for s, g in found.items()}


def stored_metadata(store: Any, sample_id: str) -> dict[str, str]:
    """The metadata a sample was embedded with (its sample sheet's other columns)."""
    return dict(store.sample_record(sample_id).metadata)


def describe_folds(folds: Sequence[Any], groups: dict[str, str], settings: TrainSettings) -> str:
    """How the folds were made, in words (printed, and kept in the model's report)."""
    n_groups = len(set(groups.values()))
    by_sample = all(groups[s] == s for s in groups)
    unit = "sample" if by_sample else (settings.group_key or DEFAULT_GROUP_KEY)
    if settings.folds not in (AUTO_FOLDS, LEAVE_SAMPLE_OUT, LEAVE_GROUP_OUT) and not (
        settings.folds.isdigit()
    ):
        return f"read from {settings.folds}"
    if all(len(f.test) == 1 for f in folds) and len(folds) == len(groups):
        return f"leave one sample out ({len(folds)} folds)"
    if len(folds) == n_groups:
        return f"leave one {unit} out ({len(folds)} folds)"
    return f"{len(folds)} folds of whole {unit}s ({n_groups} {unit}s)"


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
    work: Path,
    say: Callable[[str], None],
) -> Any:
    """The sub-spot model, fitted on the training samples' bins (never a held-out sample's),
    one sample in memory at a time."""
    from tmescope.fusion.bin_head import BinHeadConfig
    from tmescope.fusion.subspot_fit import fit_subspot_from_store

    assert settings.resolution_um is not None
    config = BinHeadConfig(n_members=min(settings.n_members, 3))
    etas: dict[bool, Eta] = {}

    def report(what: str, done: int, total: int) -> None:
        steps = what == "sub-spot model"  # else "sub-spot rows (of <sample>)"
        if done == 0:  # a loop begins: its clock starts now
            etas[steps] = Eta(total)
            return
        eta = etas.setdefault(steps, Eta(total))
        if eta.worth_saying(done, lines=10 if steps else 20):
            say(eta.status(f"{what}: steps" if steps else what, done))

    say(f"fitting the sub-spot model on the bins of {len(sample_ids)} samples")
    return fit_subspot_from_store(
        store, sample_ids, reference=reference, bin_um=settings.resolution_um, work=work,
        config=config, seed=settings.seed, progress=report,
    )  # fmt: skip


def _marker_reference(settings: TrainSettings, panels: Sequence[Sequence[str]]) -> Any:
    """The sub-spot populations without a reference: the population gene sets of --gene-sets
    (or the default sets) on the markers every training sample measures."""
    from tmescope.fusion.genesets import load_gene_sets
    from tmescope.fusion.marker_reference import marker_reference

    return marker_reference(load_gene_sets(settings.gene_sets), panels)


def _folds(settings: TrainSettings, sample_ids: Sequence[str], groups: dict[str, str]) -> list[Any]:
    from tmescope.fusion.folds import (
        group_k_folds,
        leave_one_group_out,
        leave_one_sample_out,
        read_folds,
    )

    if len(sample_ids) < 2:
        raise TrainingDataError(
            f"cross-validation needs at least 2 complete samples; the store holds "
            f"{len(sample_ids)}: embed more samples into it"
        )
    ordered = {s: groups[s] for s in sample_ids}
    if settings.folds == AUTO_FOLDS:
        if len(set(ordered.values())) < 2:
            warnings.warn(
                f"every training sample comes from one {settings.group_key or DEFAULT_GROUP_KEY} "
                f"({next(iter(ordered.values()))!r}): each fold holds out one section, so the "
                "figures are optimistic (sections of one patient share its biology)",
                TmescopeWarning,
                stacklevel=3,
            )
            return leave_one_sample_out(sample_ids)
        return group_k_folds(ordered, k=DEFAULT_FOLDS, seed=settings.seed)
    if settings.folds.isdigit():
        return group_k_folds(ordered, k=int(settings.folds), seed=settings.seed)
    if settings.folds == LEAVE_SAMPLE_OUT:
        return leave_one_sample_out(sample_ids)
    if settings.folds == LEAVE_GROUP_OUT:
        return leave_one_group_out(ordered)
    return read_folds(Path(settings.folds), sample_ids)


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
