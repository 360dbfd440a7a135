"""Figures of label interactions: an enrichment z-score heatmap and co-occurrence curves.

Both draw on a private Figure with the Agg canvas, never pyplot, so that they are safe in a
server or a worker thread and leave no global figure behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tmescope.errors import InvalidParameterError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150


def plot_enrichment_heatmap(
    zscore: np.ndarray,
    categories: Sequence[str],
    out: Path,
    *,
    title: str,
    spread: np.ndarray | None = None,
) -> Path:
    """Write a PNG heatmap of a ``(c, c)`` z-score matrix (e.g. ``CohortNhood.mean_z``).

    Colours diverge around 0 (red enriched, blue depleted) with symmetric limits; each cell shows
    its value, and ``± spread`` when ``spread`` (``(c, c)``, e.g. ``std_z``) is given. NaN
    cells (pairs undefined everywhere) are left blank.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cats = [str(c) for c in categories]
    z = _square(zscore, len(cats), name="zscore")
    sd = None if spread is None else _square(spread, len(cats), name="spread")
    finite = np.abs(z[np.isfinite(z)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0

    size = max(4.0, 0.9 * len(cats) + 2.5)
    fig = Figure(figsize=(size + 1.2, size), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(z), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(cats)), cats, rotation=45, ha="right")
    ax.set_yticks(range(len(cats)), cats)
    ax.set_title(title)
    for i in range(len(cats)):
        for j in range(len(cats)):
            if not np.isfinite(z[i, j]):
                continue
            text = f"{z[i, j]:.1f}"
            if sd is not None and np.isfinite(sd[i, j]):
                text += f"\n±{sd[i, j]:.1f}"
            # White on saturated cells, black on pale ones, so the number stays readable.
            colour = "white" if abs(z[i, j]) > 0.6 * limit else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, shrink=0.8, label="z-score")
    return _save(fig, out)


def plot_cooccurrence_curves(
    result_ratio: np.ndarray,
    distances_um: np.ndarray,
    categories: Sequence[str],
    out: Path,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    title: str,
) -> Path:
    """Write a PNG of co-occurrence ratio against distance, one line per ``(centre, other)`` pair.

    ``result_ratio`` is ``(c, c, d)`` as in ``CooccurrenceResult.ratio`` (or a pooled mean);
    ``pairs`` defaults to every unordered pair of distinct categories. A dashed line marks 1
    (no association); NaN points are gaps.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cats = [str(c) for c in categories]
    ratio = np.asarray(result_ratio, dtype=np.float64)
    dist = np.asarray(distances_um, dtype=np.float64).ravel()
    if ratio.ndim != 3 or ratio.shape != (len(cats), len(cats), dist.size):
        raise InvalidParameterError(
            f"result_ratio must be (c, c, d) = ({len(cats)}, {len(cats)}, {dist.size}) for "
            f"{len(cats)} categories and {dist.size} distances; found shape {ratio.shape}. "
            "Pass the ratio, categories and distances_um of the same CooccurrenceResult."
        )
    chosen = list(combinations(cats, 2)) if pairs is None else [(str(a), str(b)) for a, b in pairs]
    unknown = sorted({c for pair in chosen for c in pair} - set(cats))
    if unknown or not chosen:
        raise InvalidParameterError(
            f"pairs must name categories among {cats}; found {unknown or 'no pair'}. "
            "Pick pairs from the result's categories."
        )

    fig = Figure(figsize=(6.4, 4.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for a, b in chosen:
        ax.plot(dist, ratio[cats.index(a), cats.index(b)], marker="o", ms=3, label=f"{a} → {b}")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("distance (µm)")
    ax.set_ylabel("co-occurrence ratio")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, out)


def _square(values: np.ndarray, c: int, *, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (c, c):
        raise InvalidParameterError(
            f"{name} must be (c, c) = ({c}, {c}) for {c} categories; found shape {arr.shape}. "
            "Pass the matrix and the categories of the same result."
        )
    return arr


def _save(fig: Figure, out: Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path
