"""A stored sample's H&E thumbnail, read from the Space Ranger folder (or the H&E-only slide)
the store recorded."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np

from tmescope.errors import TmescopeError, TmescopeWarning

if TYPE_CHECKING:
    from tmescope.store import CohortStore

log = logging.getLogger(__name__)


def sample_thumbnail(
    store: CohortStore, sample_id: str, *, max_px: int = 900
) -> tuple[np.ndarray | None, float]:
    """``(thumbnail, scale)``: the slide at most ``max_px`` on its long side, and thumbnail
    pixels per full-resolution pixel. ``(None, 1.0)`` with a warning when the slide can no
    longer be read (moved or deleted since it was embedded): maps are then drawn without it.
    """
    from tmescope.io.reopen import reopen_sample

    meta = store.sample_record(sample_id).meta
    source = meta.source_path
    try:
        with reopen_sample(source, extra=meta.extra, mpp=meta.mpp) as sample:
            thumb = sample.slide.thumbnail(max_px)
            scale = thumb.shape[1] / sample.slide.width * sample.image_scale
    except TmescopeError as error:
        warnings.warn(
            f"the slide of {sample_id} ({source}) cannot be read ({error}); its maps are drawn "
            "without the H&E",
            TmescopeWarning,
            stacklevel=2,
        )
        return None, 1.0
    return thumb, float(scale)
