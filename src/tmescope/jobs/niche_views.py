"""What niches are clustered on: the model's fused view, the image alone, the measured expression
alone, or image and expression jointly.

- ``fused``: the head's hidden representation of each spot (its image and its neighbours'),
  as ``tmescope niches`` has always used;
- ``image``: the foundation model's embedding of each spot's patch, straight from the store;
- ``expression``: the spot's measured counts, library-size normalised and log1p, on the genes
  every sample measures, the most variable over the cohort (no label, no model: niches are
  unsupervised, so nothing is held out);
- ``joint``: the image and the expression, each reduced to the same number of principal
  components and scaled to the same total variance, side by side, so neither view outweighs
  the other by its width.

Only spots enter: grid tiles and H&E-only samples have no measured expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tmescope.errors import InvalidParameterError, TrainingDataError

if TYPE_CHECKING:
    from tmescope.jobs.fused import FusedCohort
    from tmescope.store import CohortStore

VIEWS = ("fused", "image", "expression", "joint")
N_GENES = 2000  # most variable genes of the expression view
N_COMPONENTS = 30  # principal components per view in the joint view


def check_view(view: str) -> str:
    if view not in VIEWS:
        raise InvalidParameterError(f"--view must be one of {', '.join(VIEWS)}, got {view!r}")
    return view


def spot_view(store: CohortStore, cohort: FusedCohort, view: str) -> dict[str, np.ndarray]:
    """Each sample's ``(n_spots, d)`` matrix of ``view``, rows in the fused set's spot order."""
    check_view(view)
    if view == "fused":
        return {s: r.data.fused[r.is_spot] for s, r in cohort.samples.items()}
    if view == "image":
        return _image(store, cohort)
    expression = _expression(store, cohort)
    if view == "expression":
        return expression
    return _joint([_image(store, cohort), expression])


def _image(store: CohortStore, cohort: FusedCohort) -> dict[str, np.ndarray]:
    out = {}
    for sid, rows in cohort.samples.items():
        embeddings = store.read_embeddings(sid)
        barcodes = store.read_barcodes(sid)
        where = {str(b): i for i, b in enumerate(barcodes)}
        out[sid] = np.asarray(
            embeddings[[where[str(n)] for n in rows.names[rows.is_spot]]], dtype=np.float32
        )
    return out


def _expression(store: CohortStore, cohort: FusedCohort) -> dict[str, np.ndarray]:
    from tmescope.fusion.cohort import read_spot_table

    # read_spot_table refuses a sample without counts, saying so.
    tables = {sid: read_spot_table(store, sid) for sid in cohort.samples}
    genes = sorted(set.intersection(*(set(t.genes) for t in tables.values())))
    if len(genes) < 10:
        raise TrainingDataError(
            f"the samples share {len(genes)} measured genes: expression niches need at least 10"
        )
    logged = {}
    for sid, table in tables.items():
        assert table.counts is not None
        column = {g: i for i, g in enumerate(table.genes)}
        counts = table.counts[:, [column[g] for g in genes]].toarray().astype(np.float64)
        library = np.maximum(table.counts.sum(axis=1).A.ravel(), 1.0)
        normalised = np.log1p(counts / library[:, None] * 1e4)
        order = {str(b): i for i, b in enumerate(table.barcodes)}
        rows = cohort.samples[sid]
        logged[sid] = normalised[[order[str(n)] for n in rows.names[rows.is_spot]]]
    variance = np.concatenate(list(logged.values())).var(axis=0)
    keep = np.argsort(-variance)[:N_GENES]
    return {sid: x[:, keep].astype(np.float32) for sid, x in logged.items()}


def _joint(views: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each view standardised, reduced to :data:`N_COMPONENTS` components and scaled to unit
    total variance, then concatenated."""
    from sklearn.decomposition import PCA

    samples = list(views[0])
    blocks = []
    for view in views:
        stacked = np.concatenate([view[s] for s in samples]).astype(np.float64)
        std = stacked.std(axis=0)
        std[std < 1e-9] = 1.0
        z = (stacked - stacked.mean(axis=0)) / std
        k = min(N_COMPONENTS, z.shape[1], z.shape[0] - 1)
        reduced = PCA(n_components=k, random_state=0).fit_transform(z)
        blocks.append(reduced / np.sqrt(max(reduced.var(axis=0).sum(), 1e-12)))
    joint = np.concatenate(blocks, axis=1).astype(np.float32)
    sizes = np.cumsum([0] + [len(views[0][s]) for s in samples])
    return {s: joint[sizes[i] : sizes[i + 1]] for i, s in enumerate(samples)}
