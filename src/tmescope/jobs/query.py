"""Querying a cohort store: turn a spot, a region, an image or a sample into hits and a gallery.

The Python twins of ``tmescope query`` live here (re-exported by ``workflows``). A query names
exactly one of four things; :class:`QueryTarget` parses and checks it once, so the search and
the gallery agree on what was asked.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.errors import InvalidParameterError, SampleNotFoundError
from tmescope.io import Sample
from tmescope.io.reopen import reopen_sample
from tmescope.io.slide_sample import SlideSample

if TYPE_CHECKING:
    import pandas as pd

    from tmescope.store import CohortStore

log = logging.getLogger(__name__)

# Side of the thumbnails cut for galleries, in pixels.
THUMB_PX = 224


@dataclass(frozen=True)
class QueryTarget:
    """What a query asks for: exactly one of a spot, a region, an image file or a sample."""

    spot: str | None = None  # "SAMPLE:BARCODE"
    region: str | None = None  # "SAMPLE:X,Y,RADIUS_UM"
    image: Path | None = None  # a patch image file
    sample: str | None = None  # "SAMPLE"

    def __post_init__(self) -> None:
        given = [
            option
            for option, value in (
                ("--spot", self.spot), ("--region", self.region), ("--image", self.image),
                ("--sample", self.sample),
            )
            if value
        ]  # fmt: skip
        if len(given) != 1:
            raise InvalidParameterError(
                "give exactly one of --spot SAMPLE:BARCODE, --region SAMPLE:X,Y,RADIUS_UM, "
                f"--image PATCH.png or --sample SAMPLE; got {', '.join(given) or 'none'}"
            )
        if self.spot:
            _split(self.spot, "--spot", "SAMPLE:BARCODE")
        if self.region:
            self.region_centre()

    @property
    def sample_id(self) -> str | None:
        """The sample the query comes from (``None`` for an image)."""
        if self.spot:
            return _split(self.spot, "--spot", "SAMPLE:BARCODE")[0]
        if self.region:
            return _split(self.region, "--region", "SAMPLE:X,Y,RADIUS_UM")[0]
        return self.sample

    @property
    def barcode(self) -> str:
        """The barcode of a spot query."""
        return _split(str(self.spot), "--spot", "SAMPLE:BARCODE")[1]

    def region_centre(self) -> tuple[float, float, float]:
        """``(x, y, radius_um)`` of a region query."""
        rest = _split(str(self.region), "--region", "SAMPLE:X,Y,RADIUS_UM")[1]
        try:
            x, y, radius = (float(v) for v in rest.split(","))
        except ValueError as exc:
            raise InvalidParameterError(
                f"--region expects SAMPLE:X,Y,RADIUS_UM with three numbers, got {self.region!r}"
            ) from exc
        return x, y, radius


def query_store(
    store: Path | str,
    *,
    spot: str | None = None,
    region: str | None = None,
    image: Path | str | None = None,
    sample: str | None = None,
    k: int = 10,
    exclude_sample: bool = False,
    weights: Path | str | None = None,
    device: str = "auto",
    space: str = "raw",
    model_dir: Path | str | None = None,
) -> pd.DataFrame:
    """Regions of the cohort most like a spot, a region, a patch image or every spot of a sample.

    Twin of ``tmescope query``: exactly one of ``spot="SAMPLE:BARCODE"``,
    ``region="SAMPLE:X,Y,RADIUS_UM"`` (full-resolution pixels, µm), ``image=PATCH.png`` (embedded
    with the store's own encoder; ``weights`` names its weights file when they are not in the
    Hugging Face cache) or ``sample="SAMPLE"``. Returns one row per hit:
    ``query_sample, query, rank, sample_id, barcode, x, y, score``.

    ``space="fused"`` searches the fused embeddings of ``model_dir``'s model (image and
    neighbourhood: "places like this one" rather than "patches like this one"), indexed with
    ``tmescope index --space fused``; spot and sample queries only.
    """
    from tmescope.store import CohortStore
    from tmescope.store.index import load_index, results_frame
    from tmescope.store.search import region_vector, spot_vector

    target = QueryTarget(spot, region, Path(image) if image else None, sample)
    opened = CohortStore.open(store, mode="r")
    sample_id = target.sample_id
    if space != "raw":
        return _query_fused(opened, target, k=k, exclude=exclude_sample, model_dir=model_dir)
    if model_dir is not None:
        raise InvalidParameterError("--model goes with --space fused only")
    index = load_index(opened)
    if target.spot:
        barcode = target.barcode
        queries, labels = spot_vector(opened, str(sample_id), barcode)[None, :], [barcode]
    elif target.region:
        x, y, radius = target.region_centre()
        queries = region_vector(opened, str(sample_id), x, y, radius)[None, :]
        labels = [f"{x:g},{y:g},{radius:g}"]
    elif target.image:
        queries = embed_query_image(opened, target.image, weights=weights, device=device)[None]
        labels = [target.image.name]
    else:
        if sample_id not in opened.sample_ids():
            raise SampleNotFoundError(
                f"no complete sample {sample_id!r} in {store}; it holds "
                f"{', '.join(opened.sample_ids()) or 'none'}"
            )
        queries = opened.read_embeddings(str(sample_id)).astype(np.float32)
        labels = opened.read_barcodes(str(sample_id)).tolist()
    excluded = sample_id if exclude_sample and sample_id else None
    frame = results_frame(index.search(queries, k=k, exclude_sample=excluded))
    frame.insert(0, "query_sample", sample_id or "")
    frame["query"] = [labels[q] for q in frame["query"]]
    return frame


def _query_fused(
    store: CohortStore,
    target: QueryTarget,
    *,
    k: int,
    exclude: bool,
    model_dir: Path | str | None,
) -> pd.DataFrame:
    """A spot or sample query in a model's fused space (its index and its stored fused sets)."""
    from tmescope.fusion.model_dir import load_model
    from tmescope.store.fused import read_fused_sample
    from tmescope.store.index import VectorSpace, load_index, results_frame
    from tmescope.store.search import spot_row

    if model_dir is None:
        raise InvalidParameterError("--space fused needs --model MODEL_DIR")
    if target.region or target.image:
        raise InvalidParameterError(
            "the fused space holds spots and tiles only: query it with --spot or --sample "
            "(or search --region / --image in the raw space)"
        )
    model_id = load_model(model_dir).model_id
    index = load_index(store, space=VectorSpace(model_id))
    sample_id = str(target.sample_id)
    data = read_fused_sample(store, model_id, sample_id)
    barcodes = store.read_barcodes(sample_id)
    if target.spot:
        row = spot_row(store, sample_id, target.barcode)
        position = np.flatnonzero(data.rows == row)
        if position.size == 0:
            raise InvalidParameterError(
                f"{target.spot} has no fused embedding (spots are fused, and grid tiles of "
                "samples embedded with --grid); query a spot"
            )
        queries, labels = data.fused[position], [target.barcode]
    else:
        queries, labels = data.fused, barcodes[data.rows].tolist()
    frame = results_frame(index.search(queries, k=k, exclude_sample=sample_id if exclude else None))
    frame.insert(0, "query_sample", sample_id)
    frame["query"] = [labels[q] for q in frame["query"]]
    return frame


