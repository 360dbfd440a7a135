"""Niches: clusters of the cohort's fused embeddings, named by what the model sees in them.

A niche is a kind of place — tumour core, immune-rich border, vascular stroma — found by
clustering every spot of every sample in the trained head's fused space (image and
neighbourhood together). The spots define the niches; grid tiles are then assigned to the
nearest niche centre, so a niche map can be drawn between the spots too.

Clustering is k-means (scikit-learn) by default, with ``k`` chosen by silhouette when not
given, or Leiden on a k-nearest-neighbour graph (igraph and leidenalg) when a
resolution is given. Both run on the first principal components of the standardised fused
embeddings, fitted on the spots of all samples at once so that a niche means the same on
every slide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tmescope.errors import InvalidParameterError, MissingDependencyError

N_COMPONENTS = 30  # principal components clustered: enough for the head's few directions
K_RANGE = range(3, 13)  # k tried by silhouette when none is given
SILHOUETTE_ROWS = 4000  # rows the silhouette is measured on (it is quadratic in rows)
LEIDEN_NEIGHBOURS = 15


@dataclass(frozen=True)
class NicheModel:
    """The fitted clustering: niche labels of the spots and centres to place other rows."""

    method: str  # "kmeans" or "leiden"
    labels: np.ndarray  # (n_spots,) int, 0..k-1, in the order the spots were given
    centres: np.ndarray  # (k, components) in the projected space
    mean: np.ndarray  # standardisation and projection, to place tiles
    scale: np.ndarray
    components: np.ndarray  # (components, d)
    params: Mapping[str, float | int]

    @property
    def k(self) -> int:
        return int(self.centres.shape[0])

    def project(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.components.T

    def assign(self, x: np.ndarray) -> np.ndarray:
        """The nearest niche centre of each row of ``x`` (e.g. grid tiles)."""
        z = self.project(np.asarray(x, dtype=np.float64))
        distances = ((z[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        return distances.argmin(axis=1).astype(np.int64)


def fit_niches(
    fused: np.ndarray,
    *,
    k: int | None = None,
    resolution: float | None = None,
    seed: int = 0,
    scale_columns: bool = True,
) -> NicheModel:
    """Cluster ``(n, d)`` fused embeddings of spots into niches.

    Columns are standardised first unless ``scale_columns`` is False (for inputs already put on
    a common scale, whose relative weights must be kept)."""
    if k is not None and resolution is not None:
        raise InvalidParameterError("give either --k or --leiden-resolution, not both")
    x = np.asarray(fused, dtype=np.float64)
    n = x.shape[0]
    if x.ndim != 2 or n < 10 or not np.isfinite(x).all():
        raise InvalidParameterError(
            f"niches need at least 10 spots with finite fused embeddings, got shape {x.shape}"
        )
    if k is not None and not (isinstance(k, int) and 2 <= k <= min(50, n // 5)):
        raise InvalidParameterError(f"--k must be an int from 2 to {min(50, n // 5)}, got {k!r}")
    if resolution is not None and not (math.isfinite(resolution) and resolution > 0):
        raise InvalidParameterError(f"--leiden-resolution must be a positive number, got {resolution!r}")
    mean, scale, components = _projection(x, seed, scale_columns=scale_columns)
    z = ((x - mean) / scale) @ components.T
    if resolution is not None:
        labels = _leiden(z, resolution, seed)
        params: dict[str, float | int] = {"resolution": resolution}
    else:
        chosen = k if k is not None else _silhouette_k(z, seed)
        labels = _kmeans(z, chosen, seed)
        params = {"k": chosen, "k_chosen_by": "given" if k else "silhouette"}  # type: ignore[dict-item]
    labels = _by_size(labels)
    centres = np.stack([z[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    return NicheModel(
        method="leiden" if resolution is not None else "kmeans",
        labels=labels,
        centres=centres,
        mean=mean,
        scale=scale,
        components=components,
        params=params,
    )


def niche_profiles(
    labels: np.ndarray, states: np.ndarray, state_names: Sequence[str]
) -> pd.DataFrame:
    """Niche × state: each niche's mean state, in standard deviations from the cohort mean."""
    z = _zscore(states)
    k = int(labels.max()) + 1
    table = np.stack([z[labels == c].mean(axis=0) for c in range(k)])
    return pd.DataFrame(table, index=pd.RangeIndex(k, name="niche"), columns=list(state_names))


