"""Maps of a continuous value per bin (a population's abundance, its uncertainty, an interface
score) over a sample's H&E thumbnail, and a panel of several such maps side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tmescope.errors import InvalidParameterError

DPI = 120
PANEL_AXES_PT = 0.72 * 4.6 * 72  # the map's share of a 4.6-inch panel, in points


def plot_value_maps(
    thumbnail: np.ndarray | None,
    coords: np.ndarray,
    values: Sequence[np.ndarray],
    titles: Sequence[str],
    out: Path,
    *,
    marker_px: float | None = None,
    suptitle: str = "",
    cmap: str = "magma",
    colour_label: str = "",
    robust: bool = True,
) -> Path:
    """Write a PNG with one panel per array in ``values`` (each one value per point of
    ``coords``, in thumbnail pixels), drawn as squares over the H&E.

    ``marker_px`` is the side of each square in points; by default the spacing of the points,
    so that bins tile the map. Each panel has its own colour scale, from 0 (or the minimum, if negative) to the 99th
    percentile with ``robust`` (so that a few extreme bins do not wash out the map).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    xy = np.asarray(coords, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise InvalidParameterError(f"coords must be (n, 2); found shape {xy.shape}")
    if len(values) != len(titles) or not values:
        raise InvalidParameterError("give one title per map, and at least one map")
    arrays = [np.asarray(v, dtype=np.float64).ravel() for v in values]
    if any(a.size != len(xy) for a in arrays):
        raise InvalidParameterError(f"every map needs one value per point ({len(xy)})")
    columns = min(len(arrays), 3)
    lattice = _lattice(xy) if marker_px is None else None
    if marker_px is None:
        width = thumbnail.shape[1] if thumbnail is not None else float(np.ptp(xy[:, 0]) or 1.0)
        marker_px = _spacing(xy) * PANEL_AXES_PT / width
    rows = -(-len(arrays) // columns)
    fig = Figure(figsize=(4.6 * columns, 4.0 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    for k, (array, title) in enumerate(zip(arrays, titles, strict=True)):
        ax = fig.add_subplot(rows, columns, k + 1)
        if thumbnail is not None:
            ax.imshow(thumbnail, alpha=0.55)
        else:
            ax.invert_yaxis()
            ax.set_aspect("equal")
        finite = array[np.isfinite(array)]
        high = (
            float(np.percentile(finite, 99)) if robust and finite.size else float(np.nanmax(array))
        )
        low = min(0.0, float(finite.min())) if finite.size else 0.0
        norm = Normalize(vmin=low, vmax=high if high > low else low + 1e-9)
        drawn: ScalarMappable
        if lattice is not None:  # bins of one lattice: an image of them tiles without seams
            rows_, cols_, shape, extent = lattice
            raster = np.full(shape, np.nan)
            raster[rows_, cols_] = array
            view = ax.get_xlim(), ax.get_ylim()
            drawn = ax.imshow(raster, extent=extent, interpolation="nearest", cmap=cmap, norm=norm)
            if thumbnail is not None:
                ax.set_xlim(*view[0])
                ax.set_ylim(*view[1])
        else:
            drawn = ax.scatter(
                xy[:, 0], xy[:, 1], c=array, s=marker_px**2, marker="s", linewidths=0,
                cmap=cmap, norm=norm,
            )  # fmt: skip
        fig.colorbar(drawn, ax=ax, shrink=0.75, label=colour_label)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _lattice(
    xy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[float, float, float, float]] | None:
    """Rows, columns, shape and imshow extent when the points lie on one square lattice (as a
    sample's bins do); None otherwise (or when the raster would be huge)."""
    if len(xy) < 4:
        return None
    step = _spacing(xy)
    origin = xy.min(axis=0)
    index = (xy - origin) / step
    rounded = np.rint(index)
    if np.abs(index - rounded).max() > 0.05:
        return None
    cols, rows = rounded[:, 0].astype(np.int64), rounded[:, 1].astype(np.int64)
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    if shape[0] * shape[1] > 25_000_000:
        return None
    left, top = origin - step / 2
    extent = (left, left + shape[1] * step, top + shape[0] * step, top)  # y down, as the slide
    return rows, cols, shape, extent


def _spacing(xy: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    if len(xy) < 2:
        return 1.0
    return float(np.median(cKDTree(xy).query(xy, k=2)[0][:, 1]))
