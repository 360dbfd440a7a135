"""From a sample's embeddings to the head's inputs: the data contract and the fitted transform.

:class:`GraphSample` is what the fusion head trains and predicts on. :func:`fit_transform`
learns, from the training samples only, the per-feature standardisation, a randomized PCA
(fitted on a row subsample: the full ``(N, d)`` cohort is never concatenated) and the per-target
standardisation; each sample may first be normalised by its own statistics (``sample_norm``).
:func:`partition_nodes` cuts a large graph into compact pieces with a halo, so that one
optimiser step works on a piece small enough to stay fast on CPU while the core nodes still see
their whole receptive field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tmescope.errors import TrainingDataError
from tmescope.fusion.head import SampleNorm

PCA_ROWS = 20_000  # rows the PCA is fitted on: enough for 256 stable components, seconds on 2 cores


@dataclass(frozen=True)
class GraphSample:
    """One tissue section as a graph: node embeddings, edges and (when training) targets.

    ``x`` is ``(n_nodes, d)`` embeddings (spots, optionally followed by grid tiles);
    ``edge_index`` is ``(2, E)`` int64 source → target (PyG convention), symmetric over spots,
    no self loops; tiles may only receive. ``y`` is ``(n_nodes, t)`` float targets, ``None`` at
    predict time; ``target_mask`` is ``(n_nodes,)`` bool, the nodes that have targets (``None``:
    all of them when ``y`` is given).
    """

    sample_id: str
    x: np.ndarray
    edge_index: np.ndarray
    y: np.ndarray | None = None
    target_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = f"sample {self.sample_id!r}"
        if self.x.ndim != 2 or self.x.shape[0] == 0 or self.x.shape[1] == 0:
            raise TrainingDataError(
                f"{where}: x must be (n_nodes, d) with both > 0, got shape {self.x.shape}"
            )
        n = self.x.shape[0]
        edges = self.edge_index
        if edges.ndim != 2 or edges.shape[0] != 2 or not np.issubdtype(edges.dtype, np.integer):
            raise TrainingDataError(
                f"{where}: edge_index must be a (2, E) integer array, got {edges.dtype} {edges.shape}"
            )
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            raise TrainingDataError(
                f"{where}: edge_index refers to nodes {edges.min()}..{edges.max()} but x has {n} rows"
            )
        if self.y is not None and (
            self.y.ndim != 2 or self.y.shape[0] != n or self.y.shape[1] == 0
        ):
            raise TrainingDataError(
                f"{where}: y must be ({n}, t) with t > 0, got shape {self.y.shape}"
            )
        mask = self.target_mask
        if mask is not None and (mask.shape != (n,) or mask.dtype != np.bool_):
            raise TrainingDataError(
                f"{where}: target_mask must be a ({n},) bool array, got {mask.dtype} {mask.shape}"
            )

    @property
    def targets(self) -> np.ndarray:
        """``(n_nodes,)`` bool: the nodes scored in the loss."""
        if self.target_mask is not None:
            return self.target_mask
        return np.full(self.x.shape[0], self.y is not None)


@dataclass(frozen=True)
class InputTransform:
    """What is fitted on the training samples before the head: x and y standardisation, PCA.

    ``x_mean``/``x_scale`` are ``(d,)``; ``components`` is ``(k, d)`` (rows are principal axes of
    the standardised embeddings) or ``None``; ``y_mean``/``y_std`` are ``(t,)``. ``sample_norm``
    says how each sample is first normalised by its own statistics (see :class:`HeadConfig`);
    the cohort statistics are those of the normalised training samples.
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    components: np.ndarray | None
    y_mean: np.ndarray
    y_std: np.ndarray
    sample_norm: SampleNorm = "none"

    @property
    def in_dim(self) -> int:
        return int(self.x_mean.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.x_mean.shape[0] if self.components is None else self.components.shape[0])

    def apply(self, sample: GraphSample, device: torch.device) -> Tensor:
        """The sample's ``(n, d)`` embeddings → ``(n, k)`` float32 head inputs on ``device``."""
        own_centre, own_scale = sample_stats(sample, self.sample_norm)
        # ((x - c_s) / s_s - mean) / scale = (x - centre) / scale', folded with Vᵀ into one
        # affine map: one matmul, no (n, d) temporaries beyond the float32 copy of x.
        centre = torch.from_numpy(own_centre + own_scale * self.x_mean).to(device, torch.float32)
        scale = torch.from_numpy(own_scale * self.x_scale).to(device, torch.float32)
        x = torch.from_numpy(np.ascontiguousarray(sample.x)).to(device, torch.float32)  # (n, d)
        if self.components is None:
            return (x - centre) / scale
        weight = torch.from_numpy(self.components).to(device).T / scale[:, None]  # (d, k)
        return torch.addmm(-(centre @ weight), x, weight)  # (n, k)

    def scale_targets(self, y: np.ndarray) -> np.ndarray:
        """``(n, t)`` targets → standardised ``(n, t)`` float32."""
        return ((y - self.y_mean) / self.y_std).astype(np.float32)

    def unscale_targets(self, y: np.ndarray) -> np.ndarray:
        """Standardised ``(n, t)`` predictions → the targets' own units."""
        return (y * self.y_std + self.y_mean).astype(np.float32)


