"""Continuous maps of bins: a lattice is drawn as an image (no seams), anything else as points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tmescope.errors import InvalidParameterError
from tmescope.viz.value_maps import _lattice, plot_value_maps


def _grid(side: int = 20, step: float = 8.0) -> np.ndarray:
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    return np.c_[gx.ravel(), gy.ravel()] * step + 3.0


def test_bins_of_a_lattice_are_rasterised_where_they_lie() -> None:
    keep = np.random.default_rng(2).uniform(size=400) < 0.7
    keep[[0, 399]] = True  # the corners fix the raster's size; the holes stay empty
    xy = _grid()[keep]
    rows, cols, shape, extent = _lattice(xy)  # type: ignore[misc]
    assert shape == (20, 20) and extent == (-1.0, 159.0, 159.0, -1.0)
    np.testing.assert_array_equal(cols * 8 + 3, xy[:, 0])
    np.testing.assert_array_equal(rows * 8 + 3, xy[:, 1])
    jittered = xy + np.random.default_rng(0).normal(0, 1.0, xy.shape)
    assert _lattice(jittered) is None


@pytest.mark.parametrize("jitter", [0.0, 1.0])
def test_maps_are_drawn_over_the_thumbnail(tmp_path: Path, jitter: float) -> None:
    xy = _grid() + np.random.default_rng(1).normal(0, jitter, (400, 2))
    thumb = np.full((170, 170, 3), 230, dtype=np.uint8)
    values = [np.linspace(0, 1, 400), np.linspace(1, 0, 400)]
    out = plot_value_maps(thumb, xy, values, ["a", "b"], tmp_path / "m.png", suptitle="s")
    with Image.open(out) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert image.width > 500 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_mismatched_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="one value per point"):
        plot_value_maps(None, _grid(), [np.ones(3)], ["a"], tmp_path / "x.png")
    with pytest.raises(InvalidParameterError, match="one title per map"):
        plot_value_maps(None, _grid(), [np.ones(400)], [], tmp_path / "x.png")
