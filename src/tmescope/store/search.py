"""Similarity search over a cohort store: query vectors from a spot or a region, then search.

``search`` loads the index (see ``index.py``) and returns :class:`SearchResult` lists; load it
once with :func:`load_index` to run many queries. ``spot_vector`` and ``region_vector`` make a
query from what is already in the store.
"""

from __future__ import annotations

import difflib
import math

import numpy as np

from tmescope.errors import InvalidParameterError, SampleNotFoundError, SpotNotFoundError
from tmescope.store.feature_store import CohortStore
from tmescope.store.index import SearchResult, load_index, results_frame

__all__ = [
    "SearchResult",
    "region_vector",
    "results_frame",
    "search",
    "spot_row",
    "spot_vector",
]


def search(
    store: CohortStore, queries: np.ndarray, *, k: int, exclude_sample: str | None = None
) -> list[list[SearchResult]]:
    """The ``k`` rows most similar (cosine) to each query, best first, one list per query.

    Warns (:class:`StaleIndexWarning`) when the index is out of date; raises
    :class:`IndexMissingError` when the store has none. ``exclude_sample`` leaves that
    sample's rows out (still returning ``k`` rows from the others).
    """
    return load_index(store).search(queries, k=k, exclude_sample=exclude_sample)


def spot_row(store: CohortStore, sample_id: str, barcode: str) -> int:
    """The row of a spot barcode (or ``tile_<i>``) in its sample; close names on a miss."""
    _check_sample(store, sample_id)
    barcodes = store.read_barcodes(sample_id)
    hits = np.flatnonzero(barcodes == barcode)
    if hits.size == 0:
        close = _close(str(barcode), barcodes.tolist())
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise SpotNotFoundError(f"no barcode {barcode!r} in sample {sample_id!r}{hint}")
    return int(hits[0])


def spot_vector(store: CohortStore, sample_id: str, barcode: str) -> np.ndarray:
    """The L2-normalised float32 embedding of one row (a spot barcode or ``tile_<i>``)."""
    row = spot_row(store, sample_id, barcode)
    vector = np.asarray(store.read_embeddings(sample_id)[row], dtype=np.float32)
    return _normalised(vector[None, :])[0]


def region_vector(
    store: CohortStore, sample_id: str, x: float, y: float, radius_um: float
) -> np.ndarray:
    """The mean of the normalised embeddings of the rows whose centre lies in a disc.

    ``x``, ``y`` are full-resolution pixels; ``radius_um`` micrometres, converted with the
    sample's µm/px (``mpp``).
    """
    for name, value in (("x", x), ("y", y), ("radius_um", radius_um)):
        if not (isinstance(value, int | float | np.number) and math.isfinite(float(value))):
            raise InvalidParameterError(f"{name} must be a finite number, got {value!r}")
    if radius_um <= 0:
        raise InvalidParameterError(f"radius_um must be positive, got {radius_um!r}")
    _check_sample(store, sample_id)
    mpp = store.sample_record(sample_id).meta.mpp
    radius_px = float(radius_um) / mpp
    coords = store.read_coords(sample_id).astype(np.float64)
    distance = np.hypot(coords[:, 0] - float(x), coords[:, 1] - float(y))
    inside = np.flatnonzero(distance <= radius_px)
    if inside.size == 0:
        nearest = float(distance.min()) * mpp if distance.size else math.inf
        raise SpotNotFoundError(
            f"no row of sample {sample_id!r} lies within {radius_um:g} µm ({radius_px:.1f} px) of "
            f"({x:g}, {y:g}); the nearest is {nearest:.1f} µm away: widen the radius or move "
            "the centre"
        )
    vectors = np.asarray(store.read_embeddings(sample_id)[inside], dtype=np.float32)
    return _normalised(vectors).mean(axis=0)


def _check_sample(store: CohortStore, sample_id: str) -> None:
    known = store.sample_ids()
    if sample_id not in known:
        close = _close(str(sample_id), known)
        hint = (
            f"did you mean {', '.join(map(repr, close))}?"
            if close
            else f"complete samples: {', '.join(known) or 'none'}"
        )
        raise SampleNotFoundError(f"no complete sample {sample_id!r} in {store.path}; {hint}")


def _close(name: str, names: list[str]) -> list[str]:
    """Up to three of ``names`` closest to ``name``, ignoring case."""
    lowered: dict[str, str] = {}
    for candidate in names:
        lowered.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=3)
    return [lowered[m] for m in matches]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.isfinite(vectors).all() or (norms == 0).any():
        raise InvalidParameterError("the stored embedding is zero or not finite; verify the store")
    return vectors / norms
