"""Neighbourhood enrichment between categorical TME labels, per sample and pooled over a cohort.

Each sample is tested on its own with squidpy's permutation test (labels shuffled over that
sample's spots, the graph kept), so a z-score never mixes spots of different slides. Samples are
then pooled on a shared category axis: a category absent from a sample is NaN there, not zero.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tmescope.analysis.labels import labelled_spots
from tmescope.errors import InvalidParameterError

logger = logging.getLogger(__name__)

_LABEL_KEY = "label"


@dataclass(frozen=True)
class NhoodResult:
    """Neighbourhood enrichment of one sample on a fixed category axis.

    ``zscore`` and ``count`` are ``(c, c)`` in the order of ``categories``; rows and columns of
    categories absent from the sample are NaN in ``zscore`` and 0 in ``count``.
    """

    categories: tuple[str, ...]
    zscore: np.ndarray  # (c, c) permutation z-scores
    count: np.ndarray  # (c, c) observed neighbour-pair counts
    sample_id: str | None = None


@dataclass(frozen=True)
class CohortNhood:
    """Per-sample enrichment pooled over a cohort, all arrays ``(c, c)``.

    ``mean_z`` and ``std_z`` describe how the effect varies between samples (a typical sample's
    z and the spread around it); ``stouffer_z`` asks whether the cohort as a whole shows it, and
    grows with the number of samples where ``mean_z`` does not. Report both: a large Stouffer z
    with a large ``std_z`` is a strong effect in a few samples, not a cohort-wide one.
    """

    categories: tuple[str, ...]
    mean_z: np.ndarray  # nanmean over samples
    std_z: np.ndarray  # nanstd over samples, ddof 0
    n_samples: np.ndarray  # samples where the pair is defined (both categories present)
    stouffer_z: np.ndarray  # sum(z) / sqrt(n_samples); NaN where n_samples == 0


def nhood_enrichment(
    coords_um: np.ndarray,
    labels: Sequence[str],
    *,
    edge_index: np.ndarray | None = None,
    radius_um: float = 125.0,
    n_perms: int = 1000,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    sample_id: str | None = None,
) -> NhoodResult:
    """Neighbourhood enrichment z-scores of one sample (squidpy permutation test).

    ``coords_um`` is ``(n, 2)`` in micrometres. The graph is ``edge_index`` (PyG ``(2, E)``,
    symmetrised here) when given, else every pair of spots closer than ``radius_um``.
    ``categories`` fixes the category axis so that matrices of different samples align; it
    defaults to the sorted labels of this sample.
    """
    if n_perms < 1:
        raise InvalidParameterError(f"n_perms must be >= 1; found {n_perms}.")
    spots = labelled_spots(
        coords_um, labels, categories=categories, sample_id=sample_id, what="interactions need"
    )
    coords, labels_arr, cats, present = spots.coords, spots.labels, spots.categories, spots.present
    n = coords.shape[0]
    if edge_index is not None:
        adjacency = _graph_from_edges(edge_index, n)
    else:
        adjacency = _radius_graph(coords, radius_um=radius_um)

    z_present, count_present = _squidpy_nhood(
        coords, labels_arr, present, adjacency, n_perms=n_perms, seed=seed
    )
    # Embed the present categories into the full axis: absent ones stay NaN (z) / 0 (count).
    idx = spots.positions()
    zscore = np.full((len(cats), len(cats)), np.nan)
    count = np.zeros((len(cats), len(cats)))
    zscore[np.ix_(idx, idx)] = z_present
    count[np.ix_(idx, idx)] = count_present
    return NhoodResult(categories=cats, zscore=zscore, count=count, sample_id=sample_id)


def pool_cohort(results: Sequence[NhoodResult]) -> CohortNhood:
    """Pool per-sample enrichment on a shared category axis (see :class:`CohortNhood`)."""
    if len(results) == 0:
        raise InvalidParameterError(
            "pool_cohort needs at least one NhoodResult; found none. Run nhood_enrichment per sample first."
        )
    cats = results[0].categories
    for res in results[1:]:
        if res.categories != cats:
            raise InvalidParameterError(
                f"all results must share one category axis; found {cats} and {res.categories} "
                f"(sample {res.sample_id!r}). Pass the same categories= to nhood_enrichment."
            )
    z = np.stack([res.zscore for res in results])  # (k, c, c)
    defined = np.isfinite(z)
    n_samples = defined.sum(axis=0)
    z0 = np.where(defined, z, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 where no sample defines a pair
        mean_z = np.where(n_samples > 0, z0.sum(axis=0) / n_samples, np.nan)
        sq_dev = np.where(defined, (z0 - mean_z) ** 2, 0.0)
        std_z = np.where(n_samples > 0, np.sqrt(sq_dev.sum(axis=0) / n_samples), np.nan)
        stouffer = np.where(n_samples > 0, z0.sum(axis=0) / np.sqrt(n_samples), np.nan)
    return CohortNhood(
        categories=cats, mean_z=mean_z, std_z=std_z, n_samples=n_samples, stouffer_z=stouffer
    )


def _radius_graph(coords: np.ndarray, *, radius_um: float) -> sp.csr_matrix:
    from scipy.spatial import cKDTree

    if not radius_um > 0:
        raise InvalidParameterError(
            f"radius_um must be > 0; found {radius_um}. Visium centres are 100 µm apart: 125 links the 6 neighbours."
        )
    pairs = cKDTree(coords).query_pairs(r=radius_um, output_type="ndarray")  # (E, 2), i < j
    if pairs.shape[0] == 0:
        logger.warning("no spot pair lies within %s µm: the graph has no edges", radius_um)
    return _graph_from_edges(pairs.T, coords.shape[0])


def _graph_from_edges(edge_index: np.ndarray, n: int) -> sp.csr_matrix:
    edges = np.asarray(edge_index)
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise InvalidParameterError(
            f"edge_index must be (2, n_edges) (PyG convention); found shape {edges.shape}. "
            "Transpose an (n_edges, 2) array."
        )
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise InvalidParameterError(
            f"edge_index must hold spot indices in [0, {n}); found [{edges.min()}, {edges.max()}]."
        )
    data = np.ones(edges.shape[1], dtype=np.float64)
    adj = sp.csr_matrix((data, (edges[0], edges[1])), shape=(n, n))
    # Binary and symmetric: squidpy counts each stored entry, so a one-way or duplicated edge
    # would otherwise be counted a different number of times in each direction.
    adj = adj.maximum(adj.T).tocsr()
    adj.data[:] = 1.0
    adj.setdiag(0.0)
    adj.eliminate_zeros()
    return adj


def _squidpy_nhood(
    coords: np.ndarray,
    labels: np.ndarray,
    present: Sequence[str],
    adjacency: sp.csr_matrix,
    *,
    n_perms: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run squidpy on the present categories only; returns ``(c_present, c_present)`` z, count."""
    import anndata as ad
    import pandas as pd
    import squidpy as sq

    adata = ad.AnnData(
        obs=pd.DataFrame(
            {_LABEL_KEY: pd.Categorical(labels, categories=present)},
            index=[str(i) for i in range(len(labels))],
        )
    )
    adata.obsm["spatial"] = coords
    adata.obsp["spatial_connectivities"] = adjacency
    # One job: the permutations are cheap, and loky workers would cost more than they save.
    result = sq.gr.nhood_enrichment(
        adata,
        cluster_key=_LABEL_KEY,
        n_perms=n_perms,
        seed=seed,
        copy=True,
        n_jobs=1,
        show_progress_bar=False,
    )
    if result is None:  # pragma: no cover - copy=True always returns
        raise RuntimeError("squidpy.gr.nhood_enrichment returned None despite copy=True")
    return np.asarray(result.zscore, dtype=np.float64), np.asarray(result.counts, dtype=np.float64)