def top_genes(
    labels: np.ndarray, expression: np.ndarray, genes: Sequence[str], *, n: int = 5
) -> dict[int, list[str]]:
    """Each niche's ``n`` genes most above the cohort mean (z-scored predicted expression)."""
    if not len(genes):
        return {c: [] for c in range(int(labels.max()) + 1)}
    z = _zscore(expression)
    out = {}
    for c in range(int(labels.max()) + 1):
        means = z[labels == c].mean(axis=0)
        order = np.argsort(-means)[:n]
        out[c] = [str(genes[j]) for j in order if means[j] > 0]
    return out


def niche_names(profiles: pd.DataFrame, *, n_states: int = 2, threshold: float = 0.25) -> list[str]:
    """Readable names from each niche's highest states, e.g. ``"N2 tumour+ t_cells+"``."""
    names = []
    for niche, row in profiles.iterrows():
        high = row.sort_values(ascending=False)
        picked = [f"{state}+" for state, value in high.items() if value >= threshold][:n_states]
        if not picked:
            low = row.sort_values().index[0]
            picked = [f"{low}-"]
        names.append(f"N{niche} {' '.join(picked)}")
    return names


def composition(labels_by_sample: Mapping[str, np.ndarray], k: int) -> pd.DataFrame:
    """Sample × niche: the fraction of each sample's spots in each niche."""
    rows = {
        sample: np.bincount(labels, minlength=k) / max(len(labels), 1)
        for sample, labels in labels_by_sample.items()
    }
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=range(k))
    frame.index.name = "sample"
    frame.columns.name = "niche"
    return frame


def _projection(
    x: np.ndarray, seed: int, *, scale_columns: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    mean = x.mean(axis=0)
    scale = x.std(axis=0) if scale_columns else np.ones(x.shape[1])
    scale[scale < 1e-9] = 1.0
    components = min(N_COMPONENTS, x.shape[1], x.shape[0] - 1)
    pca = PCA(n_components=components, random_state=seed).fit((x - mean) / scale)
    return mean, scale, np.asarray(pca.components_)


def _kmeans(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return np.asarray(KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(z))


def _silhouette_k(z: np.ndarray, seed: int) -> int:
    """The k of :data:`K_RANGE` with the best silhouette on a sample of rows."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(z), size=min(SILHOUETTE_ROWS, len(z)), replace=False)
    best, best_score = K_RANGE[0], -np.inf
    for k in K_RANGE:
        if k >= len(rows) // 5:
            break
        labels = _kmeans(z, k, seed)
        if len(np.unique(labels[rows])) < 2:
            continue
        score = float(silhouette_score(z[rows], labels[rows]))
        if score > best_score:
            best, best_score = k, score
    return best


def _leiden(z: np.ndarray, resolution: float, seed: int) -> np.ndarray:
    """Leiden (RB configuration model) on the symmetric k-nearest-neighbour graph of ``z``."""
    try:
        import igraph
        import leidenalg
    except ImportError as error:
        raise MissingDependencyError(
            f"Leiden niches need igraph and leidenalg ({error.name} is missing): "
            "`pip install 'tmescope[leiden]'`, or give --k for k-means niches"
        ) from error
    from sklearn.neighbors import NearestNeighbors

    k = min(LEIDEN_NEIGHBOURS, len(z) - 1)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    source = np.repeat(np.arange(len(z)), k)
    target = neighbours[:, 1:].ravel()
    edges = np.unique(np.sort(np.column_stack([source, target]), axis=1), axis=0)
    graph = igraph.Graph(n=len(z), edges=edges.tolist(), directed=False)
    partition = leidenalg.find_partition(
        graph, leidenalg.RBConfigurationVertexPartition, resolution_parameter=resolution,
        seed=seed, n_iterations=-1,
    )  # fmt: skip
    return np.asarray(partition.membership, dtype=np.int64)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0.. from the largest down, so numbering is stable and readable."""
    ids, counts = np.unique(labels, return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping[int(v)] for v in labels], dtype=np.int64)


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    std[std < 1e-12] = 1.0
    return (x - x.mean(axis=0)) / std
