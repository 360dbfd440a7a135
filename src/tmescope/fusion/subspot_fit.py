"""Fitting the sub-spot model, with memory bounded by one sample rather than by the cohort.

The recipe: every training bin's input (its feature and context-ring means, standardised per
sample) is reduced by a PCA fitted on a seeded subsample of at most :data:`PCA_BINS` bins drawn
over the samples in proportion to their bins (all of them in a small cohort); the heads then
learn from the bins inside spot discs, a minibatch of spots per step
(:func:`~tmescope.fusion.bin_head.fit_bin_heads_streamed`).

Two doors to the same recipe: :func:`fit_subspot_model` on samples already in memory, and
:func:`fit_subspot_from_store`, which reads the training samples from a store one at a time,
keeps each one's training rows in a scratch folder and trains from there. A killed fit resumes
from that folder: samples whose rows are written, the PCA, and members already fitted are read
back rather than computed again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tmescope.errors import InvalidParameterError
from tmescope.fusion.bin_head import (
    BinHead,
    BinHeadConfig,
    fit_bin_head,
    fit_bin_heads_streamed,
    member_seeds,
)
from tmescope.fusion.bin_rows import (
    DiskRows,
    MemoryRows,
    SpotRows,
    disc_rows,
    has_rows,
    project_rows,
    write_rows,
)
from tmescope.fusion.reference import ReferenceProfiles
from tmescope.fusion.subspot_data import BinSample
from tmescope.fusion.subspot_model import PCA_DIM, SubspotModel
from tmescope.store import CohortStore

log = logging.getLogger(__name__)

PCA_BINS = 100_000  # bins the PCA is fitted on at most: ~230 MB of 576-wide inputs, seconds
# (what, done, total): "sub-spot rows" (of sample …) then "sub-spot model" (steps); done = 0
# when each starts
Progress = Callable[[str, int, int], None]


def fit_subspot_model(
    samples: Sequence[BinSample],
    *,
    reference: ReferenceProfiles,
    config: BinHeadConfig | None = None,
    seed: int = 0,
) -> SubspotModel:
    """Fit the sub-spot model on samples held in memory (see the module docstring)."""
    config = config or BinHeadConfig()
    if not samples:
        raise InvalidParameterError("fit_subspot_model needs at least one training sample")
    quotas = pca_quotas([len(s.x) for s in samples])
    picked = [
        pca_subsample(s.x, q, seed=seed, index=i)
        for i, (s, q) in enumerate(zip(samples, quotas, strict=True))
    ]
    mean, components = fit_pca(np.vstack(picked), seed=seed)
    rows = []
    for s in samples:
        own = disc_rows(s)
        reduced = ((own.x - mean) @ components).astype(np.float32)
        rows.append(SpotRows(own.sample_id, reduced, own.starts, own.shares, own.area))
    heads = fit_bin_heads_streamed(MemoryRows(rows), config=config, seed=seed)
    return SubspotModel(
        bin_um=float(samples[0].bin_um), reference=reference, config=config, mean=mean,
        components=components, heads=tuple(heads), samples=tuple(s.sample_id for s in samples),
    )  # fmt: skip


def fit_subspot_from_store(
    store: CohortStore,
    sample_ids: Sequence[str],
    *,
    reference: ReferenceProfiles,
    bin_um: float,
    work: Path,
    config: BinHeadConfig | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> SubspotModel:
    """Fit the sub-spot model on ``sample_ids`` of ``store``, one sample in memory at a time.

    ``work`` is a scratch folder this fit owns (its caller keys it to the store's samples and the
    settings): rows, PCA and fitted members kept there are reused by a fit started again.
    """
    from tmescope.fusion.subspot_data import read_bin_sample

    config = config or BinHeadConfig()
    if not sample_ids:
        raise InvalidParameterError("the sub-spot model needs at least one training sample")
    say = progress or (lambda what, done, total: None)
    work = Path(work)
    full, reduced, picked = work / "rows", work / "reduced", work / "pca_rows"
    for folder in (full, reduced, picked):
        folder.mkdir(parents=True, exist_ok=True)
    n_bins = [_n_bins(store, s) for s in sample_ids]
    quotas = pca_quotas(n_bins)
    pca_file = work / "pca.npz"
    say("sub-spot rows", 0, len(sample_ids))
    for i, (sample_id, quota) in enumerate(zip(sample_ids, quotas, strict=True)):
        done = has_rows(reduced / sample_id) or (
            has_rows(full / sample_id) and (picked / f"{sample_id}.npy").is_file()
        )
        if not done:
            sample = read_bin_sample(store, sample_id, reference=reference, bin_um=bin_um)
            _save(picked / f"{sample_id}.npy", pca_subsample(sample.x, quota, seed=seed, index=i))
            write_rows(full / sample_id, disc_rows(sample))
            del sample
        say(f"sub-spot rows of {sample_id}", i + 1, len(sample_ids))
    if pca_file.is_file():
        with np.load(pca_file) as saved:
            mean, components = saved["mean"], saved["components"]
    else:
        stacked = np.vstack([np.load(picked / f"{s}.npy") for s in sample_ids])
        mean, components = fit_pca(stacked, seed=seed)
        del stacked
        _save_pca(pca_file, mean, components)
    for sample_id in sample_ids:
        if not has_rows(reduced / sample_id):
            project_rows(full / sample_id, reduced / sample_id, mean=mean, components=components)
        shutil.rmtree(full / sample_id, ignore_errors=True)  # the wide inputs are done with
    source = DiskRows([reduced / s for s in sample_ids])
    _forget_members_of_another_head(work, config)
    heads = []
    total = config.steps * config.n_members
    say("sub-spot model", 0, total)
    for i, member_seed in enumerate(member_seeds(seed, config.n_members)):
        saved_head = work / f"member_{i}.safetensors"
        if saved_head.is_file():
            heads.append(_load_head(saved_head, source.dim, source.n_populations, config))
            say("sub-spot model", (i + 1) * config.steps, total)
            continue

        def steps(step: int, _: int, done: int = i * config.steps) -> None:
            say("sub-spot model", done + step, total)

        head = fit_bin_head(source, config=config, seed=member_seed, progress=steps)
        _save_head(saved_head, head)
        heads.append(head)
    return SubspotModel(
        bin_um=float(bin_um), reference=reference, config=config, mean=mean,
        components=components, heads=tuple(heads), samples=tuple(sample_ids),
    )  # fmt: skip


def _forget_members_of_another_head(work: Path, config: BinHeadConfig) -> None:
    """Remove fitted members kept by a fit of another head configuration (members of a head
    without the density output, say), which a resumed fit must not load as its own."""
    record = work / "head.json"
    wanted = json.dumps(config.to_dict(), sort_keys=True)
    if record.is_file() and record.read_text(encoding="utf-8") == wanted:
        return
    for member in work.glob("member_*.safetensors"):
        member.unlink()
    partial = record.with_name(f".tmp-{record.name}")
    partial.write_text(wanted, encoding="utf-8")
    os.replace(partial, record)


def pca_quotas(n_bins: Sequence[int], *, cap: int = PCA_BINS) -> list[int]:
    """Bins of each sample the PCA sees: all of them while the cohort has at most ``cap``, else
    shares of ``cap`` in proportion to each sample's bins (at least one each)."""
    total = sum(n_bins)
    if total <= cap:
        return [int(n) for n in n_bins]
    return [min(int(n), max(1, math.floor(cap * n / total))) for n in n_bins]


