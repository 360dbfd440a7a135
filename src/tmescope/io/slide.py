"""Lazy slide readers: regions at a requested resolution from the best pyramid level.

A :class:`Slide` never loads a whole pyramidal image: regions are read tile by tile through
tifffile's zarr interface (TIFF, SVS, OME-TIFF), OpenSlide (NDPI, MRXS, … with the ``slides``
extra), or PIL for small PNG/JPEG images. Every read returns RGB ``uint8`` of shape ``(h, w, 3)``;
pixels outside the image are white, the colour of glass.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
from PIL import Image

BACKGROUND = 255  # white glass behind the tissue


@dataclass(frozen=True)
class SlideLevel:
    """One level of an image pyramid; ``downsample`` is relative to level 0."""

    width: int
    height: int
    downsample: float


class Slide(ABC):
    """A lazily read RGB image with zero or more reduced-resolution levels.

    Coordinates are level-0 pixels of this image, ``x`` to the right and ``y`` down.
    """

    path: Path
    levels: tuple[SlideLevel, ...]
    mpp: float | None  # µm per level-0 pixel from the file's own metadata, if it has any
    mpp_source: str | None
    backend: str

    @property
    def width(self) -> int:
        return self.levels[0].width

    @property
    def height(self) -> int:
        return self.levels[0].height

    @abstractmethod
    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Read a box given in pixels of ``level``; the part inside the image, padded white."""

    def close(self) -> None:  # noqa: B027 - backends without handles need nothing
        """Release file handles."""

    def check_complete(self) -> None:  # noqa: B027 - formats without an index cannot tell
        """Raise :class:`~tmescope.errors.SlideReadError` when the file is cut short (a copy
        that stopped), before any pixel is read; backends that cannot tell accept it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def best_level(self, downsample: float) -> int:
        """The coarsest level whose resolution is still at least that of ``downsample``."""
        fine_enough = [
            i for i, level in enumerate(self.levels) if level.downsample <= downsample * (1 + 1e-3)
        ]
        return max(fine_enough, key=lambda i: self.levels[i].downsample, default=0)

    def read_region(
        self, x: float, y: float, width: float, height: float, *, size: tuple[int, int]
    ) -> np.ndarray:
        """Read the level-0 box ``(x, y, width, height)`` resampled to ``size = (w, h)`` pixels.

        The box may run off the image (padded white) and need not fall on whole pixels.
        Returns ``(h, w, 3)`` uint8.
        """
        out_w, out_h = size
        if out_w <= 0 or out_h <= 0 or width <= 0 or height <= 0:
            raise ValueError(
                f"region and output size must be positive, got {width}x{height} -> {size}"
            )
        level = self.best_level(min(width / out_w, height / out_h))
        d = self.levels[level].downsample
        bx, by, bw, bh = x / d, y / d, width / d, height / d
        if math.isclose(bw, out_w, abs_tol=1e-6) and math.isclose(bh, out_h, abs_tol=1e-6):
            # Already at the requested resolution: snap to the nearest pixel instead of
            # resampling by a sub-pixel shift, which no model can tell apart.
            return self.read_level(level, round(bx), round(by), out_w, out_h)
        ix, iy = math.floor(bx), math.floor(by)
        iw, ih = math.ceil(bx + bw) - ix, math.ceil(by + bh) - iy
        pixels = self.read_level(level, ix, iy, iw, ih)
        if (iw, ih) == (out_w, out_h) and (bx, by) == (ix, iy):
            return pixels
        box = (bx - ix, by - iy, bx - ix + bw, by - iy + bh)
        resized = Image.fromarray(pixels).resize((out_w, out_h), Image.Resampling.BILINEAR, box=box)
        return np.asarray(resized)

    def thumbnail(self, max_size: int) -> np.ndarray:
        """The whole image, its long side ``max_size`` pixels at most."""
        scale = min(1.0, max_size / max(self.width, self.height))
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        return self.read_region(0, 0, self.width, self.height, size=size)


BoxReader = Callable[[int, int, int, int], np.ndarray]
"""Reads ``[y0:y1, x0:x1]`` of one level as RGB uint8, given ``(x0, y0, x1, y1)``."""


def padded_read(
    array_reader: BoxReader, level_size: tuple[int, int], x: int, y: int, width: int, height: int
) -> np.ndarray:
    """Read the in-image part of a box through ``array_reader`` and pad the rest white."""
    level_w, level_h = level_size
    if x >= 0 and y >= 0 and x + width <= level_w and y + height <= level_h:
        return array_reader(x, y, x + width, y + height)  # wholly inside: nothing to pad
    out = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, level_w), min(y + height, level_h)
    if x1 > x0 and y1 > y0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = array_reader(x0, y0, x1, y1)
    return out


def to_rgb_uint8(pixels: np.ndarray) -> np.ndarray:
    """Convert ``(h, w)``, ``(h, w, 1|2|3|4)`` images of any integer or float type to RGB uint8.

    Alpha is composited over white; 16-bit and other integer types are scaled from their full
    range; floats are taken as 0–1 when their maximum is at most 1, else as 0–255.
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an (h, w[, channels]) image, found shape {pixels.shape}")
    values = _as_unit_float(pixels) if pixels.dtype != np.uint8 else None
    channels = pixels.shape[2]
    has_alpha = channels in (2, 4)
    if values is None and not has_alpha:
        return np.repeat(pixels, 3, axis=2) if channels == 1 else np.ascontiguousarray(pixels)
    if values is None:
        values = pixels.astype(np.float32) / 255.0
    colour = values[:, :, : channels - 1] if has_alpha else values
    if has_alpha:
        alpha = values[:, :, channels - 1 :]
        colour = colour * alpha + (1.0 - alpha)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    return np.clip(np.rint(colour * 255.0), 0, 255).astype(np.uint8)


def _as_unit_float(pixels: np.ndarray) -> np.ndarray:
    if np.issubdtype(pixels.dtype, np.integer):
        info = np.iinfo(pixels.dtype)
        return (pixels.astype(np.float32) - info.min) / float(info.max - info.min)
    if np.issubdtype(pixels.dtype, np.floating):
        values = pixels.astype(np.float32)
        top = float(np.nanmax(values)) if values.size else 1.0
        return np.nan_to_num(values / (1.0 if top <= 1.0 else 255.0))
    if pixels.dtype == np.bool_:
        return pixels.astype(np.float32)
    raise ValueError(f"unsupported pixel type {pixels.dtype}")