def fit_transform(
    train: Sequence[GraphSample],
    *,
    pca_dim: int | None,
    sample_norm: SampleNorm = "none",
    seed: int = 0,
) -> InputTransform:
    """Fit x standardisation (all nodes), PCA (a row subsample) and y standardisation (target nodes).

    Each sample is first normalised by its own statistics as ``sample_norm`` says; the PCA sees at
    most ``PCA_ROWS`` rows, drawn uniformly over the training samples.
    """
    d = train[0].x.shape[1]
    rows = sum(s.x.shape[0] for s in train)
    keep = min(1.0, PCA_ROWS / rows)
    rng = np.random.default_rng(seed)
    # Sums in float64 sample by sample: no (N, d) concatenation of the whole cohort.
    total, square, picked = np.zeros(d), np.zeros(d), []
    for s in train:
        centre, scale = sample_stats(s, sample_norm)
        x = (s.x - centre.astype(np.float32)) / scale.astype(np.float32)  # (n, d) float32
        total += x.sum(axis=0, dtype=np.float64)
        square += np.einsum("ij,ij->j", x, x, dtype=np.float64)
        picked.append(x[rng.random(x.shape[0]) < keep])
    x_mean = total / rows
    x_scale = _safe_scale(np.sqrt(np.maximum(square / rows - x_mean**2, 0.0)))
    components = None
    if pca_dim is not None and pca_dim < d:
        z = (np.concatenate(picked) - x_mean.astype(np.float32)) / x_scale.astype(np.float32)
        components = _fit_pca(z, k=pca_dim, seed=seed)
    y = np.concatenate([s.y[s.targets] for s in train if s.y is not None]).astype(np.float64)
    return InputTransform(
        x_mean=x_mean.astype(np.float32),
        x_scale=x_scale.astype(np.float32),
        components=components,
        y_mean=y.mean(axis=0).astype(np.float32),
        y_std=_safe_scale(y.std(axis=0)).astype(np.float32),
        sample_norm=sample_norm,
    )


def sample_stats(sample: GraphSample, mode: SampleNorm) -> tuple[np.ndarray, np.ndarray]:
    """``(d,)`` float64 centre and scale of a sample's own scored rows, as ``mode`` says.

    The scored rows are the spots (``target_mask``); all rows when none are marked. ``"none"``
    gives zeros and ones.
    """
    d = sample.x.shape[1]
    if mode == "none":
        return np.zeros(d), np.ones(d)
    rows = sample.target_mask
    own = sample.x if rows is None or not rows.any() else sample.x[rows]  # (m, d)
    centre = own.mean(axis=0, dtype=np.float64)
    if mode == "centre":
        return centre, np.ones(d)
    return centre, _safe_scale(own.std(axis=0, dtype=np.float64))


def _safe_scale(std: np.ndarray) -> np.ndarray:
    """Standard deviations with the constant entries set to 1: centred, left unscaled."""
    return np.where(std < 1e-8, 1.0, std)


def _fit_pca(z: np.ndarray, *, k: int, seed: int) -> np.ndarray:
    """``(k, d)`` principal axes of the ``(m, d)`` standardised rows (randomized SVD)."""
    from sklearn.utils.extmath import randomized_svd

    z -= z.mean(axis=0)
    _, _, vt = randomized_svd(z, min(k, z.shape[0]), n_iter=4, random_state=seed)
    return np.ascontiguousarray(vt, dtype=np.float32)  # (k, d)


def partition_nodes(
    edge_index: np.ndarray, n_nodes: int, *, max_core: int, hops: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cover a graph's nodes with pieces of at most ``max_core`` core nodes plus their halo.

    ``edge_index`` is ``(2, E)`` source → target. Cores are consecutive runs of the reverse
    Cuthill–McKee order, which keeps them compact bands on a spatial lattice; each core gets
    every node that reaches it within ``hops`` edges, so a ``hops``-layer message-passing network
    computes the core nodes exactly as on the whole graph. Returns, per piece, the ``(m,)``
    ascending node ids and the ``(m,)`` bool core flags; one piece when the graph is small.
    """
    if n_nodes <= max_core:
        return [(np.arange(n_nodes), np.ones(n_nodes, bool))]
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    source, target = edge_index
    weights = np.ones(source.shape[0], np.float32)
    outgoing = csr_matrix(
        (weights, (source, target)), shape=(n_nodes, n_nodes)
    )  # row sends to column
    order = reverse_cuthill_mckee((outgoing + outgoing.T).tocsr(), symmetric_mode=True)
    pieces = []
    for core in np.array_split(order, math.ceil(n_nodes / max_core)):
        inside = np.zeros(n_nodes, bool)
        inside[core] = True
        reach = inside.copy()
        for _ in range(hops):
            reach |= (outgoing @ reach.astype(np.float32)) > 0  # nodes with an edge into reach
        nodes = np.flatnonzero(reach)
        pieces.append((nodes, inside[nodes]))
    return pieces
