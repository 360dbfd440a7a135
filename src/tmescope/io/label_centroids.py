"""The cells of a SpatialData labels element (a segmentation mask: spatialdata-io's Xenium
``cell_labels``, CosMx's): each label's centroid and size, summed a stored chunk at a time.

A Xenium mask is about 50,000 × 40,000 int32 pixels (8 GB); ``spatialdata.get_centroids``
computes the whole of it at once (then ``np.unique`` over every pixel), so it is the tests'
oracle, not the reader: here each chunk gives per-label pixel counts and sums of x and y, which
add up across chunks. Memory: a few copies of one chunk, and a few numbers per label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tmescope.errors import CountsFormatError
from tmescope.io._messages import first_line
from tmescope.io.zarr_slide import image_levels


def read_labels(path: Path, region: str) -> Any:
    """The labels element ``region`` of the SpatialData at ``path``, lazily (dask arrays), its
    transformations attached."""
    import spatialdata as sd

    # spatialdata's public reader; only the labels' metadata is read, their pixels stay on disk
    try:
        labels = sd.read_zarr(path, selection=("labels",)).labels
        return labels[region]
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise CountsFormatError(
            f"could not read labels {region!r} of {path.name} ({first_line(exc)}); write it again"
        ) from exc


def label_centroids(element: Any, *, what: str) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """``(n, 2)`` x, y centres (pixel ``(i, j)``'s centre is ``(j + 0.5, i + 0.5)``, as in
    spatialdata), ``(n,)`` sizes (√pixels, a polygon's √area) and the label ids of the cells of
    ``element``'s finest level, in the element's intrinsic frame; label 0 is background."""
    level = image_levels(element)[0]
    if tuple(level.dims) != ("y", "x"):
        raise CountsFormatError(
            f"{what} has axes {tuple(level.dims)}; expected a 2D mask (y, x), not a 3D one"
        )
    ids, count, sum_x, sum_y = mask_sums(level.data)
    keep = ids != 0
    ids, count = ids[keep], count[keep]
    centres = np.column_stack([sum_x[keep], sum_y[keep]]) / count[:, None] + 0.5
    return centres, np.sqrt(count), pd.Index(ids)


def mask_sums(mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each label of the ``(y, x)`` integer ``mask`` (a dask or numpy array): its id, pixel
    count and sums of column and row indices, sorted by id; computed a chunk at a time."""
    import dask.array as da

    if not isinstance(mask, da.Array):
        mask = da.from_array(np.asarray(mask), chunks=mask.shape)
    if not np.issubdtype(mask.dtype, np.integer):
        raise CountsFormatError(f"a labels mask of {mask.dtype}; expected integer label ids")
    if mask.size == 0:
        raise CountsFormatError("an empty labels mask (0 pixels); expected the section's cells")
    rows, cols = np.cumsum((0, *mask.chunks[0])), np.cumsum((0, *mask.chunks[1]))
    parts = []
    for i in range(len(rows) - 1):
        for j in range(len(cols) - 1):
            # synchronous: inside a Dask worker the default scheduler would hand it to the cluster
            block = np.asarray(mask.blocks[i, j].compute(scheduler="synchronous"))
            parts.append(_block_sums(block, int(rows[i]), int(cols[j])))
    ids, inverse = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
    count, sum_x, sum_y = (
        np.bincount(inverse, weights=np.concatenate([p[k] for p in parts])) for k in (1, 2, 3)
    )
    return ids, count, sum_x, sum_y


def _block_sums(block: np.ndarray, y0: int, x0: int) -> tuple[np.ndarray, ...]:
    """Ids, pixel counts and sums of x and y (whole-mask indices) of the labels of ``block``."""
    flat = block.ravel()
    low, high = int(flat.min()), int(flat.max())
    if high - low < flat.size:  # dense ids (the usual mask): bincount needs no sort
        codes, ids = (flat - low).astype(np.intp), None
    else:  # sparse ids (CosMx's per-FOV offsets): number them first
        ids, codes = np.unique(flat, return_inverse=True)
    h, w = block.shape
    count = np.bincount(codes)
    x = np.bincount(codes, weights=np.tile(np.arange(w, dtype=np.float64), h))
    y = np.bincount(codes, weights=np.repeat(np.arange(h, dtype=np.float64), w))
    if ids is None:
        present = np.flatnonzero(count)
        ids, count, x, y = present + low, count[present], x[present], y[present]
    # local indices summed, then shifted by the chunk's offset once per label
    return ids.astype(np.int64), count.astype(np.float64), x + x0 * count, y + y0 * count
