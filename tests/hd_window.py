"""A small Visium HD run from a window of a synthetic section's cells: Space Ranger's
``binned_outputs`` of the bin sizes asked for (``tmescope.datasets.hd_writer``), the section's
hires and lowres PNGs and its full-resolution H&E, so that it embeds as a real run does.

A window of a few dozen µm keeps the bins few (a 64 µm window holds 16 bins of 16 µm, 64 of 8
µm), so a test embeds it in seconds; bins of a size the run does not write are summed from its 2 µm ones.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np

from tmescope.io._keys import VisiumFiles as F


@dataclass(frozen=True)
class HDWindow:
    """The run's ``outs/``, the section's full-resolution H&E and its µm/px."""

    outs: Path
    image: Path
    mpp: float


def write_hd_window(
    sample_dir: Path, out: Path, *, bin_sizes: Sequence[int] = (2, 8), window_um: float = 64.0
) -> HDWindow:
    """Write the HD run of the cells of a ``window_um`` square near the middle of synthetic
    sample ``sample_dir`` (``cells.h5ad``, ``*_he.tif``, ``outs/spatial/``) under ``out``."""
    from tmescope.datasets.hd_writer import write_binned_outputs

    cells = ad.read_h5ad(sample_dir / "cells.h5ad")
    mpp = float(cells.uns["tmescope"]["mpp"])
    xy = np.asarray(cells.obsm["spatial"])
    low = np.floor(np.median(xy, axis=0) / 32) * 32  # on the 16 µm grid at 0.5 µm/px
    keep = np.all((xy >= low) & (xy < low + window_um / mpp), axis=1)
    outs = out / F.OUTS
    spatial = sample_dir / F.OUTS / F.SPATIAL
    factors = json.loads((spatial / F.SCALEFACTORS).read_text())
    write_binned_outputs(
        cells[keep].copy(), outs, mpp=mpp, bin_sizes=bin_sizes,
        scalefactors={k: factors[k] for k in ("tissue_hires_scalef", "tissue_lowres_scalef")},
    )  # fmt: skip
    (outs / F.SPATIAL).mkdir()
    for png in (F.HIRES_IMAGE, F.LOWRES_IMAGE):
        shutil.copyfile(spatial / png, outs / F.SPATIAL / png)
    return HDWindow(outs=outs, image=next(sample_dir.glob("*_he.tif")), mpp=mpp)
