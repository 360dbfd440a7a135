"""The main job on the synthetic cohort (twin of ``tmescope demo``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmescope.io import read_visium
from tmescope.jobs.compare import CompareReport, CompareSettings, run_compare
from tmescope.jobs.embed import EmbedSettings, EmbedSummary, ProgressReporter, embed_samples
from tmescope.jobs.embed_sheet import samplesheet_inputs
from tmescope.jobs.index import build_cohort_index
from tmescope.jobs.info import sample_summary
from tmescope.jobs.interactions import InteractionReport, run_interactions
from tmescope.jobs.interfaces import InterfaceReport, InterfaceSettings, run_interfaces
from tmescope.jobs.niches import NicheReport, find_niches
from tmescope.jobs.predict import predict_sample
from tmescope.jobs.predict_bins import predict_subspot
from tmescope.jobs.query import query_store, write_query_gallery
from tmescope.jobs.report import write_report
from tmescope.jobs.report_compare import comparison_section
from tmescope.jobs.report_sections import interaction_section, niche_section, subspot_section
from tmescope.jobs.synth import cohort_samplesheet, fullres_image_of, synthesize_cohort
from tmescope.jobs.train import TrainSettings, train_model

DEMO_ENCODER = "test-vit-tiny"  # random weights, no download: shows the machinery, not biology

DEMO_GRID_UM = 80.0  # tiles between the 100 µm spots, for predictions at sub-spot resolution
DEMO_BIN_UM = 16.0  # sub-spot bins: the store's default, the test encoder's token size
DEMO_SLIDE = "archive_01"  # the H&E-only slide added to the cohort (its file name)
# Planted in turn, one section per patient, so that 4 samples make 2 inflamed and 2 excluded
# patients: the smallest cohort whose groups can be compared with patients as the units.
DEMO_PHENOTYPES = ("inflamed", "excluded")


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
    held_out: tuple[str, ...] = ()
    subspot_predictions: Path | None = None
    interfaces: InterfaceReport | None = None
    report: Path | None = None
    slides: tuple[str, ...] = ()  # H&E-only samples (embed --slide)
    slide_predictions: Path | None = None  # the first one's sub-spot maps
    exports: tuple[Path, ...] = ()  # SpatialData of the cohort, QuPath GeoJSON of the slide
    samplesheet: Path | None = None  # the cohort as embedded: the synthetic sheet + the slide
    comparison: CompareReport | None = None  # inflamed vs excluded (4 samples or more)


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
    graph-attention head against its baselines (and, from the cohort's single-cell reference,
    the sub-spot model) and predict the first sample, spots and the grid of tiles between them;
    find the cohort's niches (scored against the synthetic regions) and where its TME
    populations meet; map every sample at 16 µm bins and where populations meet on them. With
    three samples or more, the last is held out of training altogether, so that its maps are
    honest predictions. One more section, whose expression is thrown away, joins the cohort as
    an H&E-only slide (an archived block): it is embedded with ``embed --slide``, never trained
    on, and mapped from its image alone. The patients (one section each) are planted inflamed and
    excluded in turn; with four samples or more, the report says what differs between the two
    groups (``tmescope compare --by group``).
    """
    from tmescope.viz.overview import plot_cohort_overview

    out_dir = Path(out_dir)
    cohort_dir = out_dir / "cohort"
    sample_dirs = synthesize_cohort(
        cohort_dir, n_samples=n_samples, n_spots=n_spots, seed=seed, progress=progress,
        phenotypes=DEMO_PHENOTYPES, sections_per_patient=1,
    )  # fmt: skip
    with ExitStack() as stack:
        samples = [
            stack.enter_context(read_visium(d, image=fullres_image_of(d))) for d in sample_dirs
        ]
        if progress is not None:
            progress(f"read back {len(samples)} samples with their full-resolution slides")
        overview = plot_cohort_overview(samples, out_dir / "cohort_overview.png")
        summaries = [sample_summary(s) for s in samples]
    store = out_dir / "cohort.zarr"
    slide = _demo_slide(out_dir, n_spots=n_spots, seed=seed)
    sheet = _demo_samplesheet(out_dir, cohort_dir, slide)
    if progress is not None:
        progress(
            f"embedding {len(sample_dirs)} samples and the H&E-only slide {slide.name} of "
            f"{sheet} with {encoder} into {store}"
        )
    embedded = embed_samples(
        samplesheet_inputs(sheet),
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
    interfaces: InterfaceReport | None = None
    held_out: tuple[str, ...] = ()
    subspot_predictions: Path | None = None
    slide_predictions: Path | None = None
    comparison: CompareReport | None = None
    if len(sample_dirs) > 1:  # cross-validation needs two samples
        if progress is not None:
            progress("training the graph-attention head against its baselines (cross-validated)")
        held_out = (sample_dirs[-1].name,) if len(sample_dirs) >= 3 else ()
        settings = TrainSettings(
            n_members=3, reference=cohort_dir / "reference.h5ad", resolution_um=DEMO_BIN_UM,
            holdout=held_out,
        )  # fmt: skip
        trained = train_model(store, out_dir / "model", settings=settings, progress=progress)
        model_dir, training = trained.model_dir, trained.report
        first = spot.partition(":")[0]
        predictions = predict_sample(
            store, model_dir, sample=first, grid=True, out=out_dir / f"{first}_predictions.h5ad"
        )
        niches, interactions = _demo_analysis(store, model_dir, sample_dirs, out_dir, progress)
        mapped = held_out[0] if held_out else first
        if progress is not None:
            progress(f"mapping every sample at {DEMO_BIN_UM:g} µm and where populations meet")
        subspot_predictions = predict_subspot(
            store, model_dir, sample=mapped, resolution_um=DEMO_BIN_UM,
            out=out_dir / f"{mapped}_subspot.h5ad",
        )  # fmt: skip
        slide_predictions = predict_subspot(
            store, model_dir, sample=DEMO_SLIDE, resolution_um=DEMO_BIN_UM,
            out=out_dir / f"{DEMO_SLIDE}_subspot.h5ad",
        )  # fmt: skip
        interfaces = run_interfaces(
            store, model_dir, settings=InterfaceSettings(resolution_um=DEMO_BIN_UM),
            out=out_dir / "subspot",
        )  # fmt: skip
        comparison = _demo_comparison(store, model_dir, out_dir, progress)
    if progress is not None:
        progress("writing the report")
    sections = []
    if niches is not None and interactions is not None:
        sections = [niche_section(niches), interaction_section(interactions)]
    if interfaces is not None:
        sections.append(subspot_section(interfaces, held_out=held_out, he_only=(DEMO_SLIDE,)))
    if comparison is not None:
        sections.append(comparison_section(comparison))
    report = write_report(
        store, out_dir / "report.html", model_dir=model_dir, sections=sections, progress=progress
    )
    exports: tuple[Path, ...] = ()
    if model_dir is not None:
        exports = _demo_exports(store, model_dir, out_dir, progress)
    return DemoResult(
        out_dir=out_dir, cohort_dir=cohort_dir, overview=overview, store=store,
        samples=summaries, embedded=embedded, index_rows=index.n, gallery=gallery,
        gallery_query=spot, model_dir=model_dir, training=training, predictions=predictions,
        niches=niches, interactions=interactions, held_out=held_out,
        subspot_predictions=subspot_predictions, interfaces=interfaces, report=report,
        slides=(DEMO_SLIDE,), slide_predictions=slide_predictions, exports=exports,
        samplesheet=sheet, comparison=comparison,
    )  # fmt: skip


def _demo_comparison(
    store: Path, model_dir: Path, out_dir: Path, progress: Callable[[str], None] | None
) -> CompareReport | None:
    """Inflamed against excluded tumours, patients as the units (None with fewer than two
    patients in a group: a smaller demo has nothing to compare)."""
    from tmescope.analysis.group_compare import check_design
    from tmescope.errors import InvalidParameterError
    from tmescope.store import CohortStore

    opened = CohortStore.open(store, mode="r")
    samples = opened.sample_ids()
    metadata = {s: dict(opened.sample_record(s).metadata) for s in samples}
    try:
        check_design(samples, metadata, by="group")
    except InvalidParameterError:
        return None
    if progress is not None:
        progress("comparing inflamed with excluded tumours (patients as the units)")
    settings = CompareSettings(by="group", resolution_um=DEMO_BIN_UM)
    return run_compare(store, model_dir, settings=settings, out=out_dir / "compare")


def _demo_exports(
    store: Path, model_dir: Path, out_dir: Path, progress: Callable[[str], None] | None
) -> tuple[Path, ...]:
    """The cohort as one SpatialData (sopa's embeddings layout), and the H&E-only slide's maps
    as QuPath GeoJSON, replaced when the demo runs again."""
    from tmescope.jobs.export import export_store

    if progress is not None:
        progress("exporting the cohort to SpatialData and the slide's maps to QuPath GeoJSON")
    sdata = export_store(
        store, out_dir / "cohort_spatialdata.zarr", to="spatialdata", model_dir=model_dir,
        overwrite=True,
    )  # fmt: skip
    qupath = export_store(
        store, out_dir / f"{DEMO_SLIDE}.geojson", to="geojson", model_dir=model_dir,
        sample=DEMO_SLIDE, overwrite=True,
    )  # fmt: skip
    return sdata.path, qupath.path


def _demo_slide(out_dir: Path, *, n_spots: int, seed: int) -> Path:
    """An H&E-only slide: one more synthetic section of the same tumours, of which only the H&E
    is kept (``out_dir/archive_01.tif``); the same bytes for the same seed."""
    import os
    import shutil

    slide = out_dir / f"{DEMO_SLIDE}.tif"
    if slide.is_file():
        return slide
    scratch = out_dir / f".{DEMO_SLIDE}-source"
    shutil.rmtree(scratch, ignore_errors=True)
    (section,) = synthesize_cohort(scratch, n_samples=1, n_spots=n_spots, seed=seed + 1)
    os.replace(section / f"{section.name}_he.tif", slide)
    shutil.rmtree(scratch)
    return slide


def _demo_samplesheet(out_dir: Path, cohort_dir: Path, slide: Path) -> Path:
    """The demo's cohort as one sample sheet, ``out_dir/samplesheet.csv``: the rows of the sheet
    ``synth`` wrote (their paths now read from ``out_dir``) and the H&E-only slide as a ``slide``
    row, a patient of its own; replaced whole when the demo runs again."""
    import csv
    import io

    from tmescope.datasets.cohort_sheet import PATIENT, SECTION
    from tmescope.io._keys import SampleSheetColumns as C
    from tmescope.store.atomic import write_atomically

    with cohort_samplesheet(cohort_dir).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows, columns = list(reader), list(reader.fieldnames or [])
    base = cohort_dir.relative_to(out_dir)
    for row in rows:
        for column in (C.PATH, C.IMAGE):
            row[column] = (base / row[column]).as_posix()
    metadata = [c for c in columns if c not in C.ALL]  # patient, section
    rows.append(
        {C.SAMPLE: DEMO_SLIDE, C.SLIDE: slide.relative_to(out_dir).as_posix()}
        | {PATIENT: f"patient_{DEMO_SLIDE}", SECTION: "1"}
    )
    text = io.StringIO()
    writer = csv.DictWriter(
        text, [C.SAMPLE, C.PATH, C.SLIDE, C.IMAGE, *metadata], restval="", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    target = out_dir / "samplesheet.csv"
    write_atomically(target, lambda path: path.write_text(text.getvalue(), encoding="utf-8"))
    return target


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
    niches = find_niches(
        store, model_dir, annotations=regions, out=out_dir / "niches", compare_views=True
    )
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
