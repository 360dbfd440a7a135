"""Render the synthetic H&E at any pyramid level, strip by strip, from the cell map.

Colour follows Beer–Lambert: each pixel's optical density is a sum of stains (haematoxylin,
eosin, red cells) times their RGB absorption, and its intensity ``255 · exp(-density)``. Stains
between cells come from the cell grid, upsampled bilinearly; fibres and grain from periodic
textures; nuclei from the sprite atlas, pasted four interleaved sub-grids at a time so that no
two windows of one pass overlap. Levels fine enough to show nuclei (at least
``sprites.MIN_CELL_PX`` pixels a cell) are drawn at their own resolution; coarser ones are
reduced from the last drawn one. Memory stays bounded by one strip; small levels are cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from tmescope.datasets.cells import CellMap
from tmescope.datasets.geometry import SlideGeometry
from tmescope.datasets.sprites import DENSITY_SCALE, MIN_CELL_PX, SpriteAtlas
from tmescope.datasets.textures import Textures

STRIP_PX = 256
CHUNK_PX = 1024  # columns drawn at a time: keeps temporaries in cache
CACHE_PX = 1 << 24  # levels up to this many pixels are rendered once and kept
GRAIN = 0.12  # relative eosin variation from the grain texture


@dataclass(frozen=True)
class Palette:
    """RGB optical density per unit of each stain, and of the bare glass."""

    haematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    blood: tuple[float, float, float]
    glass: float


DEFAULT_PALETTE = Palette(
    haematoxylin=(0.651, 0.701, 0.291),  # Ruifrok & Johnston's haematoxylin vector
    eosin=(0.07, 0.90, 0.43),
    blood=(0.09, 0.74, 0.66),
    glass=0.035,
)


def draw_palette(rng: np.random.Generator) -> Palette:
    """The staining of one slide: hue and strength vary from batch to batch."""

    def jitter(vector: tuple[float, float, float], strength: float) -> tuple[float, float, float]:
        v = np.clip(np.array(vector) + rng.normal(0, 0.04, 3), 0.02, None)
        v *= strength / np.linalg.norm(v)
        return (float(v[0]), float(v[1]), float(v[2]))

    p = DEFAULT_PALETTE
    return Palette(
        haematoxylin=jitter(p.haematoxylin, rng.uniform(0.85, 1.2)),
        eosin=jitter(p.eosin, rng.uniform(0.85, 1.2)),
        blood=jitter(p.blood, 1.0),
        glass=p.glass,
    )


class SlideRenderer:
    """Serves ``strip(level, y0, height) -> (height, level_width, 3)`` uint8 for any level."""

    def __init__(
        self,
        geometry: SlideGeometry,
        cells: CellMap,
        *,
        atlas: SpriteAtlas,
        textures: Textures,
        palette: Palette,
        texture_offset: tuple[int, int],
    ) -> None:
        self.geometry, self.atlas, self.textures, self.palette = geometry, atlas, textures, palette
        self._offset = texture_offset  # (x, y) level-0 pixels, multiples of STRIP_PX
        self._stains = np.pad(cells.stains, ((0, 0), (1, 1), (1, 1)), mode="edge")  # cell i → i + 1
        self._sprites = np.pad(cells.sprite, 2)  # cell i → i + 2
        busy = (cells.stains[0] > 0) | (cells.sprite > 0)
        self._busy = np.pad(busy, 1)  # cell i → i + 1
        self._drawn = max(
            (lvl for lvl in range(geometry.n_levels) if geometry.cell_px >> lvl >= MIN_CELL_PX),
            default=0,
        )
        glass = int(255 * np.exp(-palette.glass) + 0.5)
        self._glass = np.uint8(glass)
        self._cache: dict[int, np.ndarray] = {}

    def strip(self, level: int, y0: int, height: int) -> np.ndarray:
        """Rows ``y0 : y0 + height`` of a level (``y0`` a multiple of 256)."""
        if self._cacheable(level):
            return self.level_image(level)[y0 : y0 + height]
        return self._rows(level, y0, height)

    def level_image(self, level: int) -> np.ndarray:
        """A whole level; only for levels small enough to hold (and then kept)."""
        if level in self._cache:
            return self._cache[level]
        if level > self._drawn and self._cacheable(level - 1):
            image = _reduce(self.level_image(level - 1), 2)
        else:
            image = self._rows(level, 0, self.geometry.level_size(level)[1])
        if self._cacheable(level):
            self._cache[level] = image
        return image

    def thumbnail(self, long_side: int) -> tuple[np.ndarray, float]:
        """The slide with its long side ``long_side`` px (never enlarged), and its scale."""
        width, height = self.geometry.width, self.geometry.height
        scale = min(1.0, long_side / max(width, height))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        level = max(
            lvl
            for lvl in range(self.geometry.n_levels)
            if lvl == 0 or max(self.geometry.level_size(lvl)) >= max(size)
        )
        image = Image.fromarray(self.level_image(level))
        if image.size != size:
            image = image.resize(size, Image.Resampling.BOX)
        return np.asarray(image), scale

    def _cacheable(self, level: int) -> bool:
        width, height = self.geometry.level_size(level)
        return width * height <= CACHE_PX

    def _rows(self, level: int, y0: int, height: int) -> np.ndarray:
        if level <= self._drawn:
            steps = range(y0, y0 + height, STRIP_PX)
            return np.concatenate(
                [self._draw(level, y, min(STRIP_PX, y0 + height - y)) for y in steps]
            )
        factor = 1 << (level - self._drawn)
        step = max(1, STRIP_PX // factor)  # output rows per strip drawn at the finer level
        parts = [
            _reduce(
                self._draw(self._drawn, y * factor, min(step, y0 + height - y) * factor), factor
            )
            for y in range(y0, y0 + height, step)
        ]
        return np.concatenate(parts)

    def _draw(self, level: int, y0: int, height: int) -> np.ndarray:
        """One strip of a level fine enough for nuclei; ``y0`` and ``height`` whole cells."""
        k = self.geometry.cell_px >> level
        width = self.geometry.level_size(level)[0]
        period = self.textures.period >> level
        shift = (self._offset[0] >> level) % period
        # Chunks never straddle a texture seam, so textures are read as plain slices.
        edges = sorted(
            {*range(0, width, CHUNK_PX), *range((period - shift) % period, width, period)}
        )
        out = np.empty((height, width, 3), np.uint8)
        for x0, x1 in zip(edges, [*edges[1:], width], strict=True):
            out[:, x0:x1] = self._block(level, k, y0, height, x0, x1 - x0)
        return out

    def _block(self, level: int, k: int, y0: int, h: int, x0: int, w: int) -> np.ndarray:
        cy0, cy1, cx0, cx1 = y0 // k, (y0 + h) // k, x0 // k, (x0 + w) // k
        if not self._busy[cy0 : cy1 + 2, cx0 : cx1 + 2].any():
            return np.full((h, w, 3), self._glass, np.uint8)
        eosin, haem, red, fibre0, fibre1 = _upsample(
            self._stains[:, cy0 : cy1 + 2, cx0 : cx1 + 2], k
        )
        tex = _window(
            self.textures.at_level(level),
            y0 + (self._offset[1] >> level),
            h,
            x0 + (self._offset[0] >> level),
            w,
        )
        eosin *= 1 + GRAIN * tex[2]
        eosin += fibre0 * tex[0]
        eosin += fibre1 * tex[1]
        drawn = self._objects(level, k, cy0, cy1, cx0, cx1)
        if drawn is not None:
            haem += drawn[..., 0] * np.float32(1 / DENSITY_SCALE)
            red += drawn[..., 1] * np.float32(1 / DENSITY_SCALE)
        return self._to_rgb(eosin, haem, red)

    def _objects(
        self, level: int, k: int, cy0: int, cy1: int, cx0: int, cx1: int
    ) -> np.ndarray | None:
        """``(h, w, 2)`` uint8 densities of the sprites whose windows reach the block."""
        atlas = self.atlas.at_level(level)  # (n_entries, 2k, 2k, 2)
        ny, nx = cy1 - cy0 + 2, cx1 - cx0 + 2  # cells cy0 - 1 … cy1 reach the block
        buffer: np.ndarray | None = None
        for a in (0, 1):
            rows = np.arange(cy0 - 1 + a, cy1 + 1, 2) + 2
            for b in (0, 1):
                cols = np.arange(cx0 - 1 + b, cx1 + 1, 2) + 2
                index = self._sprites[np.ix_(rows, cols)]
                if not index.any():
                    continue
                if buffer is None:
                    buffer = np.zeros(((ny + 1) * k, (nx + 1) * k, 2), np.uint8)
                n_rows, n_cols = index.shape
                # Windows of cells two apart tile the buffer: splitting axes keeps it a view.
                view = buffer[a * k : (a + 2 * n_rows) * k, b * k : (b + 2 * n_cols) * k]
                view = view.reshape(n_rows, 2 * k, n_cols, 2 * k, 2)
                np.maximum(view, atlas[index].transpose(0, 2, 1, 3, 4), out=view)
        if buffer is None:
            return None
        o = 3 * k // 2  # window of cell i starts k / 2 before it; the buffer at cell cy0 - 1
        return buffer[o : o + (cy1 - cy0) * k, o : o + (cx1 - cx0) * k]

    def _to_rgb(self, eosin: np.ndarray, haem: np.ndarray, red: np.ndarray) -> np.ndarray:
        p = self.palette
        out = np.empty((*eosin.shape, 3), np.uint8)
        density = np.empty_like(eosin)
        for c in range(3):
            np.multiply(eosin, np.float32(-p.eosin[c]), out=density)
            density -= haem * np.float32(p.haematoxylin[c])
            density -= red * np.float32(p.blood[c])
            density -= np.float32(p.glass)
            np.minimum(density, 0, out=density)  # fibre clefts must not pass white and wrap
            np.exp(density, out=density)
            density *= 255
            density += 0.5
            out[..., c] = density
        return out


def _upsample(coarse: np.ndarray, k: int) -> np.ndarray:
    """Bilinear upsampling of ``(C, n + 2, m + 2)`` cell values (one cell of context around)
    to ``(C, n * k, m * k)`` pixels; cell centres fall at pixel ``(i + 0.5) * k``.

    Each cell splits into two halves, each linear between the cell and one neighbour. Columns go
    first, on the few coarse rows; rows then broadcast over whole pixel rows, so numpy's inner
    loops run along the long axis.
    """
    s = ((np.arange(k // 2) + 0.5) / k).astype(np.float32)
    lo, mid, hi = coarse[..., :-2], coarse[..., 1:-1], coarse[..., 2:]
    base = np.stack([(lo + mid) * np.float32(0.5), mid], axis=-1)  # (C, n + 2, m, 2)
    slope = np.stack([mid - lo, hi - mid], axis=-1)
    cols = (base[..., None] + slope[..., None] * s).reshape(*coarse.shape[:2], -1)  # (C, n + 2, W)
    lo, mid, hi = cols[:, :-2], cols[:, 1:-1], cols[:, 2:]
    base = np.stack([(lo + mid) * np.float32(0.5), mid], axis=2)  # (C, n, 2, W)
    slope = np.stack([mid - lo, hi - mid], axis=2)
    rows = base[:, :, :, None, :] + slope[:, :, :, None, :] * s[:, None]  # (C, n, 2, k / 2, W)
    return rows.reshape(coarse.shape[0], -1, cols.shape[-1])


def _window(texture: np.ndarray, y: int, h: int, x: int, w: int) -> np.ndarray:
    """``texture[:, y : y + h, x : x + w]`` of a periodic ``(C, P, P)`` texture."""
    period = texture.shape[-1]
    y, x = y % period, x % period
    if y + h <= period and x + w <= period:
        return texture[:, y : y + h, x : x + w]
    rows = np.arange(y, y + h) % period
    cols = np.arange(x, x + w) % period
    return texture[:, rows][:, :, cols]


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-average an RGB image by an integer factor (its sides are multiples of it)."""
    height, width = image.shape[0] // factor, image.shape[1] // factor
    return np.asarray(Image.fromarray(image).reduce(factor))[:height, :width]
