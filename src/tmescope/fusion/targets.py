"""Expression targets: normalised counts, the genes to predict, and the genes samples share.

Gene choice must never see the test samples: :func:`select_variable_genes` takes only the
matrices it is given, so callers pass the training samples and nothing else. A gene chosen
because it varies in a test sample would leak that sample's answer into the model's targets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError, TrainingDataError

log = logging.getLogger(__name__)

_SHOWN = 5  # how many names an error message lists before "…"


@overload
def normalise_total(counts: np.ndarray, *, target_sum: float = ...) -> np.ndarray: ...
@overload
def normalise_total(counts: sp.spmatrix, *, target_sum: float = ...) -> sp.csr_matrix: ...
def normalise_total(
    counts: np.ndarray | sp.spmatrix, *, target_sum: float = 1e4
) -> np.ndarray | sp.csr_matrix:
    """Scale each spot's counts to sum ``target_sum``; spots with no counts stay zero.

    ``(n_spots, n_genes)`` in, float32 out: a dense array for a dense input, CSR for a sparse one.
    """
    if not (math.isfinite(target_sum) and target_sum > 0):
        raise InvalidParameterError(f"target_sum must be a finite number > 0, found {target_sum!r}")
    if sp.issparse(counts):
        matrix = sp.csr_matrix(counts, dtype=np.float32)
        values = matrix.data
    else:
        matrix = np.asarray(counts, dtype=np.float32)
        values = matrix
    if matrix.ndim != 2:
        raise TrainingDataError(
            f"counts must be a 2-D (n_spots, n_genes) matrix, found shape {matrix.shape}"
        )
    if values.size and (not np.isfinite(values).all() or values.min() < 0):
        raise TrainingDataError(
            "counts must be finite and >= 0 (raw UMI counts), found negative or non-finite "
            "values; pass the raw count matrix, not a scaled or log-transformed one"
        )
    library = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(target_sum, library, out=np.zeros_like(library), where=library > 0)
    if sp.issparse(matrix):
        return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix, dtype=np.float32)
    return (matrix * scale[:, None]).astype(np.float32)


@overload
def normalise_log1p(counts: np.ndarray, *, target_sum: float = ...) -> np.ndarray: ...
@overload
def normalise_log1p(counts: sp.spmatrix, *, target_sum: float = ...) -> sp.csr_matrix: ...
def normalise_log1p(
    counts: np.ndarray | sp.spmatrix, *, target_sum: float = 1e4
) -> np.ndarray | sp.csr_matrix:
    """``log1p`` of :func:`normalise_total`: float32, dense for dense input, CSR for sparse."""
    scaled = normalise_total(counts, target_sum=target_sum)
    if sp.issparse(scaled):
        return scaled.log1p()
    return np.log1p(scaled)


def select_variable_genes(
    train_matrices: Sequence[np.ndarray | sp.spmatrix],
    gene_names: Sequence[str],
    *,
    n: int = 50,
    min_detected: float = 0.01,
) -> tuple[str, ...]:
    """The ``n`` genes whose log-normalised expression varies most across the training spots.

    Variance is pooled over every spot of every matrix given (one column per ``gene_names``);
    pass the training samples only. Genes detected in fewer than ``min_detected`` of those spots,
    or with no variance, do not qualify. Ties go to the alphabetically first name.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidParameterError(f"n must be an integer >= 1, found {n!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidParameterError(f"n must be an integer >= 1, found {n!r}")
    names = list(gene_names)
    return variable_genes(
        pool_gene_moments(train_matrices, n_genes=len(names)), names, n=n,
        min_detected=min_detected,
    )  # fmt: skip


def variable_genes(
    moments: GeneMoments, gene_names: Sequence[str], *, n: int = 50, min_detected: float = 0.01
) -> tuple[str, ...]:
    """:func:`select_variable_genes` on moments already pooled over the training spots."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidParameterError(f"n must be an integer >= 1, found {n!r}")
    names = list(gene_names)
    variance = moments.variance
    qualifies = (moments.detected >= min_detected) & (variance > 1e-12)
    candidates = [g for g in range(len(names)) if qualifies[g]]
    if len(candidates) < n:
        raise TrainingDataError(
            f"asked for {n} variable genes, but only {len(candidates)} of {len(names)} genes vary "
            f"and are detected in >= {min_detected:.0%} of the {moments.n_spots} training spots; "
            "ask for fewer genes or train on more samples"
        )
    candidates.sort(key=lambda g: (-variance[g], names[g]))
    chosen = tuple(names[g] for g in candidates[:n])
    log.debug("chose %d variable genes from %d training spots", n, moments.n_spots)
    return chosen


@dataclass(frozen=True, eq=False)
class GeneMoments:
    """Per-gene statistics pooled over every spot of some (training) matrices."""

    n_spots: int
    mean: np.ndarray  # (n_genes,) float64
    variance: np.ndarray  # (n_genes,) float64, population variance
    detected: np.ndarray  # (n_genes,) float64: fraction of spots with a value > 0


def pool_gene_moments(matrices: Sequence[np.ndarray | sp.spmatrix], *, n_genes: int) -> GeneMoments:
    """Mean, variance and detection rate of each of ``n_genes`` columns over all rows given."""
    total = np.zeros((3, n_genes))  # sum, sum of squares, spots detected
    n_spots = 0
    for i, matrix in enumerate(matrices):
        if matrix.ndim != 2 or matrix.shape[1] != n_genes:
            raise TrainingDataError(
                f"training matrix {i} has shape {matrix.shape}, expected (n_spots, {n_genes}) "
                "to match the gene names; align every sample to the same genes first (common_genes)"
            )
        total += _column_moments(matrix)
        n_spots += matrix.shape[0]
    if n_spots == 0:
        raise TrainingDataError(
            "no training spots to learn from: pass at least one non-empty training matrix"
        )
    mean = total[0] / n_spots
    # Population variance; clipped because E[x²] - E[x]² can dip below 0 by rounding.
    variance = np.maximum(total[1] / n_spots - mean**2, 0.0)
    return GeneMoments(n_spots, mean, variance, total[2] / n_spots)


@dataclass(frozen=True, eq=False)
class SampleMoments:
    """One sample's per-gene sums of log1p-normalised expression (sum, sum of squares, spots
    detected), by gene name: what a fold's targets need of a sample, without its counts."""

    sample_id: str
    genes: tuple[str, ...]
    n_spots: int
    sums: np.ndarray  # (3, n_genes) float64

    @classmethod
    def of(cls, sample_id: str, counts: sp.spmatrix | np.ndarray, genes: Sequence[str]) -> SampleMoments:
        return cls(sample_id, tuple(genes), int(counts.shape[0]), _column_moments(normalise_log1p(counts)))


