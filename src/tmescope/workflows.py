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

from tmescope.embed_job import (
    EmbedSettings,
    EmbedSummary,
    ProgressReporter,
    SampleInput,
    embed_sample_into_store,
)
from tmescope.errors import InvalidParameterError, SampleNotFoundError
from tmescope.fused_job import write_fused as write_fused
from tmescope.interactions_job import InteractionReport as InteractionReport
from tmescope.interactions_job import InteractionSettings as InteractionSettings
from tmescope.interactions_job import run_interactions as run_interactions
from tmescope.io import Sample, read_visium
from tmescope.niche_job import NicheReport as NicheReport
from tmescope.niche_job import find_niches as find_niches
from tmescope.predict_job import predict_sample as predict_sample
from tmescope.query_job import embed_query_image as embed_query_image
from tmescope.query_job import query_store as query_store
from tmescope.query_job import write_query_gallery as write_query_gallery
from tmescope.report_job import write_report as write_report
from tmescope.report_sections import interaction_section, niche_section
from tmescope.train_job import TrainSettings as TrainSettings
from tmescope.train_job import train_model as train_model

if TYPE_CHECKING:
    from tmescope.store import SampleSummary as StoreSampleSummary
    from tmescope.store import StoreInfo
    from tmescope.store.index import IndexInfo, VectorSpace

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
DEMO_GRID_UM = 80.0  # tiles between the 100 µm spots, for predictions at sub-spot resolution


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
    gallery: Path | None = None
    gallery_query: str = ""
    model_dir: Path | None = None
    training: dict[str, Any] = field(default_factory=dict)
    predictions: Path | None = None
    niches: NicheReport | None = None
    interactions: InteractionReport | None = None
    report: Path | None = None


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
    draw an overview, embed every spot into ``out_dir/cohort.zarr``, index it for similarity
    search and write a gallery of the regions most like a lymphocyte-rich spot, then train the
    graph-attention head against its baselines and predict the first sample, spots and the grid
    of tiles between them; find the cohort's niches (scored against the synthetic regions) and
    where its TME populations meet.
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
        settings=EmbedSettings(grid_um=DEMO_GRID_UM),
    )  # fmt: skip
    if progress is not None:
        progress(f"indexing {store} for similarity search")
    index = build_cohort_index(store)
    spot = _demo_query_spot(store, sample_dirs[0])
    if progress is not None:
        progress(f"searching the cohort for regions like {spot}")
    # Hits from the other samples say more, when there are other samples.
    others = len(sample_dirs) > 1
    k = min(8, index.n - (0 if others else 1))
    hits = query_store(store, spot=spot, k=k, exclude_sample=others)
    gallery = write_query_gallery(store, hits, out_dir / "similar_regions.html", spot=spot)
    model_dir, training, predictions = None, {}, None
    niches: NicheReport | None = None
    interactions: InteractionReport | None = None
    if len(sample_dirs) > 1:  # cross-validation needs two samples
        if progress is not None:
            progress("training the graph-attention head against its baselines (cross-validated)")
        trained = train_model(
            store, out_dir / "model", settings=TrainSettings(n_members=3), progress=progress
        )
        model_dir, training = trained.model_dir, trained.report
        first = spot.partition(":")[0]
        predictions = predict_sample(
            store, model_dir, sample=first, grid=True, out=out_dir / f"{first}_predictions.h5ad"
        )
        niches, interactions = _demo_analysis(store, model_dir, sample_dirs, out_dir, progress)
    if progress is not None:
        progress("writing the report")
    sections = []
    if niches is not None and interactions is not None:
        sections = [niche_section(niches), interaction_section(interactions)]
    report = write_report(store, out_dir / "report.html", model_dir=model_dir, sections=sections)
    return DemoResult(
        out_dir=out_dir, cohort_dir=cohort_dir, overview=overview, store=store,
        samples=summaries, embedded=embedded, index_rows=index.n, gallery=gallery,
        gallery_query=spot, model_dir=model_dir, training=training, predictions=predictions,
        niches=niches, interactions=interactions, report=report,
    )  # fmt: skip


