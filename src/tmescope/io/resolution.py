"""Micrometres per pixel of the full-resolution frame, and where that figure came from.

Never from ``spot_diameter_fullres / 55`` alone: Space Ranger documents that value for a
theoretical 65 µm spot in some versions. The spot pitch (100 µm on Visium, the bin size on Visium
HD) fitted against the array grid is exact whatever the image, so it is our fallback and check.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from tmescope.errors import ResolutionError, TmescopeWarning
from tmescope.io._keys import VISIUM_SPOT_PITCH_UM

# On the Visium hexagonal lattice only every other array_col is used in a row, so the six
# neighbours of a spot sit at (row, col ± 2) and (row ± 1, col ± 1), all 100 µm away.
_VISIUM_NEIGHBOUR_STEPS = np.array([[2, 0], [1, 1], [-1, 1]], dtype=float)  # (d_col, d_row)
_HD_NEIGHBOUR_STEPS = np.array([[1, 0], [0, 1]], dtype=float)

# A neighbour step shorter than this (in full-resolution pixels) means the pixels do not move.
_MIN_STEP_PX = 1e-3

# Beyond this relative disagreement between the image metadata and the spot pitch, say so.
MPP_DISAGREEMENT_WARN = 0.05


def fit_array_to_pixels(spots: pd.DataFrame) -> np.ndarray:
    """Least-squares affine map ``(array_col, array_row, 1) -> (x, y)``; returns ``(3, 2)``."""
    design = np.column_stack(
        [
            spots["array_col"].to_numpy(float),
            spots["array_row"].to_numpy(float),
            np.ones(len(spots)),
        ]
    )
    if len(spots) < 3 or np.linalg.matrix_rank(design) < 3:
        raise ResolutionError(
            f"cannot derive µm/px from the spot pitch: the {len(spots)} spot(s) do not span two "
            "array directions; pass an image with resolution metadata or set mpp explicitly"
        )
    coef, *_ = np.linalg.lstsq(design, spots[["x", "y"]].to_numpy(float), rcond=None)
    return coef


def mpp_from_spot_pitch(
    spots: pd.DataFrame, *, platform: str, pitch_um: float | None = None
) -> float:
    """µm per full-resolution pixel from the spot lattice.

    ``platform`` is ``"visium"`` (hexagonal lattice, 100 µm pitch) or ``"visium_hd"`` (square
    bins, ``pitch_um`` = bin size).
    """
    if platform == "visium_hd":
        if pitch_um is None:
            raise ResolutionError("Visium HD µm/px from the bin pitch needs the bin size in µm")
        steps, pitch = _HD_NEIGHBOUR_STEPS, pitch_um
    else:
        steps, pitch = _VISIUM_NEIGHBOUR_STEPS, pitch_um or VISIUM_SPOT_PITCH_UM
    linear = fit_array_to_pixels(spots)[:2]  # rows: d/d(array_col), d/d(array_row)
    step_px = np.linalg.norm(steps @ linear, axis=1)
    if not np.all(step_px > _MIN_STEP_PX):  # least squares leaves ~1e-14 px of noise, not 0
        raise ResolutionError(
            "cannot derive µm/px from the spot pitch: pixel coordinates do not change with the "
            "array coordinates; check the positions file"
        )
    if step_px.max() / step_px.min() > 1.1:
        warnings.warn(
            "the spot lattice is not regular in pixels (neighbour steps "
            f"{np.array2string(step_px, precision=1)} px); µm/px is their mean",
            TmescopeWarning,
            stacklevel=2,
        )
    return float(pitch / step_px.mean())


def check_agreement(metadata_mpp: float, pitch_mpp: float, *, image: str) -> None:
    """Warn when the image's own resolution disagrees with the spot pitch."""
    rel = abs(metadata_mpp - pitch_mpp) / pitch_mpp
    if rel > MPP_DISAGREEMENT_WARN:
        warnings.warn(
            f"{image} says {metadata_mpp:.4f} µm/px but the spot pitch gives {pitch_mpp:.4f} µm/px "
            f"({100 * rel:.0f}% apart): is this the image given to Space Ranger? Using the image's "
            "metadata",
            TmescopeWarning,
            stacklevel=2,
        )
