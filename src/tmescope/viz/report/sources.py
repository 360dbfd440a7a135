"""The slides behind a store's samples, read from the Space Ranger folders the store recorded.

A store keeps embeddings, not images: the report goes back to each sample's folder for its
H&E. Folders move and disks get cleaned, so a sample whose folder cannot be read is remembered
with the reason, and the report says so instead of failing.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np

from tmescope.errors import TmescopeError
from tmescope.io import Sample
from tmescope.io.reopen import reopen_sample
from tmescope.io.slide_sample import SlideSample

if TYPE_CHECKING:
    from tmescope.store import CohortStore

log = logging.getLogger(__name__)

PATCH_PX = 160  # side of a gallery patch


class SlideSources:
    """Each sample's Space Ranger output (or H&E-only slide), opened when first asked for and
    held until :meth:`release` (or until ``stack`` closes): a sample opened reads its counts,
    so the report releases each once its page is drawn and a cohort is never open at once."""

    def __init__(self, store: CohortStore, stack: ExitStack) -> None:
        self._store = store
        self._opened: dict[str, Sample | SlideSample | None] = {}
        self.problems: dict[str, str] = {}  # sample id → why its folder cannot be read
        stack.callback(self.release_all)

    def release(self, sample_id: str) -> None:
        """Close the sample's files (it is opened again if asked for later)."""
        sample = self._opened.pop(sample_id, None)
        if sample is not None:
            sample.close()

    def release_all(self) -> None:
        for sample_id in list(self._opened):
            self.release(sample_id)

    def get(self, sample_id: str) -> Sample | SlideSample | None:
        """The sample as read from its folder; ``None`` (reason in :attr:`problems`) if unreadable."""
        if sample_id not in self._opened:
            self._opened[sample_id] = self._open(sample_id)
        return self._opened[sample_id]

    def patch(self, sample_id: str, x: float, y: float) -> np.ndarray | None:
        """The patch the embedding at full-resolution pixel ``(x, y)`` saw; ``None`` if unreadable."""
        sample = self.get(sample_id)
        if sample is None:
            return None
        size_um = float(self._store.sample_record(sample_id).meta.patch_um)
        return sample.read_patch(x, y, size_um=size_um, size_px=PATCH_PX)

    def _open(self, sample_id: str) -> Sample | SlideSample | None:
        if sample_id in self.problems:
            return None  # tried before: say it once
        try:
            meta = self._store.sample_record(sample_id).meta
            # The image given at embedding time (or the H&E-only slide), as it was embedded.
            sample = reopen_sample(meta.source_path, extra=meta.extra, mpp=meta.mpp)
        except (TmescopeError, OSError) as error:
            reason = " ".join(str(error).split())
            self.problems[sample_id] = reason
            log.warning("H&E of %s cannot be read: %s", sample_id, reason)
            return None
        return sample
