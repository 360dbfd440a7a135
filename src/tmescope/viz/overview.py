"""A cohort at a glance: each sample's H&E thumbnail with its spots coloured by a value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tmescope.io import Sample

THUMBNAIL_PX = 512


def plot_cohort_overview(
    samples: Sequence[Sample],
    out: Path,
    *,
    values: Sequence[np.ndarray] | None = None,
    label: str = "log1p total counts",
    columns: int = 4,
) -> Path:
    """Write a PNG with two panels per sample: the H&E thumbnail, and its spots in tissue
    coloured by ``values`` over it.

    ``values`` holds one array per sample (one value per spot); by default each spot's
    ``log1p`` total counts. Off-tissue spots are drawn as faint outlines.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not samples:
        raise ValueError("no samples to draw")
    if values is None:
        values = [np.log1p(np.asarray(s.counts.X.sum(axis=1)).ravel()) for s in samples]
    columns = max(1, min(columns, len(samples)))
    rows = 2 * math.ceil(len(samples) / columns)
    fig = Figure(figsize=(3.6 * columns, 3.4 * rows), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    vmin = min(float(np.min(v)) for v in values)
    vmax = max(float(np.max(v)) for v in values)
    scatter = None
    for i, (sample, value) in enumerate(zip(samples, values, strict=True)):
        row, column = divmod(i, columns)
        thumb = sample.slide.thumbnail(THUMBNAIL_PX)
        he = fig.add_subplot(rows, columns, 2 * row * columns + column + 1)
        he.imshow(thumb)
        he.set_title(
            f"{sample.sample_id}\n{sample.n_in_tissue:,} spots in tissue, {sample.mpp:.3g} µm/px",
            fontsize=9,
        )
        he.set_axis_off()
        ax = fig.add_subplot(rows, columns, (2 * row + 1) * columns + column + 1)
        # Full-resolution pixels → thumbnail pixels.
        to_thumb = sample.image_scale * thumb.shape[1] / sample.slide.width
        ax.imshow(thumb)
        xy = sample.spots[["x", "y"]].to_numpy(float) * to_thumb
        inside = sample.spots["in_tissue"].to_numpy(bool)
        spot_px = sample.spot_diameter_um / sample.mpp * to_thumb
        size = max(1.0, (spot_px * 72 / fig.dpi) ** 2)  # marker area in points² (55 µm spots)
        scatter = ax.scatter(
            xy[inside, 0], xy[inside, 1], c=value[inside], s=size, cmap="viridis",
            vmin=vmin, vmax=vmax, linewidths=0, alpha=0.85,
        )  # fmt: skip
        ax.set_axis_off()
    if scatter is not None:
        fig.colorbar(scatter, ax=fig.axes, shrink=0.5, label=label)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
