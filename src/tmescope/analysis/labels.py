"""Labelled spots as every spatial statistic takes them, checked once.

Each statistic is computed per sample but reported on a category axis shared by the cohort, so
that matrices of different samples line up; categories absent from a sample are left undefined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tmescope.errors import InvalidParameterError


@dataclass(frozen=True)
class LabelledSpots:
    """Spot positions with one label each, the category axis and the categories present."""

    coords: np.ndarray  # (n, 2) float64, micrometres
    labels: np.ndarray  # (n,) object array of str
    categories: tuple[str, ...]  # the axis of the result
    present: tuple[str, ...]  # categories with at least one spot, in axis order

    def positions(self) -> np.ndarray:
        """Indices of the present categories on the axis."""
        return np.asarray([self.categories.index(c) for c in self.present])


def labelled_spots(
    coords_um: np.ndarray,
    labels: Sequence[str],
    *,
    categories: Sequence[str] | None,
    sample_id: str | None,
    what: str,
) -> LabelledSpots:
    """Check positions and labels; at least 2 categories must be present (``what`` needs them)."""
    coords = np.asarray(coords_um, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InvalidParameterError(
            f"coords_um must be (n_spots, 2); found shape {coords.shape}. Pass x, y in micrometres."
        )
    labels_arr = np.asarray([str(label) for label in labels], dtype=object)
    if labels_arr.shape[0] != coords.shape[0]:
        raise InvalidParameterError(
            f"labels must have one entry per spot ({coords.shape[0]}); found {labels_arr.shape[0]}. "
            "Pass the labels in the order of coords_um."
        )
    cats = category_axis(labels_arr, categories)
    present = tuple(c for c in cats if np.any(labels_arr == c))
    if len(present) < 2:
        raise InvalidParameterError(
            f"{what} at least 2 populations present; found {len(present)} "
            f"({list(present)}) in sample {sample_id!r}. Skip this sample or label more populations."
        )
    return LabelledSpots(coords, labels_arr, cats, present)


def category_axis(labels: np.ndarray, categories: Sequence[str] | None) -> tuple[str, ...]:
    """The category axis of a result: ``categories`` as given (checked), else the sorted labels."""
    if categories is None:
        return tuple(sorted(set(labels.tolist())))
    cats = tuple(str(c) for c in categories)
    if len(set(cats)) != len(cats):
        raise InvalidParameterError(f"categories must be unique; found {list(cats)}.")
    unknown = sorted(set(labels.tolist()) - set(cats))
    if unknown:
        raise InvalidParameterError(
            f"every label must be one of categories {list(cats)}; found also {unknown}. "
            "Add them to categories or relabel those spots."
        )
    return cats
