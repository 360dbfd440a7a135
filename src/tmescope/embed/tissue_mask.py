"""Where the tissue is: a mask from a low-resolution view of the slide, and patch fractions.

Tissue on an H&E slide is coloured (stained) and darker than the glass: pixels whose saturation
passes an Otsu threshold and which are not near-white count as tissue. The mask is computed once
per sample from a thumbnail; the tissue fraction of any box then costs four look-ups in an
integral image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmescope.io import Sample
from tmescope.io.slide_sample import SlideSample

MASK_MAX_PX = 2048
WHITE_GREY = 235  # glass, even slightly tinted, is brighter than this


@dataclass(frozen=True, eq=False)
class TissueMask:
    """A boolean tissue mask over the slide, with its scale to full-resolution pixels."""

    mask: np.ndarray  # (h, w) bool
    scale: float  # mask pixels per full-resolution pixel
    _integral: np.ndarray  # (h + 1, w + 1) int64 cumulative sums of the mask

    @classmethod
    def from_sample(cls, sample: Sample | SlideSample, *, max_px: int = MASK_MAX_PX) -> TissueMask:
        """Detect tissue on a thumbnail of the sample's slide."""
        thumb = sample.slide.thumbnail(max_px)
        mask = detect_tissue(thumb)
        scale = sample.image_scale * thumb.shape[1] / sample.slide.width
        return cls.from_mask(mask, scale=scale)

    @classmethod
    def from_mask(cls, mask: np.ndarray, *, scale: float) -> TissueMask:
        integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
        integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
        return cls(mask=mask, scale=scale, _integral=integral)

    def fractions(self, centres: np.ndarray, *, side: float) -> np.ndarray:
        """Tissue fraction of the squares of side ``side`` (full-res px) centred on ``centres``.

        ``centres`` is ``(n, 2)`` full-resolution ``(x, y)``; off-slide parts count as glass.
        """
        h, w = self.mask.shape
        half = side * self.scale / 2
        cx, cy = centres[:, 0] * self.scale, centres[:, 1] * self.scale
        x0 = np.clip(np.floor(cx - half), 0, w).astype(np.int64)
        x1 = np.clip(np.ceil(cx + half), 0, w).astype(np.int64)
        y0 = np.clip(np.floor(cy - half), 0, h).astype(np.int64)
        y1 = np.clip(np.ceil(cy + half), 0, h).astype(np.int64)
        ii = self._integral
        inside = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
        area = np.maximum((2 * half) ** 2, 1.0)
        return np.clip(inside / area, 0.0, 1.0).astype(np.float32)


def detect_tissue(rgb: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of an RGB uint8 image: stained (saturated) and not glass-white."""
    pixels = rgb.astype(np.int16)
    top, bottom = pixels.max(axis=2), pixels.min(axis=2)
    saturation = (top - bottom) / np.maximum(top, 1)
    grey = pixels.mean(axis=2)
    threshold = otsu_threshold(saturation[grey < 250]) if (grey < 250).any() else 1.0
    return (saturation > max(threshold, 0.05)) & (grey < WHITE_GREY)


def otsu_threshold(values: np.ndarray, *, bins: int = 256) -> float:
    """The threshold between two classes of ``values`` that maximises between-class variance."""
    if values.size == 0:
        return 0.0
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * centres) / np.maximum(weight_low, 1)
    total = (hist * centres).sum()
    mean_high = (total - np.cumsum(hist * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between))])