def pca_subsample(x: np.ndarray, quota: int, *, seed: int, index: int) -> np.ndarray:
    """``quota`` rows of ``x`` drawn without replacement (all of them, in order, when ``quota``
    covers them), seeded by ``seed`` and the sample's place ``index`` among the training ones."""
    if quota >= len(x):
        return np.asarray(x, dtype=np.float32)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    return np.asarray(x[np.sort(rng.choice(len(x), size=quota, replace=False))], np.float32)


def fit_pca(rows: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(d,)`` centre and ``(d, k)`` projection of at most :data:`PCA_DIM` components."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(PCA_DIM, *rows.shape), random_state=seed).fit(rows)
    return pca.mean_.astype(np.float32), pca.components_.T.astype(np.float32)


def _n_bins(store: CohortStore, sample_id: str) -> int:
    layout = store.sample_record(sample_id).bins
    return int(layout.n_bins) if layout is not None else 0


def _save(path: Path, array: np.ndarray) -> None:
    """``np.save`` into a sibling, renamed into place whole."""
    partial = path.with_name(f".tmp-{path.name}")
    with partial.open("wb") as handle:
        np.save(handle, array)
    os.replace(partial, path)


def _save_pca(path: Path, mean: np.ndarray, components: np.ndarray) -> None:
    """The PCA's centre and projection, written whole (as :func:`_save`)."""
    partial = path.with_name(f".tmp-{path.name}")
    with partial.open("wb") as handle:
        np.savez(handle, mean=mean, components=components)
    os.replace(partial, path)


def _save_head(path: Path, head: BinHead) -> None:
    from safetensors.torch import save_file

    partial = path.with_name(f".tmp-{path.name}")
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, partial)
    os.replace(partial, path)


def _load_head(path: Path, d_in: int, n_populations: int, config: BinHeadConfig) -> BinHead:
    from safetensors.torch import load_file

    head = config.head(d_in, n_populations)
    head.load_state_dict(load_file(path))
    return head.eval()
