"""The viewer's FastAPI app: a JSON API over a store (and model), deep-zoom tiles, and the page.

Every parameter is checked before it is used: sample ids only ever select among the store's own
samples (never a path), barcodes and features are looked up in arrays, and numbers are bounded.
Errors are ``{"detail": "..."}`` with one readable sentence.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from tmescope.errors import (
    IndexMissingError,
    InvalidParameterError,
    TmescopeError,
)
from tmescope.io.slide_sample import HE_ONLY
from tmescope.viz.app.analysis import (
    COMPARE_FIGURE_KINDS,
    FIGURE_KINDS,
    GROUP_COLUMN,
    CohortAnalysis,
    GroupComparisons,
    NoComparisonError,
)
from tmescope.viz.app.assets import MISSING_MESSAGE, static_dir
from tmescope.viz.app.sample_data import (
    LAYERS,
    MAX_K,
    CohortData,
    PredictionsUnavailableError,
)
from tmescope.viz.app.schemas import (
    Attention,
    AttentionEdge,
    BinTable,
    Comparison,
    ComparisonDesign,
    DeepZoomInfo,
    FeatureAt,
    Interactions,
    Niches,
    SampleInfo,
    SampleSummary,
    Similar,
    SimilarRegion,
    SpotTable,
    SpotValues,
    Values,
    ViewerInfo,
)
from tmescope.viz.app.slide_tiles import PATCH_PX, SlideTiles
from tmescope.viz.app.subspot import SUBSPOT_LAYERS, SubspotMaps, check_feature, check_layer

MAX_LEVEL = 40  # a 2^40-pixel image: far beyond any slide, a bound for the path only
MAX_TILE_INDEX = 1 << 20
JPEG = "image/jpeg"
SPOT_UM = 55.0  # a Visium spot, for samples that did not record their own
# Tiles never change while the viewer runs; the browser may keep them for its session.
_TILE_HEADERS = {"Cache-Control": "private, max-age=3600"}

SampleId = Annotated[str, PathParam(max_length=128, description="a sample id of the store")]
Layer = Annotated[str, Query(description=f"one of {', '.join(LAYERS)}", max_length=16)]
Feature = Annotated[str, Query(description="a gene or TME state name", max_length=256)]
Barcode = Annotated[str, Query(description="a spot barcode or tile name", max_length=256)]
BinLayer = Annotated[str, Query(description=f"one of {', '.join(SUBSPOT_LAYERS)}", max_length=16)]
Population = Annotated[
    str, Query(description="a population, or A|B for an interface", max_length=256)
]
Column = Annotated[str, Query(description="a metadata column of the samples", max_length=64)]
COMPARE_PAIR_SEP = ","  # a pair of populations in /api/compare/figure.png: pair=A,B


def create_app(
    data: CohortData,
    tiles: SlideTiles,
    *,
    assets: Path | None,
    analysis: CohortAnalysis | None = None,
    subspot: SubspotMaps | None = None,
    compare: GroupComparisons | None = None,
) -> FastAPI:
    """The app over ``data``; ``assets`` is the OpenSeadragon folder (``None``: missing);
    ``analysis`` gives niches and interactions, ``subspot`` the sub-spot maps, ``compare`` the
    comparison between groups of samples (each ``None``: started without a model)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        tiles.close()  # the slides' file handles

    def analysed() -> CohortAnalysis:
        if analysis is None:
            raise PredictionsUnavailableError(
                "no niches or interactions: the viewer was started without a model; start it "
                "with `tmescope serve STORE --model MODEL_DIR`"
            )
        return analysis

    def subspotted() -> SubspotMaps:
        if subspot is None:
            raise PredictionsUnavailableError(
                "no sub-spot layers: the viewer was started without a model; start it with "
                "`tmescope serve STORE --model MODEL_DIR`, a model trained with --reference "
                "REF.h5ad --resolution 16"
            )
        return subspot

    def compared() -> GroupComparisons:
        if compare is None:
            raise PredictionsUnavailableError(
                "no comparison between groups: the viewer was started without a model; start it "
                "with `tmescope serve STORE --model MODEL_DIR`, a model trained with --reference "
                "REF.h5ad --resolution 16"
            )
        return compare

    app = FastAPI(
        lifespan=lifespan,
        title="tmescope viewer",
        summary="Measured and predicted maps, attention and similar regions of a cohort store.",
        version="1",
    )
    _add_error_handlers(app)
    static = static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")
    if assets is not None:
        app.mount("/vendor/openseadragon", StaticFiles(directory=assets), name="openseadragon")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/api/info", response_model=ViewerInfo)
    def info() -> ViewerInfo:
        """The store, the model, every sample and where to start (the page's first request:
        it reads the store's records only, however many samples)."""
        summaries = [_summary(data, s) for s in data.sample_ids]
        has_subspot = subspot is not None and subspot.available
        return ViewerInfo(
            store=data.store.path.name,
            model_id=data.model.model_id if data.model is not None else None,
            samples=summaries, start=_start(summaries),
            genes=list(data.model.genes) if data.model is not None else [],
            states=list(data.state_names()),
            assets_missing=None if assets is not None else MISSING_MESSAGE,
            has_subspot=has_subspot,
            populations=list(subspot.populations) if subspot is not None and has_subspot else [],
            comparison=_design(compare),
        )  # fmt: skip

    @app.get("/api/samples", response_model=list[SampleSummary])
    def samples() -> list[SampleSummary]:
        """Every complete sample of the store, from its records (no slide or count is read)."""
        return [_summary(data, s) for s in data.sample_ids]

    @app.get("/api/samples/{sample_id}", response_model=SampleInfo)
    def sample(sample_id: SampleId) -> SampleInfo:
        """One sample opened: its image's size and the genes and states it can be coloured by."""
        return _sample_info(data, tiles, data.check_sample(sample_id))

    @app.get("/api/samples/{sample_id}/spots", response_model=SpotTable)
    def spots(
        sample_id: SampleId, layer: Layer | None = None, feature: Feature | None = None
    ) -> SpotTable:
        """The sample's spots and tiles; with ``layer`` and ``feature``, one value per row."""
        rows = data.rows(data.check_sample(sample_id))
        values = None
        if (layer is None) != (feature is None):
            raise InvalidParameterError("give layer and feature together, or neither")
        if layer is not None and feature is not None:
            values = _json_floats(data.values(sample_id, layer=layer, feature=feature))
        return SpotTable(
            sample_id=sample_id, n=int(rows.names.size), barcode=rows.names.tolist(),
            kind=rows.kinds.tolist(), x=_pixels(rows.coords[:, 0]), y=_pixels(rows.coords[:, 1]),
            layer=layer, feature=feature, values=values,
        )  # fmt: skip

    @app.get("/api/samples/{sample_id}/values", response_model=Values)
    def values(sample_id: SampleId, layer: Layer, feature: Feature) -> Values:
        """One value of a gene or TME state per row of ``/spots``, and their range."""
        array = data.values(data.check_sample(sample_id), layer=layer, feature=feature)
        return _values(sample_id, layer, feature, array)

    @app.get("/api/samples/{sample_id}/bins", response_model=BinTable)
    def bins(sample_id: SampleId) -> BinTable:
        """The sample's sub-spot bins: their size, the populations and each bin's centre
        (the first request predicts the sample's maps: a few seconds)."""
        got = subspotted().bins(data.check_sample(sample_id))
        return BinTable(
            sample_id=sample_id, n=int(got.xy.shape[0]), bin_um=got.bin_um,
            bin_px=round(got.bin_px, 3), populations=list(got.populations),
            x=_pixels(got.xy[:, 0]), y=_pixels(got.xy[:, 1]),
        )  # fmt: skip

    @app.get("/api/samples/{sample_id}/bins/values", response_model=Values)
    def bin_values(sample_id: SampleId, layer: BinLayer, feature: Population) -> Values:
        """One value per bin of ``/bins``: a population's share, its spread over the ensemble,
        its image-only share, or the interface score of two populations (``A|B``)."""
        checked = check_layer(layer)
        maps = subspotted()
        populations = maps.bins(data.check_sample(sample_id)).populations
        check_feature(checked, feature, populations)
        return _values(sample_id, layer, feature, maps.values(sample_id, checked, feature))

    @app.get("/api/samples/{sample_id}/spot", response_model=SpotValues)
    def spot_values(sample_id: SampleId, spot: Barcode) -> SpotValues:
        """Every gene and TME state at one spot or tile, measured and predicted."""
        rows = data.rows(data.check_sample(sample_id))
        row = rows.row_of(sample_id, spot)
        return SpotValues(
            sample_id=sample_id, barcode=spot, kind=str(rows.kinds[row]),
            x=float(rows.coords[row, 0]), y=float(rows.coords[row, 1]),
            values=[
                FeatureAt(
                    feature=v.feature, measured=_finite(v.measured),
                    predicted=_finite(v.predicted), std=_finite(v.std),
                )
                for v in data.values_at(sample_id, spot)
            ],
        )  # fmt: skip

    @app.get("/api/samples/{sample_id}/attention", response_model=Attention)
    def attention(sample_id: SampleId, spot: Barcode) -> Attention:
        """The neighbours a spot attended to in the model's last attention layer."""
        rows = data.rows(data.check_sample(sample_id))
        row = rows.row_of(sample_id, spot)
        edges = data.attention(sample_id, spot)
        return Attention(
            sample_id=sample_id, barcode=spot,
            x=float(rows.coords[row, 0]), y=float(rows.coords[row, 1]),
            edges=[AttentionEdge(**vars(e)) for e in edges],
        )  # fmt: skip

    @app.get("/api/query", response_model=Similar)
    def query(
        sample: Annotated[str, Query(max_length=128, description="the query's sample id")],
        spot: Barcode,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="how many regions")] = 8,
        space: Annotated[
            str, Query(max_length=8, description="raw (the image) or fused (image + neighbours)")
        ] = "raw",
    ) -> Similar:
        """The ``k`` regions of the cohort most like a spot (itself left out), by embedding."""
        hits = data.similar(data.check_sample(sample), spot, k=k, space=space)
        return Similar(
            sample_id=sample, barcode=spot, k=k,
            hits=[
                SimilarRegion(
                    rank=h.rank, sample=h.sample_id, barcode=h.barcode, x=h.x, y=h.y,
                    score=h.score, thumb=_thumb_url(h.sample_id, h.x, h.y),
                )
                for h in hits
            ],
        )  # fmt: skip

    @app.get("/api/samples/{sample_id}/thumb", response_class=Response)
    def thumb(
        sample_id: SampleId,
        x: Annotated[float, Query(description="full-resolution pixels")],
        y: Annotated[float, Query(description="full-resolution pixels")],
        size: Annotated[int, Query(ge=PATCH_PX[0], le=PATCH_PX[1])] = 160,
    ) -> Response:
        """A JPEG patch of the slide at the embedding's field of view around ``(x, y)``."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidParameterError(f"x and y must be finite numbers, got {x}, {y}")
        jpeg = tiles.patch(data.check_sample(sample_id), x, y, size_px=size)
        return Response(jpeg, media_type=JPEG, headers=_TILE_HEADERS)

    @app.get("/api/samples/{sample_id}/thumbnail.jpg", response_class=Response)
    def thumbnail(sample_id: SampleId) -> Response:
        """The whole slide, 1024 px on its long side at most."""
        jpeg = tiles.thumbnail(data.check_sample(sample_id))
        return Response(jpeg, media_type=JPEG, headers=_TILE_HEADERS)

    @app.get("/api/samples/{sample_id}/dzi", response_model=DeepZoomInfo)
    def dzi(sample_id: SampleId) -> DeepZoomInfo:
        """The geometry of the sample's deep-zoom pyramid, in full-resolution pixels."""
        dz = tiles.deep_zoom(data.check_sample(sample_id))
        return DeepZoomInfo(
            width=dz.width, height=dz.height, tile_size=dz.tile_size, max_level=dz.max_level,
            tile_url=f"/api/samples/{sample_id}/tiles/{{level}}/{{col}}_{{row}}.jpg",
        )  # fmt: skip

    @app.get("/api/samples/{sample_id}/tiles/{level}/{col}_{row}.jpg", response_class=Response)
    def tile(
        sample_id: SampleId,
        level: Annotated[int, PathParam(ge=0, le=MAX_LEVEL)],
        col: Annotated[int, PathParam(ge=0, le=MAX_TILE_INDEX)],
        row: Annotated[int, PathParam(ge=0, le=MAX_TILE_INDEX)],
    ) -> Response:
        """One JPEG tile of the pyramid (cropped at the right and bottom edges)."""
        jpeg = tiles.tile(data.check_sample(sample_id), level, col, row)
        return Response(jpeg, media_type=JPEG, headers=_TILE_HEADERS)

    @app.get("/api/samples/{sample_id}/niches", response_model=Niches)
    def niches(sample_id: SampleId) -> Niches:
        """The cohort's niches and, per row of ``/spots``, the row's niche (null: none)."""
        names, labels = analysed().niches(data.check_sample(sample_id))
        return Niches(
            sample_id=sample_id, names=names,
            labels=[int(v) if v >= 0 else None for v in labels.tolist()],
        )  # fmt: skip

    @app.get("/api/interactions", response_model=Interactions)
    def interactions(
        sample: Annotated[
            str | None, Query(max_length=128, description="a sample id; none: the cohort")
        ] = None,
    ) -> Interactions:
        """Who meets whom: the strongest pairs of dominant TME states, a sample's or pooled."""
        scope = None if sample is None else data.check_sample(sample)
        body = analysed().interactions(scope)
        query = {} if scope is None else {"sample": scope}
        figures: dict[str, str] = {
            str(kind): f"/api/interactions/figure.png?{urlencode({**query, 'kind': kind})}"
            for kind in FIGURE_KINDS
        }
        return Interactions(**body, figures=figures)

    @app.get("/api/interactions/figure.png", response_class=Response)
    def interaction_figure(
        kind: Annotated[str, Query(description="enrichment or cooccurrence", max_length=16)],
        sample: Annotated[
            str | None, Query(max_length=128, description="a sample id; none: the cohort")
        ] = None,
    ) -> Response:
        """The enrichment heatmap or the co-occurrence curves, as PNG."""
        if kind not in FIGURE_KINDS:
            raise InvalidParameterError(
                f"kind must be one of {', '.join(FIGURE_KINDS)}, got {kind!r}"
            )
        scope = None if sample is None else data.check_sample(sample)
        png = analysed().figure(scope, kind)  # kind is one of FIGURE_KINDS: checked above
        return Response(png, media_type="image/png", headers=_TILE_HEADERS)

    @app.get("/api/compare", response_model=Comparison)
    def comparison(by: Column = GROUP_COLUMN) -> Comparison:
        """What differs between the groups of a metadata column (``group`` by default), with
        patients as the units, and each section's immune phenotype: ``tmescope compare``'s
        JSON (the first request reads or predicts every section's sub-spot maps)."""
        column = _check_column(by)
        body = compared().comparison(column)
        query = {} if column == GROUP_COLUMN else {"by": column}
        figures = {
            kind: f"/api/compare/figure.png?{urlencode({**query, 'kind': kind})}"
            for kind in ("differences", "phenotypes")
        }
        return Comparison(**body, figures=figures)

    @app.get("/api/compare/figure.png", response_class=Response)
    def comparison_figure(
        kind: Annotated[str, Query(description="differences, phenotypes or pair", max_length=16)],
        by: Column = GROUP_COLUMN,
        pair: Annotated[
            str | None, Query(description="with kind=pair: two populations, A,B", max_length=513)
        ] = None,
    ) -> Response:
        """The pairs' differences with their intervals, each section's immune phenotype by
        group, or one pair patient by patient (``kind=pair&pair=A,B``), as PNG."""
        if kind not in COMPARE_FIGURE_KINDS:
            raise InvalidParameterError(
                f"kind must be one of {', '.join(COMPARE_FIGURE_KINDS)}, got {kind!r}"
            )
        if (kind == "pair") != (pair is not None):
            raise InvalidParameterError("pair=A,B goes with kind=pair, and kind=pair needs it")
        names = None
        if pair is not None:
            parts = pair.split(COMPARE_PAIR_SEP)
            if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
                raise InvalidParameterError(
                    f"pair must be two different populations, as A,B; got {pair!r}"
                )
            names = (parts[0], parts[1])
        column = _check_column(by)
        png = compared().figure(column, kind, names)  # kind is one of COMPARE_FIGURE_KINDS
        return Response(png, media_type="image/png", headers=_TILE_HEADERS)

    return app