def pool_sample_moments(samples: Sequence[SampleMoments], genes: Sequence[str]) -> GeneMoments:
    """The moments of ``genes`` pooled over every spot of ``samples`` (each must hold them all),
    equal to :func:`pool_gene_moments` over the samples' log1p-normalised matrices."""
    total = np.zeros((3, len(genes)))
    n_spots = 0
    for sample in samples:
        column = {g: i for i, g in enumerate(sample.genes)}
        total += sample.sums[:, [column[g] for g in genes]]
        n_spots += sample.n_spots
    if n_spots == 0:
        raise TrainingDataError(
            "no training spots to learn from: pass at least one non-empty training matrix"
        )
    mean = total[0] / n_spots
    variance = np.maximum(total[1] / n_spots - mean**2, 0.0)
    return GeneMoments(n_spots, mean, variance, total[2] / n_spots)


def _column_moments(matrix: np.ndarray | sp.spmatrix) -> np.ndarray:
    """``(3, n_genes)`` float64: per-column sum, sum of squares and count of values > 0."""
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix)
        squared = csr.multiply(csr)
        sums = [
            csr.sum(axis=0, dtype=np.float64),
            squared.sum(axis=0, dtype=np.float64),
            (csr > 0).sum(axis=0, dtype=np.float64),
        ]
        return np.vstack([np.asarray(row).ravel() for row in sums])
    dense = np.asarray(matrix, dtype=np.float64)
    return np.vstack([dense.sum(axis=0), np.square(dense).sum(axis=0), (dense > 0).sum(axis=0)])


def common_genes(gene_name_lists: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Genes present in every sample, in the order of the first (each gene once)."""
    if not gene_name_lists:
        raise TrainingDataError("no samples given: pass the gene names of at least one sample")
    shared = set(gene_name_lists[0]).intersection(*map(set, gene_name_lists[1:]))
    genes = tuple(dict.fromkeys(g for g in gene_name_lists[0] if g in shared))
    if not genes:
        sizes = ", ".join(str(len(names)) for names in gene_name_lists)
        raise TrainingDataError(
            f"the samples share no gene (they hold {sizes} genes); check that every sample "
            "names genes the same way (all symbols or all Ensembl ids)"
        )
    return genes


def require_genes(
    sample_genes: Mapping[str, Sequence[str]], wanted: Sequence[str]
) -> tuple[str, ...]:
    """``wanted`` (each once), after checking that every sample holds all of it.

    Raises :class:`TrainingDataError` naming the samples that lack genes and the first of them.
    """
    genes = tuple(dict.fromkeys(wanted))
    lacking: list[str] = []
    for sample_id, names in sample_genes.items():
        present = set(names)
        missing = [g for g in genes if g not in present]
        if missing:
            shown = ", ".join(missing[:_SHOWN]) + (", …" if len(missing) > _SHOWN else "")
            lacking.append(f"{sample_id} lacks {len(missing)} ({shown})")
    if lacking:
        raise TrainingDataError(
            f"every sample must hold the {len(genes)} genes asked for, but "
            + "; ".join(lacking)
            + ": choose genes from common_genes() or leave those samples out"
        )
    return genes
