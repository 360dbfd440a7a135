"""Python twins of the CLI commands: each joins the rooms for one job.

The CLI only parses arguments and prints; everything it does can be done from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.embed_job import (
    EmbedSettings,
    EmbedSummary,
    ProgressReporter,
    SampleInput,
    embed_sample_into_store,
)
from tmescope.errors import InvalidParameterError, SampleNotFoundError
from tmescope.io import Sample, read_visium

if TYPE_CHECKING:
    import pandas as pd

    from tmescope.store import SampleSummary as StoreSampleSummary
    from tmescope.store import StoreInfo
    from tmescope.store.index import IndexInfo

log = logging.getLogger(__name__)


def describe_sample(
    path: Path | str,
    *,
    image: Path | str | None = None,
    bin_size_um: int | None = None,
    mpp: float | None = None,
) -> dict[str, Any]:
    """What ``tmescope info`` prints: counts, resolution and image of one Space Ranger run."""
    with read_visium(path, image=image, bin_size_um=bin_size_um, mpp=mpp) as sample:
        return sample_summary(sample)


def sample_summary(sample: Sample) -> dict[str, Any]:
    """A JSON-ready summary of a sample."""
    slide = sample.slide
    return {
        "sample_id": sample.sample_id,
        "platform": sample.platform,
        "source": str(sample.source),
        "n_spots": sample.n_spots,
        "n_in_tissue": sample.n_in_tissue,
        "n_genes": sample.n_genes,
        "mpp": round(sample.mpp, 6),
        "mpp_source": sample.mpp_source,
        "spot_diameter_um": sample.spot_diameter_um,
        "bin_size_um": sample.bin_size_um,
        "software_version": (sample.metadata or {}).get("software_version"),
        "image": {
            "path": str(slide.path),
            "kind": sample.image_kind,
            "width": slide.width,
            "height": slide.height,
            "levels": len(slide.levels),
            "level_sizes": [[lvl.width, lvl.height] for lvl in slide.levels],
            "mpp": round(sample.image_mpp, 6),
            "backend": slide.backend,
        },
    }


def synthesize_cohort(
    out: Path | str,
    *,
    n_samples: int,
    n_spots: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write a synthetic cohort in Space Ranger layout (twin of ``tmescope synth``)."""
    from tmescope.datasets import write_synthetic_cohort

    return write_synthetic_cohort(
        Path(out), n_samples=n_samples, n_spots=n_spots, seed=seed, progress=progress
    )


DEMO_ENCODER = "test-vit-tiny"  # random weights, no download: shows the machinery, not biology


@dataclass(frozen=True)
class DemoResult:
    """What the demo made and where."""

    out_dir: Path
    cohort_dir: Path
    overview: Path
    store: Path
    samples: list[dict[str, Any]] = field(default_factory=list)
    embedded: list[EmbedSummary] = field(default_factory=list)
    index_rows: int = 0


def run_demo(
    out_dir: Path | str,
    *,
    n_samples: int = 4,
    n_spots: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    embed_progress: ProgressReporter | None = None,
    encoder: str = DEMO_ENCODER,
) -> DemoResult:
    """The main job on the embedded synthetic cohort (twin of ``tmescope demo``).

    Synthesise a cohort, read every sample back with its full-resolution slide, summarise it,
    draw an overview, embed every spot into ``out_dir/cohort.zarr`` and index it for
    similarity search. Later stages (train, interactions, report) join here.
    """
    from tmescope.viz.overview import plot_cohort_overview

    out_dir = Path(out_dir)
    cohort_dir = out_dir / "cohort"
    sample_dirs = synthesize_cohort(
        cohort_dir, n_samples=n_samples, n_spots=n_spots, seed=seed, progress=progress
    )
    with ExitStack() as stack:
        samples = [
            stack.enter_context(read_visium(d, image=fullres_image_of(d))) for d in sample_dirs
        ]
        if progress is not None:
            progress(f"read back {len(samples)} samples with their full-resolution slides")
        overview = plot_cohort_overview(samples, out_dir / "cohort_overview.png")
        summaries = [sample_summary(s) for s in samples]
    store = out_dir / "cohort.zarr"
    if progress is not None:
        progress(f"embedding {len(sample_dirs)} samples with {encoder} into {store}")
    embedded = embed_samples(
        [SampleInput(d, image=fullres_image_of(d)) for d in sample_dirs],
        store=store, encoder=encoder, device="auto", progress=embed_progress,
    )  # fmt: skip
    if progress is not None:
        progress(f"indexing {store} for similarity search")
    index = build_cohort_index(store)
    return DemoResult(
        out_dir=out_dir, cohort_dir=cohort_dir, overview=overview, store=store,
        samples=summaries, embedded=embedded, index_rows=index.n,
    )  # fmt: skip


