"""What the viewer asks of a cohort's niches and interactions, whoever computes them.

The viewer (this room) draws; computing niches and interaction statistics joins the store, the
model and ``analysis/``, which is the job layer's work (``tmescope.jobs.serve_analysis``). The
app gets an object with these three methods, or ``None`` when it was started without a model. A
``sample_id`` of ``None`` means the cohort: the statistics pooled over every sample.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np

FigureKind = Literal["enrichment", "cooccurrence"]
FIGURE_KINDS: tuple[FigureKind, ...] = ("enrichment", "cooccurrence")


class CohortAnalysis(Protocol):
    def niches(self, sample_id: str) -> tuple[list[str], np.ndarray]:
        """The niche names and, per store row of the sample, its niche (-1 where none)."""
        ...

    def interactions(self, sample_id: str | None) -> dict[str, Any]:
        """JSON-ready statistics of one sample, or of the cohort."""
        ...

    def figure(self, sample_id: str | None, kind: FigureKind) -> bytes:
        """A PNG: the enrichment heatmap or the co-occurrence curves."""
        ...
