"""What the viewer asks of a cohort's niches, interactions and comparison between groups,
whoever computes them.

The viewer (this room) draws; computing niches and interaction statistics joins the store, the
model and ``analysis/``, which is the job layer's work (``tmescope.jobs.serve_analysis``). The
app gets an object with the methods of :class:`CohortAnalysis`, or ``None`` when it was started
without a model. A ``sample_id`` of ``None`` means the cohort: the statistics pooled over every
sample. Likewise :class:`GroupComparisons`: what differs between the groups of a metadata
column of the samples (``tmescope compare``), with patients as the units.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np

from tmescope.errors import StoreError

FigureKind = Literal["enrichment", "cooccurrence"]
FIGURE_KINDS: tuple[FigureKind, ...] = ("enrichment", "cooccurrence")

CompareFigureKind = Literal["differences", "phenotypes", "pair"]
COMPARE_FIGURE_KINDS: tuple[CompareFigureKind, ...] = ("differences", "phenotypes", "pair")
GROUP_COLUMN = "group"  # the column compared unless asked otherwise (as the report's)


class NoComparisonError(StoreError):
    """The samples' metadata cannot be compared: one group, a group of one patient, a patient
    in two groups, or samples without the maps the comparison reads."""


class ColumnNotFoundError(StoreError, LookupError):
    """No sample of the store carries the metadata column asked for."""


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


class GroupComparisons(Protocol):
    @property
    def available(self) -> bool:
        """Whether the model has a sub-spot model, whose maps a comparison reads (else the
        methods below raise, saying how to train one)."""
        ...

    def design(self, by: str) -> dict[str, Any]:
        """Who would be compared, read from the samples' metadata alone (cheap: nothing is
        predicted): ``by``, ``subject`` (``patient``, else ``sample``) and the number of
        ``subject``\\ s per group. Raises :class:`ColumnNotFoundError` when no sample has the
        column, :class:`NoComparisonError` when its groups cannot be compared."""
        ...

    def comparison(self, by: str) -> dict[str, Any]:
        """JSON-ready comparison of the groups of ``by`` (computed on first use, then kept)."""
        ...

    def figure(self, by: str, kind: CompareFigureKind, pair: tuple[str, str] | None) -> bytes:
        """A PNG: the pairs' differences, each section's immune phenotype by group, or one pair
        (``pair``) patient by patient."""
        ...