def embed_query_image(
    store: CohortStore,
    image: Path,
    *,
    weights: Path | str | None = None,
    device: str = "auto",
) -> np.ndarray:
    """Embed a patch image with the encoder the store was made with: ``(dim,)`` float32.

    The encoder is rebuilt from the store's fingerprint (its registry name, weights from
    ``weights`` or the local Hugging Face cache) and its own fingerprint must match the store's,
    so that a query is never compared with embeddings of another model. The image is taken as
    one patch: centre-cropped to a square and resized to the encoder's input size.
    """
    from tmescope.embed.pipeline import Embedder, resolve_device
    from tmescope.embed.registry import create_encoder, encoder_fingerprint
    from tmescope.store.fingerprint import check_fingerprint

    patch = read_query_patch(image, size_px=int(store.fingerprint.get("input_px", THUMB_PX)))
    model = store.fingerprint.get("model")
    if not isinstance(model, str):
        raise InvalidParameterError(
            f"{store.path} does not name the encoder it was made with (no 'model' in its "
            "fingerprint); --image needs it: query with --spot, --region or --sample instead"
        )
    torch_device = resolve_device(device)
    encoder = create_encoder(model, weights=weights, device=torch_device)
    check_fingerprint(store.fingerprint, encoder_fingerprint(encoder), where=f"store {store.path}")
    spec = encoder.spec
    embedder = Embedder(encoder, mean=spec.mean, std=spec.std, device=torch_device)
    vector = embedder(patch[None])[0].astype(np.float32)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(vector).all() or norm == 0:
        raise InvalidParameterError(f"the encoder gave a zero or non-finite embedding for {image}")
    return vector / norm


