"""Interaction figures: valid PNGs, shape checks, and colours that follow the sign of z."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tmescope.errors import InvalidParameterError
from tmescope.viz.interaction_plots import plot_cooccurrence_curves, plot_enrichment_heatmap

CATS = ["immune", "stroma", "tumour"]


def _open(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    assert image.width > 300 and image.height > 300
    return image


def test_heatmap_colours_follow_sign(tmp_path: Path) -> None:
    z = np.array([[4.0, -4.0], [-4.0, 4.0]])
    out = plot_enrichment_heatmap(z, ["a", "b"], tmp_path / "sign.png", title="sign")
    image = np.asarray(_open(out).convert("RGB"), dtype=int)
    reddish = image[..., 0] > image[..., 2] + 50
    bluish = image[..., 2] > image[..., 0] + 50
    coloured = reddish | bluish
    # The heatmap is the leftmost coloured region (the colorbar lies to its right); find its
    # top-left corner and the width of the top-left cell from the image itself.
    x0 = int(np.flatnonzero(coloured.any(axis=0))[0]) + 2
    y0 = int(np.flatnonzero(coloured[:, x0])[0])
    run = np.flatnonzero(~reddish[y0 + 2, x0:])
    cell = int(run[0])
    assert cell > 50, cell
    # A quarter into each cell rather than its centre, where the cell's number is written.
    top_left = (y0 + cell // 4, x0 + cell // 4)
    top_right = (y0 + cell // 4, x0 + cell + cell // 4)
    bottom_left = (y0 + cell + cell // 4, x0 + cell // 4)
    assert reddish[top_left] and not bluish[top_left]  # z = +4
    assert bluish[top_right] and not reddish[top_right]  # z = -4
    assert bluish[bottom_left]  # z = -4


def test_heatmap_with_spread_and_nan(tmp_path: Path) -> None:
    z = np.array([[2.0, -1.0, np.nan], [-1.0, 0.5, np.nan], [np.nan, np.nan, np.nan]])
    out = plot_enrichment_heatmap(
        z, CATS, tmp_path / "nested" / "heat.png", title="cohort", spread=np.abs(z) / 2
    )
    assert out == tmp_path / "nested" / "heat.png"
    _open(out)


def test_heatmap_refuses_mismatched_shapes(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="zscore must be"):
        plot_enrichment_heatmap(np.zeros((2, 2)), CATS, tmp_path / "x.png", title="x")
    with pytest.raises(InvalidParameterError, match="spread must be"):
        plot_enrichment_heatmap(
            np.zeros((3, 3)), CATS, tmp_path / "x.png", title="x", spread=np.zeros((2, 3))
        )
    assert not (tmp_path / "x.png").exists()


def test_curves_png(tmp_path: Path) -> None:
    ratio = np.ones((3, 3, 4))
    ratio[0, 2] = [1.8, 1.5, 1.2, 1.0]
    ratio[1, 1, 0] = np.nan
    out = plot_cooccurrence_curves(
        ratio,
        np.array([110.0, 250.0, 500.0, 1000.0]),
        CATS,
        tmp_path / "curves.png",
        pairs=[("immune", "tumour"), ("stroma", "stroma")],
        title="co-occurrence",
    )
    _open(out)
    _open(plot_cooccurrence_curves(ratio, np.arange(4.0), CATS, tmp_path / "all.png", title="t"))


def test_curves_refuse_mismatches(tmp_path: Path) -> None:
    ratio = np.ones((3, 3, 4))
    with pytest.raises(InvalidParameterError, match=r"\(c, c, d\)"):
        plot_cooccurrence_curves(ratio, np.arange(5.0), CATS, tmp_path / "x.png", title="x")
    with pytest.raises(InvalidParameterError, match=r"\(c, c, d\)"):
        plot_cooccurrence_curves(ratio, np.arange(4.0), CATS[:2], tmp_path / "x.png", title="x")
    with pytest.raises(InvalidParameterError, match="pairs must name"):
        plot_cooccurrence_curves(
            ratio, np.arange(4.0), CATS, tmp_path / "x.png", pairs=[("immune", "vessel")], title="x"
        )