def fullres_image_of(sample_dir: Path) -> Path | None:
    """The full-resolution slide the synthetic cohort writes beside a sample's ``outs/``."""
    images = sorted(sample_dir.glob("*_he.tif"))
    return images[0] if images else None


def embed_samples(
    items: Sequence[SampleInput],
    *,
    store: Path | str,
    encoder: str,
    weights: Path | str | None = None,
    device: str = "auto",
    settings: EmbedSettings | None = None,
    scheduler: str | None = None,
    progress: ProgressReporter | None = None,
    on_done: Callable[[EmbedSummary], None] | None = None,
) -> list[EmbedSummary]:
    """Embed samples into a cohort store (twin of ``tmescope embed``).

    Without ``scheduler`` the samples run in turn in this process; with ``local:N`` or a
    scheduler address, one Dask task per sample. The encoder is built, and the store's
    fingerprint checked, before any sample is touched.
    """
    from tmescope.cluster import EncoderRecipe, embed_on_dask
    from tmescope.embed.registry import encoder_fingerprint
    from tmescope.store import CohortStore

    settings = settings or EmbedSettings()
    if not items:
        raise InvalidParameterError("no samples given; pass one or more Space Ranger folders")
    store_path = Path(store)
    recipe = EncoderRecipe(encoder, Path(weights) if weights else None, device)
    model, torch_device = recipe.build()
    # Refuse a store of another encoder before reading any sample (and without writing).
    CohortStore.check_compatible(store_path, encoder_fingerprint(model))
    if scheduler:
        del model  # each worker builds its own
        return embed_on_dask(
            items, scheduler=scheduler, store_path=store_path, recipe=recipe,
            settings=settings, on_done=on_done,
        )  # fmt: skip
    summaries = []
    for item in items:
        summary = embed_sample_into_store(
            item, store_path=store_path, encoder=model, device=torch_device,
            settings=settings, progress=progress,
        )  # fmt: skip
        if on_done is not None:
            on_done(summary)
        summaries.append(summary)
    return summaries


def store_summary(store: Path | str) -> list[StoreSampleSummary]:
    """One summary per sample of a store (twin of ``tmescope store ls``)."""
    from tmescope.store import CohortStore

    return CohortStore.open(store, mode="r").summary()


def store_info(store: Path | str) -> StoreInfo:
    """The store's header and samples (twin of ``tmescope store info``)."""
    from tmescope.store import CohortStore

    return CohortStore.open(store, mode="r").info()


def remove_samples(store: Path | str, sample_ids: Sequence[str]) -> list[str]:
    """Remove samples from a store (twin of ``tmescope store rm``); all ids are checked first."""
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="a")
    present = set(opened.sample_ids(include_incomplete=True))
    missing = [s for s in sample_ids if s not in present]
    if missing:
        raise SampleNotFoundError(
            f"{', '.join(missing)} not in {store}; it holds {', '.join(sorted(present)) or 'no samples'}"
        )
    for sample_id in sample_ids:
        opened.remove_sample(sample_id)
    return list(sample_ids)


def verify_store(store: Path | str) -> list[str]:
    """Problems found in a store, empty when it is sound (twin of ``tmescope store verify``)."""
    from tmescope.store import CohortStore

    return CohortStore.open(store, mode="r").verify()


def build_cohort_index(store: Path | str, *, kind: str = "auto") -> IndexInfo:
    """Build (or refresh) the similarity index of a store (twin of ``tmescope index``).

    ``auto`` refreshes incrementally where the index type allows and rebuilds otherwise; an
    explicit kind always rebuilds with that kind.
    """
    from tmescope.store import CohortStore
    from tmescope.store.index import build_index, refresh_index

    opened = CohortStore.open(store, mode="a")
    if kind == "auto":
        return refresh_index(opened)
    return build_index(opened, kind=kind)  # type: ignore[arg-type]


