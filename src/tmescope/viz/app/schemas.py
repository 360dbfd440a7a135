"""The JSON shapes of the viewer's API (they document it in its OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SampleSummary(BaseModel):
    """One sample of the store as the store's records describe it (its slide and counts
    unread: listing forty samples reads none of them)."""

    id: str
    n_spots: int
    n_tiles: int
    mpp: float = Field(description="µm per full-resolution pixel")
    spot_diameter_um: float
    has_counts: bool = Field(description="measured expression: the measured layer")
    he_only: bool = Field(description="an H&E-only slide (no spots; tiles only)")
    has_predictions: bool = Field(description="a model was given: predicted and std layers")


class SampleInfo(SampleSummary):
    """One sample opened: its image's size and what it can be coloured by."""

    width: int = Field(description="image width in full-resolution pixels")
    height: int = Field(description="image height in full-resolution pixels")
    slide_error: str | None = Field(description="why the slide cannot be shown, when it cannot")
    genes: list[str] = Field(description="the model's genes, else every measured gene")
    states: list[str] = Field(description="the model's TME states (none without a model)")


class ComparisonDesign(BaseModel):
    """Whether the groups of a metadata column can be compared, read from the samples' metadata
    alone (nothing is predicted): who would be compared, or why not."""

    by: str = Field(description="the metadata column (group unless asked otherwise)")
    ready: bool = Field(description="a comparison can be made: GET /api/compare")
    why: str | None = Field(default=None, description="why not, when it cannot")
    subject: str | None = Field(default=None, description="the units: patient, else sample")
    groups: dict[str, int] = Field(
        default_factory=dict, description="each group's number of units (patients)"
    )
    n_samples: int = 0
    left_out: list[str] = Field(
        default_factory=list, description="samples without the column, or with it empty"
    )


class ViewerInfo(BaseModel):
    """The store being viewed, the model (if any), where the page starts and whether the page's
    libraries are here."""

    store: str
    model_id: str | None
    samples: list[SampleSummary]
    start: str | None = Field(
        description="the sample the page opens first: the first with measured spots (else the "
        "first with spots, else the first)"
    )
    genes: list[str] = Field(description="the model's genes (without a model: per sample)")
    states: list[str] = Field(description="the model's TME states (none without a model)")
    assets_missing: str | None = Field(description="why the page cannot draw, when it cannot")
    has_subspot: bool = Field(description="the model has a sub-spot model: /bins layers")
    populations: list[str] = Field(description="the sub-spot model's populations (or none)")
    comparison: ComparisonDesign | None = Field(
        default=None,
        description="whether the samples' groups (their `group` column) can be compared; null "
        "without a model with a sub-spot model",
    )


class SpotTable(BaseModel):
    """A sample's rows in store order (spots, then grid tiles) and, on request, one value each."""

    sample_id: str
    n: int
    barcode: list[str]
    kind: list[str] = Field(description="spot, tile or cover (a patch cut for sub-spot bins only)")
    x: list[float] = Field(description="full-resolution pixels")
    y: list[float]
    layer: str | None = None
    feature: str | None = None
    values: list[float | None] | None = Field(
        default=None, description="one per row; null where undefined (a tile's measured value)"
    )


class Values(BaseModel):
    """One value per row of :class:`SpotTable` (or per bin of :class:`BinTable`), for
    recolouring without reloading the rows."""

    sample_id: str
    layer: str
    feature: str
    values: list[float | None]
    min: float | None
    max: float | None


class BinTable(BaseModel):
    """A sample's sub-spot bins, squares of side ``bin_px`` centred on ``x``, ``y``, and the
    populations their layers show."""

    sample_id: str
    n: int
    bin_um: float
    bin_px: float = Field(description="the side of a bin in full-resolution pixels")
    populations: list[str]
    x: list[float] = Field(description="bin centres, full-resolution pixels")
    y: list[float]


class FeatureAt(BaseModel):
    feature: str
    measured: float | None
    predicted: float | None
    std: float | None


class SpotValues(BaseModel):
    """Every gene and TME state at one spot or tile, in each layer (null where none)."""

    sample_id: str
    barcode: str
    kind: str
    x: float
    y: float
    values: list[FeatureAt]


class AttentionEdge(BaseModel):
    barcode: str
    kind: str
    x: float
    y: float
    weight: float = Field(description="attention, mean over heads, of the last layer")


class Attention(BaseModel):
    """What a spot (or tile) attended to in the model's last attention layer."""

    sample_id: str
    barcode: str
    x: float
    y: float
    edges: list[AttentionEdge]


class SimilarRegion(BaseModel):
    rank: int
    sample: str
    barcode: str
    x: float
    y: float
    score: float = Field(description="cosine similarity of the embeddings")
    thumb: str = Field(description="URL of a JPEG patch of the slide around the region")


class Similar(BaseModel):
    sample_id: str
    barcode: str
    k: int
    hits: list[SimilarRegion]


class DeepZoomInfo(BaseModel):
    """The tile pyramid of a sample: level ``max_level`` is full resolution."""

    width: int
    height: int
    tile_size: int
    max_level: int
    tile_url: str = Field(description="template with {level}, {col}, {row}")


class Niches(BaseModel):
    """The cohort's niches (names) and each row's niche, in the order of ``/spots``."""

    sample_id: str
    names: list[str]
    labels: list[int | None]


class Interactions(BaseModel):
    """The strongest pairs of labels (dominant TME states) of a sample, or pooled over the cohort.

    Pooled pairs carry ``mean_z``, ``std_z`` (spread over samples), ``stouffer_z`` and
    ``n_samples``; a sample's carry ``z``. ``figures`` are the URLs of the heatmap and curves.
    """

    sample_id: str | None
    on: str
    n_perms: int
    pooled: bool
    categories: list[str]
    pairs: list[dict[str, str | float | int | None]]
    figures: dict[str, str]
    n_samples: int | None = None
    counts: dict[str, int] | None = None


class Comparison(BaseModel):
    """What differs between the groups of a metadata column, with patients as the units (the
    JSON of ``tmescope compare``, its paths left out).

    ``pairs``: one row per pair of populations (and contrast of two groups), smallest q first:
    ``a``, ``b``, ``groups``, ``effect`` (first group minus second, log co-location ratio) with
    its bootstrap interval ``low``/``high``, ``p`` (Welch), ``p_perm`` (exact permutation of the
    patients' labels), ``q`` (Benjamini-Hochberg), ``higher_in``, ``n_patients``,
    ``mean_log_ratio`` and ``naive_p`` (every bin as independent: not used). ``samples``: each
    section's group, patient and immune phenotype call with its scores.
    """

    by: str
    subject: str
    groups: list[str]
    populations: list[str]
    radius_um: float | None
    resolution_um: float
    test: str
    naive_test: str
    pairs: list[dict[str, Any]]
    untested: list[dict[str, Any]]
    abundances: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    n_significant: int = Field(description="pairs at q < 0.05")
    phenotype_counts: dict[str, dict[str, int]] = Field(
        description="per group, how many sections were called each immune phenotype"
    )
    left_out: list[str] = Field(description="samples without the column, or with it empty")
    figures: dict[str, str] = Field(description="URLs of the PNGs: differences, phenotypes")
