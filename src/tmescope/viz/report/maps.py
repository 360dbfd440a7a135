"""Maps of a sample for the report: values drawn as spots (and grid tiles) over its H&E.

Figures are drawn with matplotlib's Agg canvas (no display, no global pyplot state) in the
frame of full-resolution pixels, so spots, tiles and image line up whatever the image's
scale, and come back as JPEG bytes: over a photograph JPEG is a fifth of PNG's size.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tmescope.io import Sample

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 90
IMAGE_MAX_PX = 640  # long side of the H&E crop behind the maps
JPEG_QUALITY = 80
JPEG = "image/jpeg"


@dataclass(frozen=True)
class Backdrop:
    """The H&E under a sample's spots and where it lies, in full-resolution pixels."""

    pixels: np.ndarray | None  # (h, w, 3) uint8; None when the image cannot be read
    extent: tuple[float, float, float, float]  # x0, x1, y0, y1 (y grows downwards)


@dataclass(frozen=True)
class SpotLayout:
    """Where a sample's spots and grid tiles are, and how large to draw them."""

    spots_xy: np.ndarray  # (n, 2) full-resolution pixels
    spot_px: float  # spot diameter
    tiles_xy: np.ndarray  # (m, 2), m may be 0
    tile_px: float  # side of a tile's square: the grid step

    @classmethod
    def of(cls, spots_xy: np.ndarray, *, spot_px: float, tiles_xy: np.ndarray) -> SpotLayout:
        """A layout whose tile side is the grid step (median nearest-tile distance)."""
        tiles = np.asarray(tiles_xy, dtype=np.float64).reshape(-1, 2)
        step = spot_px
        if len(tiles) > 1:
            from scipy.spatial import cKDTree

            distance, _ = cKDTree(tiles).query(tiles, k=2)
            step = float(np.median(distance[:, 1]))
        return cls(np.asarray(spots_xy, dtype=np.float64), float(spot_px), tiles, step)


@dataclass(frozen=True)
class MapPanel:
    """One map: a value per spot (and per tile); NaN values are not drawn.

    Panels of one row with the same non-empty ``scale`` share their colour scale, so that a
    measured and a predicted map of one gene read alike.
    """

    title: str
    spots: np.ndarray  # (n,)
    tiles: np.ndarray | None = None  # (m,)
    cmap: str = "viridis"
    scale: str = ""


def read_backdrop(sample: Sample | None, xy: np.ndarray, *, margin_px: float) -> Backdrop:
    """The H&E around ``xy`` (full-resolution pixels) at :data:`IMAGE_MAX_PX` at most.

    Only the box holding the spots (and ``margin_px`` around them) is read, from the slide's
    best pyramid level: a whole-slide scan stays unread beyond it. Without a sample, the box
    alone (drawn on white).
    """
    points = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    x0, y0 = points.min(axis=0) - margin_px
    x1, y1 = points.max(axis=0) + margin_px
    extent = (float(x0), float(x1), float(y0), float(y1))
    if sample is None:
        return Backdrop(None, extent)
    scale = sample.image_scale  # slide pixels per full-resolution pixel
    width, height = (x1 - x0) * scale, (y1 - y0) * scale
    shrink = min(1.0, IMAGE_MAX_PX / max(width, height))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    pixels = sample.slide.read_region(x0 * scale, y0 * scale, width, height, size=size)
    return Backdrop(pixels, extent)


def plot_map_rows(
    backdrop: Backdrop, layout: SpotLayout, rows: Sequence[Sequence[MapPanel]], *, panel_in: float
) -> bytes:
    """One figure, a row of panels per entry of ``rows``: JPEG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows or not all(rows):
        raise ValueError("plot_map_rows needs at least one panel in every row")
    columns = max(len(row) for row in rows)
    x0, x1, y0, y1 = backdrop.extent
    aspect = min(2.5, max(0.4, (y1 - y0) / max(x1 - x0, 1e-9)))
    size = (panel_in * columns + 0.6 * columns, (panel_in * aspect + 0.45) * len(rows))
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    for r, row in enumerate(rows):
        shared = _shared_limits(row)
        for c, panel in enumerate(row):
            ax = fig.add_subplot(len(rows), columns, r * columns + c + 1)
            limits = shared.get(panel.scale) if panel.scale else _limits([panel])
            _draw(fig, ax, backdrop, layout, panel, limits)
    return _jpeg(fig)


def encode_jpeg(pixels: np.ndarray, *, max_px: int = IMAGE_MAX_PX) -> bytes:
    """An RGB image as JPEG bytes, its long side ``max_px`` at most."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    if max(image.size) > max_px:
        image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _draw(
    fig: Figure,
    ax: Axes,
    backdrop: Backdrop,
    layout: SpotLayout,
    panel: MapPanel,
    limits: tuple[float, float] | None,
) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import EllipseCollection, PolyCollection
    from matplotlib.colors import Normalize

    x0, x1, y0, y1 = backdrop.extent
    ax.set_title(panel.title, fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
    if backdrop.pixels is not None:
        ax.imshow(backdrop.pixels, extent=(x0, x1, y1, y0))
    ax.set_xlim(x0, x1), ax.set_ylim(y1, y0)
    ax.set_aspect("equal")
    if limits is None:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        return
    norm = Normalize(*limits)
    if panel.tiles is not None and len(layout.tiles_xy):
        keep = np.isfinite(panel.tiles)
        half = layout.tile_px / 2
        corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        squares = layout.tiles_xy[keep][:, None, :] + corners[None]  # (m, 4, 2)
        tiles = PolyCollection(squares, array=panel.tiles[keep], cmap=panel.cmap, norm=norm)
        tiles.set_edgecolor("none")
        tiles.set_alpha(0.85)
        ax.add_collection(tiles)
    keep = np.isfinite(panel.spots)
    diameters = np.full(int(keep.sum()), layout.spot_px)
    spots = EllipseCollection(
        diameters, diameters, np.zeros_like(diameters), units="xy",
        offsets=layout.spots_xy[keep], offset_transform=ax.transData,
        array=panel.spots[keep], cmap=panel.cmap, norm=norm, alpha=0.9,
    )  # fmt: skip
    spots.set_edgecolor("none")
    ax.add_collection(spots)
    bar = fig.colorbar(ScalarMappable(norm, panel.cmap), ax=ax, shrink=0.8, pad=0.02)
    bar.ax.tick_params(labelsize=7)


def _shared_limits(row: Sequence[MapPanel]) -> dict[str, tuple[float, float] | None]:
    keys = {p.scale for p in row if p.scale}
    return {key: _limits([p for p in row if p.scale == key]) for key in keys}


def _limits(panels: Sequence[MapPanel]) -> tuple[float, float] | None:
    """The 1st to 99th percentile of the panels' values: one outlier spot cannot wash a map out."""
    parts = [p.spots for p in panels] + [p.tiles for p in panels if p.tiles is not None]
    values = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in parts])
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    low, high = (float(v) for v in np.percentile(values, [1, 99]))
    if not math.isfinite(high - low) or high - low < 1e-9:
        low, high = low - 0.5, high + 0.5  # a constant map: one colour, mid-scale
    return low, high


def _jpeg(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", pil_kwargs={"quality": JPEG_QUALITY})
    return buffer.getvalue()
