"""A SpatialData image element (multiscale or not) as a lazily read :class:`Slide`.

The element is an xarray ``DataTree`` of levels ``scale0``, ``scale1`` … (or one ``DataArray``)
of ``(c, y, x)`` dask arrays backed by the zarr store. A read decodes only the chunks under the
window, each once while it stays in a small LRU cache (patches of neighbouring spots share
chunks), and computes them in the calling thread: inside a Dask worker, dask's default scheduler
would hand each read to the cluster.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from tmescope.errors import SlideReadError
from tmescope.io._messages import first_line
from tmescope.io.slide import Slide, SlideLevel, padded_read, to_rgb_uint8
from tmescope.io.tiles import DEFAULT_CACHE_BYTES


class ZarrSlide(Slide):
    """The image element at ``path`` (``SD.zarr/images/<name>``): level ``k`` is ``scale<k>``."""

    backend = "spatialdata"

    def __init__(self, element: Any, *, path: Path, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.path = path
        self.mpp, self.mpp_source = None, None  # the element carries no µm/px of its own
        self._arrays = [_cyx(level, path) for level in image_levels(element)]  # (c, y, x) each
        width, height = self._arrays[0].shape[2], self._arrays[0].shape[1]
        if min(width, height) < 1:
            raise SlideReadError(f"{path} holds an empty image ({width}×{height} px)")
        self.levels = tuple(
            SlideLevel(width=a.shape[2], height=a.shape[1], downsample=width / a.shape[2])
            for a in self._arrays
        )
        self._bounds = [
            (np.cumsum((0, *a.chunks[1])), np.cumsum((0, *a.chunks[2]))) for a in self._arrays
        ]
        block = max(int(np.prod(a.chunksize)) for a in self._arrays)
        self._capacity = max(1, cache_bytes // max(1, block))
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        lvl = self.levels[level]

        def read(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
            return self._assemble(level, x0, y0, x1, y1)

        return padded_read(read, (lvl.width, lvl.height), x, y, width, height)

    def _assemble(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` (inside the level) from the chunks under them."""
        rows, cols = self._bounds[level]
        out = np.empty((y1 - y0, x1 - x0, 3), dtype=np.uint8)
        for i in range(int(np.searchsorted(rows, y0, "right")) - 1, len(rows) - 1):
            by0, by1 = int(rows[i]), int(rows[i + 1])
            if by0 >= y1:
                break
            for j in range(int(np.searchsorted(cols, x0, "right")) - 1, len(cols) - 1):
                bx0, bx1 = int(cols[j]), int(cols[j + 1])
                if bx0 >= x1:
                    break
                block = self._block(level, i, j)  # (by1 - by0, bx1 - bx0, 3)
                sy0, sy1, sx0, sx1 = max(y0, by0), min(y1, by1), max(x0, bx0), min(x1, bx1)
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = block[
                    sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0
                ]
        return out

    def _block(self, level: int, i: int, j: int) -> np.ndarray:
        key = (level, i, j)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        try:  # decoded outside the lock: zarr's codecs release the GIL
            pixels = self._arrays[level].blocks[0, i, j].compute(scheduler="synchronous")
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise SlideReadError(
                f"could not read a chunk of {self.path} (level {level}; {first_line(exc)}); the "
                "zarr store is damaged or incomplete; copy or write it again"
            ) from exc
        rgb = to_rgb_uint8(np.moveaxis(np.asarray(pixels), 0, -1))  # (h, w, 3)
        with self._lock:
            self._cache[key] = rgb
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return rgb

    def close(self) -> None:
        with self._lock:
            self._cache.clear()


def image_levels(element: Any) -> list[Any]:
    """The ``DataArray`` of each level of an image element, finest first."""
    if hasattr(element, "children") and element.children:  # a multiscale DataTree
        levels = [next(iter(element[name].data_vars.values())) for name in element.children]
        return sorted(levels, key=lambda level: -int(level.sizes["x"]))
    return [element]


def _cyx(level: Any, path: Path) -> Any:
    """The level's dask array as ``(c, y, x)``, its channels in one chunk."""
    dims = tuple(level.dims)
    if set(dims) != {"c", "y", "x"}:
        raise SlideReadError(
            f"{path} has axes {dims}; expected a 2D image (c, y, x); a 3D (z) image is not an H&E"
        )
    data = level.transpose("c", "y", "x").data
    if hasattr(data, "rechunk") and len(data.chunks[0]) > 1:
        data = data.rechunk({0: data.shape[0]})
    if not hasattr(data, "blocks"):  # an in-memory element: one chunk per level
        import dask.array as da

        data = da.from_array(np.asarray(data), chunks=data.shape)
    return data
