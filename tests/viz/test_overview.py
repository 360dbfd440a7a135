"""The cohort overview plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import write_visium
from tmescope.io import read_visium
from tmescope.viz.overview import plot_cohort_overview


@pytest.mark.filterwarnings("ignore::tmescope.errors.TmescopeWarning")
def test_overview_draws_one_pair_of_panels_per_sample(tmp_path: Path) -> None:
    samples = [read_visium(write_visium(tmp_path / f"s{i}").path) for i in range(3)]
    values = [np.arange(s.n_spots, dtype=float) for s in samples]
    out = plot_cohort_overview(samples, tmp_path / "ov.png", values=values, columns=2)
    with Image.open(out) as image:
        pixels = np.asarray(image.convert("RGB"))
    # Two columns and two pairs of rows: taller than wide, and not blank.
    assert pixels.shape[0] > pixels.shape[1]
    assert pixels.std() > 10
    for s in samples:
        s.close()


def test_overview_needs_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no samples"):
        plot_cohort_overview([], tmp_path / "x.png")