def _check_column(by: str) -> str:
    column = by.strip()
    if not column:
        raise InvalidParameterError("by must name a metadata column of the samples, e.g. group")
    return column


def _design(compare: GroupComparisons | None) -> ComparisonDesign | None:
    """Whether the samples' ``group`` column can be compared (cheap: their metadata only); null
    without a model with a sub-spot model."""
    if compare is None or not compare.available:
        return None
    try:
        return ComparisonDesign(ready=True, **compare.design(GROUP_COLUMN))
    except TmescopeError as why:
        return ComparisonDesign(by=GROUP_COLUMN, ready=False, why=" ".join(str(why).split()))


def _summary(data: CohortData, sample_id: str) -> SampleSummary:
    record = data.store.sample_record(sample_id)
    extra = record.meta.extra
    return SampleSummary(
        id=sample_id, n_spots=record.n_spots, n_tiles=record.n_tiles, mpp=record.meta.mpp,
        spot_diameter_um=float(extra.get("spot_diameter_um") or SPOT_UM),
        has_counts=record.has_counts, he_only=extra.get("platform") == HE_ONLY,
        has_predictions=data.has_predictions,
    )  # fmt: skip


def _start(samples: list[SampleSummary]) -> str | None:
    """Where a newcomer should land: spots with measured values to colour, not a bare slide."""
    for wanted in (lambda s: s.n_spots > 0 and s.has_counts, lambda s: s.n_spots > 0):
        found = next((s.id for s in samples if wanted(s)), None)
        if found is not None:
            return found
    return samples[0].id if samples else None


