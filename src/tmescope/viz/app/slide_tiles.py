"""Deep-zoom tiles, thumbnails and patches of a stored sample's slide, as JPEG, cached in memory.

The deep-zoom image lives in the sample's full-resolution pixel frame (the frame of the spot
coordinates), whatever image the slide is: the full-resolution TIFF or a Space Ranger PNG
(``image_scale`` maps the frame onto it). Level ``max_level`` is that frame at 1:1, each level
below halves it, level 0 is one pixel, as in Deep Zoom (DZI); tiles are ``TILE_PX`` squares
without overlap, cropped at the right and bottom edges. Every tile is read lazily from the best
pyramid level of the slide, so no whole image is ever decoded. Tiles are kept up to
:data:`CACHE_BYTES` in all, and each sample's thumbnail once made (it reads the whole slide).
"""

from __future__ import annotations

import io
import math
import threading
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tmescope.errors import InvalidParameterError
from tmescope.io import Sample
from tmescope.io.reopen import reopen_sample
from tmescope.io.slide_sample import SlideSample
from tmescope.store import CohortStore
from tmescope.viz.app.kept import Kept, KeptBytes

TILE_PX = 256
JPEG_QUALITY = 85
THUMBNAIL_PX = 1024  # long side of a whole-slide thumbnail
PATCH_PX = (32, 512)  # the sizes a patch (similar-region thumbnail) may be asked at
CACHE_BYTES = 64 << 20  # ~3,000 tiles of ~20 kB: what a few screens of panning revisit
THUMBNAILS_KEPT = 32  # ~100 kB each


@dataclass(frozen=True)
class DeepZoom:
    """The geometry of a sample's tile pyramid."""

    width: int  # full-resolution pixels
    height: int
    tile_size: int
    max_level: int

    def level_size(self, level: int) -> tuple[int, int]:
        scale = 2.0 ** (self.max_level - level)
        return max(1, math.ceil(self.width / scale)), max(1, math.ceil(self.height / scale))

    def grid(self, level: int) -> tuple[int, int]:
        """``(columns, rows)`` of tiles at ``level``."""
        w, h = self.level_size(level)
        return math.ceil(w / self.tile_size), math.ceil(h / self.tile_size)

    def check_tile(self, level: int, col: int, row: int) -> None:
        """An :class:`InvalidParameterError` unless the tile exists."""
        if not 0 <= level <= self.max_level:
            raise InvalidParameterError(f"level must be 0 to {self.max_level}, got {level}")
        cols, rows = self.grid(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise InvalidParameterError(
                f"level {level} has tiles 0–{cols - 1} × 0–{rows - 1}, got {col}_{row}"
            )


class SlideTiles:
    """Opens each sample's slide once, on first use, and serves JPEG bytes cut from it.

    Thread-safe: requests arrive on a thread pool, and slide readers share file handles, so each
    sample's reads are serialised by its own lock while other samples go on in parallel.
    """

    def __init__(self, store: CohortStore, *, cache_bytes: int = CACHE_BYTES) -> None:
        self._store = store
        self._stack = ExitStack()
        self._opened: dict[str, tuple[Sample | SlideSample, DeepZoom, threading.Lock]] = {}
        self._opening = threading.Lock()
        self._tiles: KeptBytes[tuple[str, int, int, int]] = KeptBytes(cache_bytes)
        # A thumbnail decodes a whole pyramid level: once per sample, not once per request
        # (a burst of them held a level per worker thread, hundreds of MB).
        self._thumbnails: Kept[tuple[str, int], bytes] = Kept(THUMBNAILS_KEPT)

    def deep_zoom(self, sample_id: str) -> DeepZoom:
        return self._sample(sample_id)[1]

    def tile(self, sample_id: str, level: int, col: int, row: int) -> bytes:
        """The JPEG of one tile (checked against the pyramid first)."""
        key = (sample_id, level, col, row)
        cached = self._tiles.get(key)
        if cached is not None:
            return cached
        sample, dz, lock = self._sample(sample_id)
        dz.check_tile(level, col, row)
        scale = 2.0 ** (dz.max_level - level)  # full-res px per level px
        level_w, level_h = dz.level_size(level)
        x0, y0 = col * dz.tile_size, row * dz.tile_size
        w, h = min(dz.tile_size, level_w - x0), min(dz.tile_size, level_h - y0)
        s = sample.image_scale
        with lock:
            pixels = sample.slide.read_region(
                x0 * scale * s, y0 * scale * s, w * scale * s, h * scale * s, size=(w, h)
            )
        data = _jpeg(pixels)
        self._tiles.put(key, data)
        return data

    def thumbnail(self, sample_id: str, *, max_px: int = THUMBNAIL_PX) -> bytes:
        """The whole slide, its long side ``max_px`` at most."""
        sample, _, lock = self._sample(sample_id)

        def make() -> bytes:
            with lock:
                pixels = sample.slide.thumbnail(max_px)
            return _jpeg(pixels)

        return self._thumbnails.get((sample_id, max_px), make)

    def patch(self, sample_id: str, x: float, y: float, *, size_px: int) -> bytes:
        """The embedding's field of view centred on full-resolution pixel ``(x, y)``."""
        lo, hi = PATCH_PX
        if not lo <= size_px <= hi:
            raise InvalidParameterError(f"size must be {lo} to {hi} pixels, got {size_px}")
        sample, dz, lock = self._sample(sample_id)
        if not (0 <= x <= dz.width and 0 <= y <= dz.height):
            raise InvalidParameterError(
                f"({x:g}, {y:g}) lies outside {sample_id}'s image of {dz.width} × {dz.height} px"
            )
        patch_um = float(self._store.sample_record(sample_id).meta.patch_um)
        with lock:
            return _jpeg(sample.read_patch(x, y, size_um=patch_um, size_px=size_px))

    def close(self) -> None:
        """Release every slide's file handles."""
        with self._opening:
            self._stack.close()
            self._opened.clear()

    def _sample(self, sample_id: str) -> tuple[Sample | SlideSample, DeepZoom, threading.Lock]:
        opened = self._opened.get(sample_id)
        if opened is not None:
            return opened
        with self._opening:
            if sample_id not in self._opened:
                sample = _open_sample(self._store, sample_id)
                self._stack.enter_context(sample)
                width = round(sample.slide.width / sample.image_scale)
                height = round(sample.slide.height / sample.image_scale)
                max_level = math.ceil(math.log2(max(width, height, 2)))
                dz = DeepZoom(width, height, TILE_PX, max_level)
                self._opened[sample_id] = (sample, dz, threading.Lock())
            return self._opened[sample_id]


def _open_sample(store: CohortStore, sample_id: str) -> Sample | SlideSample:
    """The sample's Space Ranger run, read with the image it was embedded from (or its H&E-only
    slide)."""
    meta = store.sample_record(sample_id).meta
    return reopen_sample(meta.source_path, extra=meta.extra, mpp=meta.mpp)


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