def _demo_analysis(
    store: Path,
    model_dir: Path,
    sample_dirs: Sequence[Path],
    out_dir: Path,
    progress: Callable[[str], None] | None,
) -> tuple[NicheReport, InteractionReport]:
    """Niches (scored against the synthetic regions) and the cohort's interactions."""
    import pandas as pd

    regions = out_dir / "regions.csv"
    truth = [pd.read_csv(d / "ground_truth.csv").assign(sample_id=d.name) for d in sample_dirs]
    pd.concat(truth)[["sample_id", "barcode", "region"]].to_csv(regions, index=False)
    if progress is not None:
        progress("finding niches in the fused embeddings (written back into the store)")
    niches = find_niches(store, model_dir, annotations=regions, out=out_dir / "niches")
    build_cohort_index(store, space="fused", model_dir=model_dir)  # the viewer's "in context"
    if progress is not None:
        progress("measuring where TME populations meet (enrichment, co-occurrence)")
    interactions = run_interactions(store, model_dir, out=out_dir / "interactions")
    return niches, interactions


def _demo_query_spot(store: Path, sample_dir: Path) -> str:
    """``SAMPLE:BARCODE`` of the demo's query: the first sample's most lymphocyte-rich spot.

    The synthetic generator writes each spot's cell composition to ``ground_truth.csv``; a
    lymphocyte-rich spot makes a query whose hits a reader can judge by eye.
    """
    import pandas as pd

    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="r")
    known = opened.sample_ids()
    sample_id = sample_dir.name if sample_dir.name in known else known[0]
    barcodes = opened.read_barcodes(sample_id)
    truth = pd.read_csv(sample_dir / "ground_truth.csv")
    truth = truth[truth["barcode"].isin(set(barcodes.tolist()))]
    lymphocytes = truth["t_cell"] + truth["b_cell"]
    barcode = truth["barcode"].iloc[int(lymphocytes.argmax())] if len(truth) else barcodes[0]
    return f"{sample_id}:{barcode}"


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


def build_cohort_index(
    store: Path | str,
    *,
    kind: str = "auto",
    space: str = "raw",
    model_dir: Path | str | None = None,
    device: str = "auto",
) -> IndexInfo:
    """Build (or refresh) the similarity index of a store (twin of ``tmescope index``).

    ``auto`` refreshes incrementally where the index type allows and rebuilds otherwise; an
    explicit kind always rebuilds with that kind. ``space="fused"`` indexes the fused
    embeddings of ``model_dir``'s model instead (written into the store first where missing).
    """
    from tmescope.store import CohortStore
    from tmescope.store.index import build_index, refresh_index

    vectors = _vector_space(store, space, model_dir, device=device)
    opened = CohortStore.open(store, mode="a")
    if kind == "auto":
        return refresh_index(opened, space=vectors)
    return build_index(opened, kind=kind, space=vectors)  # type: ignore[arg-type]


def _vector_space(
    store: Path | str, space: str, model_dir: Path | str | None, *, device: str = "auto"
) -> VectorSpace:
    """The index space asked for; for ``fused``, the model's fused sets brought up to date."""
    from tmescope.store.index import RAW, VectorSpace

    if space == "raw":
        if model_dir is not None:
            raise InvalidParameterError("--model goes with --space fused only")
        return RAW
    if space != "fused":
        raise InvalidParameterError(f"--space must be raw or fused, got {space!r}")
    if model_dir is None:
        raise InvalidParameterError(
            "--space fused needs --model MODEL_DIR: the fused space is a trained model's"
        )
    from tmescope.fused_job import write_fused

    return VectorSpace(write_fused(store, model_dir, device=device).model_id)