def _sample_info(data: CohortData, tiles: SlideTiles, sample_id: str) -> SampleInfo:
    record = data.store.sample_record(sample_id)
    slide_error = None
    try:
        dz = tiles.deep_zoom(sample_id)
        width, height = dz.width, dz.height
    except TmescopeError as error:  # the slide was moved or deleted since it was embedded
        slide_error = " ".join(str(error).split())
        far = data.rows(sample_id).coords.max(axis=0) if record.n else np.zeros(2)
        width, height = math.ceil(float(far[0])) + 1, math.ceil(float(far[1])) + 1
    return SampleInfo(
        **_summary(data, sample_id).model_dump(), width=width, height=height,
        slide_error=slide_error, genes=list(data.genes(sample_id)),
        states=list(data.state_names()),
    )  # fmt: skip


def _values(sample_id: str, layer: str, feature: str, array: np.ndarray) -> Values:
    finite = array[np.isfinite(array)]
    return Values(
        sample_id=sample_id, layer=layer, feature=feature, values=_json_floats(array),
        min=float(finite.min()) if finite.size else None,
        max=float(finite.max()) if finite.size else None,
    )  # fmt: skip


def _thumb_url(sample_id: str, x: float, y: float) -> str:
    query = urlencode({"x": f"{x:.1f}", "y": f"{y:.1f}", "size": 160})
    return f"/api/samples/{sample_id}/thumb?{query}"


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def _pixels(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.round(values.astype(np.float64), 1)]


def _json_floats(values: np.ndarray) -> list[float | None]:
    """Floats rounded for the wire (4 significant decimals is finer than any colour scale),
    NaN as ``null``, which JSON has and NaN has not."""
    rounded = np.round(values.astype(np.float64), 4)
    return [None if not math.isfinite(v) else v for v in rounded.tolist()]


# Which status each kind of error gets; the first matching class wins.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (PredictionsUnavailableError, 409),
    (NoComparisonError, 409),
    (IndexMissingError, 409),
    (LookupError, 404),
    (InvalidParameterError, 422),
    (TmescopeError, 409),
)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TmescopeError)
    def tmescope_error(request: Request, exc: TmescopeError) -> JSONResponse:
        status = next(code for kind, code in _STATUS if isinstance(exc, kind))
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=status)

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default is a list of records; one sentence is what a person can read.
        parts = []
        for error in exc.errors():
            where = " ".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)