def read_query_patch(image: Path, *, size_px: int) -> np.ndarray:
    """An image file as one ``(size_px, size_px, 3)`` uint8 patch (centre square, resized)."""
    from tmescope.io import open_slide

    with open_slide(image) as slide:
        side = min(slide.width, slide.height)
        x0, y0 = (slide.width - side) / 2, (slide.height - side) / 2
        return slide.read_region(x0, y0, side, side, size=(size_px, size_px))


def write_query_gallery(
    store: Path | str,
    hits: pd.DataFrame,
    out: Path | str,
    *,
    spot: str | None = None,
    region: str | None = None,
    image: Path | str | None = None,
) -> Path:
    """A self-contained HTML gallery: the query patch and its hits, cut from their slides.

    ``hits`` is what :func:`query_store` returned for the same ``spot``, ``region`` or ``image``.
    """
    from tmescope.store import CohortStore
    from tmescope.store.search import spot_row
    from tmescope.viz.gallery import GalleryTile, write_gallery

    if not (spot or region or image):
        raise InvalidParameterError(
            "--html draws a gallery for one --spot, --region or --image query, not --sample"
        )
    target = QueryTarget(spot, region, Path(image) if image else None)
    opened = CohortStore.open(store, mode="r")
    with ExitStack() as stack:
        cut = _PatchCutter(opened, stack)
        if target.image:
            query = GalleryTile(
                read_query_patch(target.image, size_px=THUMB_PX), "query image",
                target.image.name, "",
            )  # fmt: skip
            heading = f"Regions like {target.image.name}"
        else:
            sample_id = str(target.sample_id)
            if target.spot:
                row = spot_row(opened, sample_id, target.barcode)
                x, y = (float(v) for v in opened.read_coords(sample_id)[row])
                label = target.barcode
            else:
                x, y, _ = target.region_centre()
                label = f"region at ({x:.0f}, {y:.0f})"
            query = GalleryTile(
                cut(sample_id, x, y), f"query: {sample_id}", label, f"{sample_id}:{x:.0f},{y:.0f}"
            )
            heading = f"Regions like {sample_id} {label}"
        tiles = [
            GalleryTile(
                cut(h.sample_id, h.x, h.y),
                f"#{h.rank} {h.sample_id}  score {h.score:.3f}",
                f"{h.barcode} at ({h.x:.0f}, {h.y:.0f})",
                f"{h.sample_id}:{h.x:.0f},{h.y:.0f}",
            )
            for h in hits.itertuples(index=False)
        ]
    return write_gallery(query, tiles, Path(out), heading=heading)


def _split(value: str, option: str, shape: str) -> tuple[str, str]:
    sample_id, sep, rest = value.partition(":")
    if not sep or not sample_id or not rest:
        raise InvalidParameterError(f"{option} expects {shape}, got {value!r}")
    return sample_id, rest


class _PatchCutter:
    """Cuts a sample's patch at its embedding field of view, opening each sample once."""

    def __init__(self, store: Any, stack: ExitStack) -> None:
        self._store, self._stack = store, stack
        self._samples: dict[str, tuple[Sample | SlideSample, float]] = {}

    def __call__(self, sample_id: str, x: float, y: float) -> Any:
        if sample_id not in self._samples:
            meta = self._store.sample_record(sample_id).meta
            sample = reopen_sample(meta.source_path, extra=meta.extra, mpp=meta.mpp)
            self._stack.enter_context(sample)
            self._samples[sample_id] = (sample, float(meta.patch_um))
        sample, patch_um = self._samples[sample_id]
        return sample.read_patch(x, y, size_um=patch_um, size_px=THUMB_PX)
