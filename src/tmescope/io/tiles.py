"""Decode each tile of a tiled TIFF page once: a bounded, thread-safe cache of decoded tiles.

Cutting many overlapping patches from a slide through a generic array interface decodes the
same JPEG tile again for every patch that touches it. Reading compressed tiles with ``pread``
and keeping the decoded ones in an LRU cache makes each tile cost one decode when patches are
visited in raster order, and ``pread`` plus a GIL-releasing decoder lets several threads read
one slide at once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import tifffile

from tmescope.io.slide import BACKGROUND, to_rgb_uint8

DEFAULT_CACHE_BYTES = 96 * 2**20


class TileCache:
    """Decoded RGB tiles of one tiled TIFF page, read on demand and kept while there is room."""

    def __init__(
        self, path: Path, page: tifffile.TiffPage, *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ):
        self._page = page
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tile_w, self.tile_h = int(page.tilewidth), int(page.tilelength)
        self.tiles_across = -(-self.width // self.tile_w)
        self.tiles_down = -(-self.height // self.tile_h)
        self._offsets = page.dataoffsets
        self._counts = page.databytecounts
        self._jpegtables = page.jpegtables
        self._capacity = max(8, cache_bytes // (self.tile_w * self.tile_h * 3))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_RDONLY)
        self.decoded = 0  # tiles decoded so far: lets benchmarks check "once per tile"

    @staticmethod
    def supports(page: tifffile.TiffPage) -> bool:
        """Whether tiles of ``page`` can be decoded one by one as interleaved RGB(A)/grey."""
        return bool(
            page.is_tiled
            and page.planarconfig == tifffile.PLANARCONFIG.CONTIG
            and page.imagedepth == 1
            and len(page.dataoffsets)
            == -(-page.imagewidth // page.tilewidth) * -(-page.imagelength // page.tilelength)
        )

    def tile(self, row: int, col: int) -> np.ndarray:
        """The decoded tile at tile row ``row``, column ``col``: ``(tile_h, tile_w, 3)`` uint8."""
        index = row * self.tiles_across + col
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
        decoded = self._decode(index)  # outside the lock: decoders release the GIL
        with self._lock:
            self._cache[index] = decoded
            self._cache.move_to_end(index)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
            self.decoded += 1
        return decoded

    def _decode(self, index: int) -> np.ndarray:
        count = int(self._counts[index])
        if count == 0:  # sparse TIFFs leave empty tiles out
            return np.full((self.tile_h, self.tile_w, 3), BACKGROUND, dtype=np.uint8)
        data = os.pread(self._fd, count, int(self._offsets[index]))
        pixels, _, _ = self._page.decode(data, index, jpegtables=self._jpegtables)
        if pixels is None:
            return np.full((self.tile_h, self.tile_w, 3), BACKGROUND, dtype=np.uint8)
        return to_rgb_uint8(np.asarray(pixels).reshape(self.tile_h, self.tile_w, -1))

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` (inside the image) assembled from cached tiles."""
        out = np.empty((y1 - y0, x1 - x0, 3), dtype=np.uint8)
        for row in range(y0 // self.tile_h, (y1 - 1) // self.tile_h + 1):
            ty0 = row * self.tile_h
            for col in range(x0 // self.tile_w, (x1 - 1) // self.tile_w + 1):
                tx0 = col * self.tile_w
                tile = self.tile(row, col)
                sy0, sy1 = max(y0, ty0), min(y1, ty0 + self.tile_h)
                sx0, sx1 = max(x0, tx0), min(x1, tx0 + self.tile_w)
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[
                    sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0
                ]
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cache.clear()