def query_store(
    store: Path | str,
    *,
    spot: str | None = None,
    region: str | None = None,
    sample: str | None = None,
    k: int = 10,
    exclude_sample: bool = False,
) -> pd.DataFrame:
    """Regions of the cohort most like a spot, a region or every spot of a sample.

    Twin of ``tmescope query``: exactly one of ``spot="SAMPLE:BARCODE"``,
    ``region="SAMPLE:X,Y,RADIUS_UM"`` (full-resolution pixels, µm) or ``sample="SAMPLE"``.
    Returns one row per hit: ``query, rank, sample_id, barcode, x, y, score``.
    """
    from tmescope.store import CohortStore
    from tmescope.store.index import load_index, results_frame
    from tmescope.store.search import region_vector, spot_vector

    given = [
        name
        for name, value in (("--spot", spot), ("--region", region), ("--sample", sample))
        if value
    ]
    if len(given) != 1:
        raise InvalidParameterError(
            f"give exactly one of --spot SAMPLE:BARCODE, --region SAMPLE:X,Y,RADIUS_UM or "
            f"--sample SAMPLE; got {', '.join(given) or 'none'}"
        )
    opened = CohortStore.open(store, mode="r")
    index = load_index(opened)
    if spot:
        sample_id, barcode = _split_query(spot, "--spot", "SAMPLE:BARCODE")
        queries, labels = spot_vector(opened, sample_id, barcode)[None, :], [barcode]
    elif region:
        sample_id, rest = _split_query(region, "--region", "SAMPLE:X,Y,RADIUS_UM")
        try:
            x, y, radius = (float(v) for v in rest.split(","))
        except ValueError as exc:
            raise InvalidParameterError(
                f"--region expects SAMPLE:X,Y,RADIUS_UM with three numbers, got {region!r}"
            ) from exc
        queries, labels = region_vector(opened, sample_id, x, y, radius)[None, :], [rest]
    else:
        sample_id = str(sample)
        if sample_id not in opened.sample_ids():
            raise SampleNotFoundError(
                f"no complete sample {sample_id!r} in {store}; it holds "
                f"{', '.join(opened.sample_ids()) or 'none'}"
            )
        queries = opened.read_embeddings(sample_id).astype(np.float32)
        labels = opened.read_barcodes(sample_id).tolist()
    results = index.search(queries, k=k, exclude_sample=sample_id if exclude_sample else None)
    frame = results_frame(results)
    frame.insert(0, "query_sample", sample_id)
    frame["query"] = [labels[q] for q in frame["query"]]
    return frame


def _split_query(value: str, option: str, shape: str) -> tuple[str, str]:
    sample_id, sep, rest = value.partition(":")
    if not sep or not sample_id or not rest:
        raise InvalidParameterError(f"{option} expects {shape}, got {value!r}")
    return sample_id, rest


def write_query_gallery(
    store: Path | str,
    hits: pd.DataFrame,
    out: Path | str,
    *,
    spot: str | None = None,
    region: str | None = None,
) -> Path:
    """A self-contained HTML gallery: the query patch and its hits, cut from their slides.

    ``hits`` is what :func:`query_store` returned for the same ``spot`` or ``region``.
    """
    from tmescope.store import CohortStore
    from tmescope.store.search import spot_row
    from tmescope.viz.gallery import GalleryTile, write_gallery

    if not (spot or region) or (spot and region):
        raise InvalidParameterError("--html draws a gallery for one --spot or one --region query")
    opened = CohortStore.open(store, mode="r")
    if spot:
        sample_id, barcode = _split_query(spot, "--spot", "SAMPLE:BARCODE")
        row = spot_row(opened, sample_id, barcode)
        x, y = (float(v) for v in opened.read_coords(sample_id)[row])
        label = barcode
    else:
        sample_id, rest = _split_query(str(region), "--region", "SAMPLE:X,Y,RADIUS_UM")
        x, y = (float(v) for v in rest.split(",")[:2])
        label = f"region at ({x:.0f}, {y:.0f})"
    with ExitStack() as stack:
        cut = _PatchCutter(opened, stack)
        query = GalleryTile(
            cut(sample_id, x, y), f"query: {sample_id}", label, f"{sample_id}:{x:.0f},{y:.0f}"
        )
        tiles = [
            GalleryTile(
                cut(h.sample_id, h.x, h.y),
                f"#{h.rank} {h.sample_id}  score {h.score:.3f}",
                f"{h.barcode} at ({h.x:.0f}, {h.y:.0f})",
                f"{h.sample_id}:{h.x:.0f},{h.y:.0f}",
            )
            for h in hits.itertuples(index=False)
        ]
    return write_gallery(query, tiles, Path(out), heading=f"Regions like {sample_id} {label}")


class _PatchCutter:
    """Cuts a sample's patch at its embedding field of view, opening each sample once."""

    def __init__(self, store: Any, stack: ExitStack) -> None:
        self._store, self._stack = store, stack
        self._samples: dict[str, tuple[Sample, float]] = {}

    def __call__(self, sample_id: str, x: float, y: float) -> Any:
        if sample_id not in self._samples:
            meta = self._store.sample_record(sample_id).meta
            extra = dict(meta.extra)
            image = extra.get("image") if extra.get("image_kind") == "fullres" else None
            sample = self._stack.enter_context(read_visium(meta.source_path, image=image))
            self._samples[sample_id] = (sample, float(meta.patch_um))
        sample, patch_um = self._samples[sample_id]
        return sample.read_patch(x, y, size_um=patch_um, size_px=224)
