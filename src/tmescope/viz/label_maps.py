"""Maps of categorical labels (niches, dominant TME states) over a sample's H&E thumbnail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tmescope.errors import InvalidParameterError

DPI = 120


def label_colours(categories: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A fixed colour per category (tab10, then tab20): the same label, the same colour."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(categories) <= 10 else "tab20"]
    return {str(c): palette(i % palette.N) for i, c in enumerate(categories)}


def plot_label_map(
    thumbnail: np.ndarray | None,
    coords: np.ndarray,
    labels: Sequence[str],
    categories: Sequence[str],
    out: Path,
    *,
    title: str,
    marker_px: float = 4.0,
) -> Path:
    """Write a PNG of ``labels`` at ``coords`` (thumbnail pixels) over the H&E ``thumbnail``.

    ``categories`` fixes the legend and the colours (absent ones are left out of the legend);
    without a thumbnail the points are drawn on white with y pointing down, as on the slide.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    xy = np.asarray(coords, dtype=np.float64)
    values = np.asarray(labels).astype(str)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(values) != len(xy):
        raise InvalidParameterError(
            f"coords must be (n, 2) with one label each, got {xy.shape} and {len(values)} labels"
        )
    colours = label_colours(categories)
    unknown = sorted(set(values) - set(colours))
    if unknown:
        raise InvalidParameterError(f"labels {unknown} are not among the categories {categories}")
    fig = Figure(figsize=(7.5, 6.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if thumbnail is not None:
        ax.imshow(thumbnail)
    else:
        ax.invert_yaxis()
        ax.set_aspect("equal")
    ax.scatter(
        xy[:, 0], xy[:, 1], c=[colours[v] for v in values], s=marker_px**2, linewidths=0,
        alpha=0.85,
    )  # fmt: skip
    present = [c for c in categories if (values == str(c)).any()]
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colours[str(c)], label=str(c))
        for c in present
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title)
    ax.set_axis_off()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_composition(
    fractions: np.ndarray,
    samples: Sequence[str],
    categories: Sequence[str],
    out: Path,
    *,
    title: str,
) -> Path:
    """Write a PNG of stacked bars: each sample's fraction of spots in each category."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = np.asarray(fractions, dtype=np.float64)
    if table.shape != (len(samples), len(categories)):
        raise InvalidParameterError(
            f"fractions must be (samples, categories) = ({len(samples)}, {len(categories)}), "
            f"got {table.shape}"
        )
    colours = label_colours(categories)
    fig = Figure(figsize=(max(5.0, 0.7 * len(samples) + 3.5), 4.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bottom = np.zeros(len(samples))
    for j, category in enumerate(categories):
        ax.bar(samples, table[:, j], bottom=bottom, color=colours[str(category)], label=category)
        bottom += table[:, j]
    ax.set_ylabel("fraction of spots")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
