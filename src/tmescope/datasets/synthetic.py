"""``write_synthetic_cohort``: tumour sections in real Space Ranger layout, with their truth.

Each sample folder holds what Space Ranger writes (``outs/filtered_feature_bc_matrix.h5``,
``outs/spatial/`` with positions, scale factors and the hires/lowres PNGs), the full-resolution
H&E beside it as a tiled pyramidal JPEG TIFF with its µm/px in the resolution tags, and the
ground truth (``cells.csv`` per cell, ``cells.h5ad`` the same cells with counts of their own,
``ground_truth.csv`` per spot, ``ground_truth.json`` for the sample). The cohort's root holds ``reference.h5ad``, single cells of every type drawn from
the same expression model (a single-cell reference for deconvolution), and ``samplesheet.csv``,
the cohort as ``tmescope embed --samplesheet`` reads it: two sections per patient, as labels only
(no patient effect in the synthetic biology; see :mod:`~tmescope.datasets.cohort_sheet`).

The same seed writes the same bytes. Cell types, marker profiles, nuclei and textures are drawn
once for the cohort; each sample draws its own layout, cells, staining and counts from a child
seed, so sample ``i`` is the same whatever the number of samples, and whichever process writes
it: samples are written by a pool of processes (as many as the thread budget allows), each of
which draws the cohort's shared parts from the seed once.
"""

from __future__ import annotations

import json
import logging
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tmescope.datasets import catalogue
from tmescope.datasets.cell_table import CELLS_H5AD, simulate_cell_counts
from tmescope.datasets.cells import populate_cells
from tmescope.datasets.cohort_sheet import SECTIONS_PER_PATIENT, write_cohort_sheet
from tmescope.datasets.expression import GenePanel, build_gene_panel, draw_counts
from tmescope.datasets.geometry import cell_px_for, lay_out_slide
from tmescope.datasets.reference import REFERENCE_H5AD, simulate_reference
from tmescope.datasets.render import STRIP_PX, SlideRenderer, draw_palette
from tmescope.datasets.spaceranger_writer import (
    write_10x_h5,
    write_png,
    write_positions_csv,
    write_pyramidal_tiff,
    write_scalefactors,
)
from tmescope.datasets.sprites import SpriteAtlas
from tmescope.datasets.textures import Textures
from tmescope.datasets.tissue import lay_out_tissue
from tmescope.datasets.truth import cell_truth, spot_truth
from tmescope.errors import InvalidParameterError, WorkerLostError
from tmescope.io._keys import VISIUM_SPOT_DIAMETER_UM
from tmescope.io._keys import ScalefactorKeys as K
from tmescope.io._keys import VisiumFiles as F
from tmescope.progress import Eta

log = logging.getLogger(__name__)

DEFAULT_N_GENES = 200
DEFAULT_MPP = 0.5
MPP_RANGE = (0.2, 2.0)
MAX_SPOTS = 1_000_000
SAMPLE_PREFIX = "synth_"
IMAGE_SUFFIX = "_he.tif"  # the full-resolution H&E: <sample_id>_he.tif
# A worker process costs about as long to start (imports, the cohort's textures and nuclei) as
# writing this many spots: a default pool is no bigger than the cohort's spots repay.
SPOTS_PER_WORKER = 2_000
HIRES_PX, LOWRES_PX = 2000, 600
FIDUCIAL_PER_SPOT = 1.615  # fiducial / spot diameter on Visium slides
TRUTH_CSV, TRUTH_JSON, CELLS_CSV = "ground_truth.csv", "ground_truth.json", "cells.csv"
_COHORT_KEY = 2**32 - 1  # spawn key of the cohort-wide stream, apart from the samples'
_REFERENCE_KEY = 2**32 - 2  # the reference's own stream: adding it changed no other file

Progress = Callable[[str], None]


def write_synthetic_cohort(
    out: Path | str,
    *,
    n_samples: int,
    n_spots: int,
    seed: int,
    n_genes: int = DEFAULT_N_GENES,
    mpp: float = DEFAULT_MPP,
    workers: int | None = None,
    progress: Progress | None = None,
    phenotypes: Sequence[str] = (),
    sections_per_patient: int = SECTIONS_PER_PATIENT,
) -> list[Path]:
    """Write ``n_samples`` synthetic sections of ``n_spots`` in-tissue spots under ``out``.

    Returns the sample folders ``out/synth_00``, ``out/synth_01``, …; each holds ``outs/``,
    ``<sample_id>_he.tif`` (µm/px ``mpp``) and the ground truth; ``out/reference.h5ad`` is the
    cohort's single-cell reference and ``out/samplesheet.csv`` its sample sheet (see
    :mod:`~tmescope.datasets.cohort_sheet`). ``progress`` is called with a short message as each
    sample is done (with the time left).

    ``phenotypes`` (names of :data:`~tmescope.datasets.catalogue.IMMUNE_PHENOTYPES`) are given to
    the patients in turn, both sections of a patient sharing theirs, and rendered: they place
    the T cells. A name may repeat, as a weight: ``inflamed,inflamed,excluded`` makes two
    inflamed patients for each excluded one. The sheet then has ``phenotype`` (the truth) and
    ``group`` (the same) columns, and ``ground_truth.json`` says it. Without them, the cohort is
    as it always was. ``sections_per_patient`` consecutive samples are one patient's (two by
    default): a label in the sheet, and the unit that shares a phenotype.

    Samples are written by ``workers`` processes at once (default: as many as the thread budget
    of :mod:`tmescope.cpus` allows, and none for a cohort too small to repay starting them); one
    worker writes them in turn, here. The bytes are the same either way. The pool starts its
    processes afresh (``spawn``): from a Python script, call this under
    ``if __name__ == "__main__":``, as for any process pool (a notebook needs nothing).
    """
    _validate(n_samples=n_samples, n_spots=n_spots, seed=seed, n_genes=n_genes, mpp=mpp)
    chosen = _phenotypes(phenotypes)
    if (
        isinstance(sections_per_patient, bool)
        or not isinstance(sections_per_patient, numbers.Integral)
        or sections_per_patient < 1
    ):
        raise InvalidParameterError(
            f"sections per patient must be a whole number, at least 1; got {sections_per_patient!r}"
        )
    n_workers = _workers(workers, n_samples=n_samples, n_spots=n_spots)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(f"output {out} is a file; expected a folder (new or existing)")
    out.mkdir(parents=True, exist_ok=True)
    recipe = _Recipe(
        out=out, seed=seed, n_genes=n_genes, mpp=float(mpp), n_spots=n_spots, phenotypes=chosen,
        sections=int(sections_per_patient),
    )
    digits = max(2, len(str(n_samples - 1)))
    sample_ids = [f"{SAMPLE_PREFIX}{index:0{digits}d}" for index in range(n_samples)]
    report = _Reporter(recipe, n_samples=n_samples, progress=progress)
    if n_workers == 1:
        cohort = recipe.cohort()
        for index, sample_id in enumerate(sample_ids):
            report.done(sample_id, recipe.write_sample(cohort, index, sample_id))
        recipe.write_reference(cohort)
    else:
        _write_in_parallel(recipe, sample_ids, workers=n_workers, report=report)
    folders = [out / sample_id for sample_id in sample_ids]
    write_cohort_sheet(
        out, folders, [f / f"{f.name}{IMAGE_SUFFIX}" for f in folders],
        phenotypes=[recipe.phenotype_of(i) for i in range(n_samples)] if chosen else None,
        sections=recipe.sections,
    )  # fmt: skip
    return folders


@dataclass(frozen=True)
class _Recipe:
    """What any process needs to draw the cohort and write any of its samples (picklable)."""

    out: Path
    seed: int
    n_genes: int
    mpp: float
    n_spots: int
    phenotypes: tuple[str, ...] = ()
    sections: int = SECTIONS_PER_PATIENT

    def cohort(self) -> _Cohort:
        seq = np.random.SeedSequence(self.seed, spawn_key=(_COHORT_KEY,))
        return _Cohort.draw(seq, self.n_genes, self.mpp)

    def write_sample(self, cohort: _Cohort, index: int, sample_id: str) -> tuple[int, int]:
        """Write sample ``index``: its own child seed (the ``index``-th of the seed's spawn),
        so it is the same whatever the number of samples, and whichever process writes it."""
        seq = np.random.SeedSequence(self.seed, spawn_key=(index,))
        return _write_sample(
            self.out / sample_id, sample_id, seq=seq, cohort=cohort, n_spots=self.n_spots,
            seed=self.seed, phenotype=self.phenotype_of(index),
        )  # fmt: skip

    def phenotype_of(self, index: int) -> str | None:
        """The immune phenotype of sample ``index``: its patient's, the patients in turn."""
        if not self.phenotypes:
            return None
        return self.phenotypes[(index // self.sections) % len(self.phenotypes)]

    def write_reference(self, cohort: _Cohort) -> None:
        seq = np.random.SeedSequence(self.seed, spawn_key=(_REFERENCE_KEY,))
        reference = simulate_reference(cohort.panel, rng=np.random.default_rng(seq))
        reference.write_h5ad(self.out / REFERENCE_H5AD)
        log.info("wrote %s: %d single cells", REFERENCE_H5AD, reference.n_obs)


def _workers(workers: int | None, *, n_samples: int, n_spots: int) -> int:
    """Processes to write with: ``workers``, else the thread budget, never more than samples
    (nor more than the cohort's spots repay: see :data:`SPOTS_PER_WORKER`)."""
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
            raise InvalidParameterError(
                f"workers must be a whole number of processes, at least 1 (1 writes the samples "
                f"in turn), got {workers!r}"
            )
        return min(int(workers), n_samples)
    from tmescope.cpus import configured_threads

    worth = max(1, n_samples * n_spots // SPOTS_PER_WORKER)
    return max(1, min(configured_threads(), n_samples, worth))


def _write_in_parallel(
    recipe: _Recipe, sample_ids: list[str], *, workers: int, report: _Reporter
) -> None:
    """Each sample in a process of its own pool (``spawn``: no thread of this process is
    copied into them); each worker draws the cohort once, from the seed, as this one would."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from tmescope.cpus import configured_threads

    threads = max(1, configured_threads() // workers)  # the budget, shared out
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker, initargs=(recipe, threads),
    )  # fmt: skip
    try:
        futures = {
            pool.submit(_write_in_worker, index, sample_id): sample_id
            for index, sample_id in enumerate(sample_ids)
        }
        reference = pool.submit(_write_reference_in_worker)
        for future in as_completed(futures):
            report.done(futures[future], future.result())
        reference.result()
    except BrokenProcessPool as error:
        pool.shutdown(wait=True, cancel_futures=True)
        raise WorkerLostError(
            f"a process writing the synthetic cohort in {recipe.out} stopped before its sample "
            "was written (interrupted, killed, out of memory; from a Python script, the call "
            'must sit under `if __name__ == "__main__":`, as for any process pool); run it '
            "again, or in this process alone with workers=1 (`tmescope --threads 1 synth …`)"
        ) from error
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # the running samples end; none start
        raise
    pool.shutdown(wait=True)


_worker: tuple[_Recipe, _Cohort] | None = None  # a pool worker's recipe and cohort, drawn once


def _start_worker(recipe: _Recipe, threads: int) -> None:
    from threadpoolctl import threadpool_limits

    global _worker
    threadpool_limits(threads)  # kept: called, not entered as a context
    _worker = (recipe, recipe.cohort())


def _write_in_worker(index: int, sample_id: str) -> tuple[int, int]:
    assert _worker is not None, "started by _start_worker"
    recipe, cohort = _worker
    return recipe.write_sample(cohort, index, sample_id)


def _write_reference_in_worker() -> None:
    assert _worker is not None, "started by _start_worker"
    recipe, cohort = _worker
    recipe.write_reference(cohort)


class _Reporter:
    """Says each sample is done, with how many are left and roughly how long they will take."""

    def __init__(self, recipe: _Recipe, *, n_samples: int, progress: Progress | None) -> None:
        self._n_spots = recipe.n_spots
        self._progress = progress
        self._done = 0
        self._eta = Eta(n_samples)

    def done(self, sample_id: str, size: tuple[int, int]) -> None:
        self._done += 1
        message = f"{sample_id}: {self._n_spots} spots, {size[0]}×{size[1]} px slide"
        log.info("wrote %s", message)
        if self._progress is not None:
            self._progress(self._eta.status(message, self._done))


def _phenotypes(names: Sequence[str] | str) -> tuple[str, ...]:
    """The phenotype names, checked (a comma-separated string is split)."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    chosen = tuple(str(n).strip() for n in names)
    unknown = [n for n in chosen if n not in catalogue.IMMUNE_PHENOTYPES]
    if unknown:
        raise InvalidParameterError(
            f"unknown immune phenotype(s) {', '.join(map(repr, unknown))}; expected names from "
            f"{', '.join(catalogue.IMMUNE_PHENOTYPES)}, e.g. --phenotypes inflamed,excluded"
        )
    return chosen


def _validate(*, n_samples: int, n_spots: int, seed: int, n_genes: int, mpp: float) -> None:
    def whole(name: str, value: object, low: int, high: int, what: str) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or not low <= int(value) <= high
        ):
            raise InvalidParameterError(
                f"{name} must be a whole number from {low} to {high} ({what}), got {value!r}"
            )

    whole("n_samples", n_samples, 1, 10_000, "samples in the cohort")
    whole("n_spots", n_spots, 10, MAX_SPOTS, "spots under tissue per sample")
    whole("seed", seed, 0, 2**63 - 1, "the same seed writes the same files")
    whole(
        "n_genes", n_genes, len(catalogue.NAMED_GENES), 100_000, "the marker panel needs that many"
    )
    low, high = MPP_RANGE
    if isinstance(mpp, bool) or not isinstance(mpp, numbers.Real) or not low <= mpp <= high:
        raise InvalidParameterError(
            f"mpp must be between {low} and {high} µm per pixel, got {mpp!r}"
        )


@dataclass(frozen=True, eq=False)
class _Cohort:
    """What every sample shares: genes and profiles, nuclei, textures."""

    mpp: float
    panel: GenePanel
    atlas: SpriteAtlas
    textures: Textures

    @classmethod
    def draw(cls, seq: np.random.SeedSequence, n_genes: int, mpp: float) -> _Cohort:
        genes, nuclei, textures = (np.random.default_rng(s) for s in seq.spawn(3))
        return cls(
            mpp=float(mpp),
            panel=build_gene_panel(n_genes, rng=genes),
            atlas=SpriteAtlas(cell_px=cell_px_for(mpp), mpp=mpp, rng=nuclei),
            textures=Textures(mpp=mpp, rng=textures),
        )


def _write_sample(
    folder: Path,
    sample_id: str,
    *,
    seq: np.random.SeedSequence,
    cohort: _Cohort,
    n_spots: int,
    seed: int,
    phenotype: str | None,
) -> tuple[int, int]:
    # A fifth stream for the cells' own counts: the first four are as before it was added.
    layout_rng, cell_rng, stain_rng, count_rng, cell_count_rng = (
        np.random.default_rng(s) for s in seq.spawn(5)
    )
    geometry = lay_out_slide(n_spots, mpp=cohort.mpp)
    layout, in_tissue = lay_out_tissue(geometry, n_spots=n_spots, rng=layout_rng)
    cells = populate_cells(
        layout, atlas=cohort.atlas, fibre_angles=cohort.textures.angles, rng=cell_rng,
        phenotype=catalogue.IMMUNE_PHENOTYPES[phenotype] if phenotype else None,
    )  # fmt: skip
    truth, cell_counts = spot_truth(geometry, layout, cells, in_tissue=in_tissue)
    counts = draw_counts(
        cell_counts,
        border_um=truth["border_um"].to_numpy(),
        vessel_um=truth["vessel_um"].to_numpy(),
        panel=cohort.panel,
        rng=count_rng,
    )
    palette = draw_palette(stain_rng)
    offset = stain_rng.integers(0, cohort.textures.period // STRIP_PX, 2) * STRIP_PX
    renderer = SlideRenderer(
        geometry,
        cells,
        atlas=cohort.atlas,
        textures=cohort.textures,
        palette=palette,
        texture_offset=(int(offset[0]), int(offset[1])),
    )

    spatial = folder / F.OUTS / F.SPATIAL
    spatial.mkdir(parents=True, exist_ok=True)
    write_10x_h5(
        folder / F.OUTS / F.FILTERED_H5,
        counts,
        barcodes=truth["barcode"].tolist(),
        gene_ids=cohort.panel.ids,
        gene_names=cohort.panel.names,
        library_id=sample_id,
    )
    write_positions_csv(
        spatial / F.POSITIONS_V2, geometry.spots.assign(in_tissue=in_tissue), header=True
    )
    hires, hires_scale = renderer.thumbnail(HIRES_PX)
    lowres, lowres_scale = renderer.thumbnail(LOWRES_PX)
    write_png(spatial / F.HIRES_IMAGE, hires)
    write_png(spatial / F.LOWRES_IMAGE, lowres)
    spot_px = VISIUM_SPOT_DIAMETER_UM / cohort.mpp
    write_scalefactors(
        spatial / F.SCALEFACTORS,
        {
            K.HIRES: hires_scale,
            K.LOWRES: lowres_scale,
            K.SPOT_DIAMETER: spot_px,
            K.FIDUCIAL_DIAMETER: spot_px * FIDUCIAL_PER_SPOT,
        },
    )
    image = folder / f"{sample_id}{IMAGE_SUFFIX}"
    write_pyramidal_tiff(
        image,
        width=geometry.width,
        height=geometry.height,
        mpp=cohort.mpp,
        render_strip=renderer.strip,
        n_levels=geometry.n_levels,
        tile=STRIP_PX,
    )
    truth.to_csv(folder / TRUTH_CSV, index=False, float_format="%.6g", lineterminator="\n")
    cell_table = cell_truth(geometry, cells)
    cell_table.to_csv(folder / CELLS_CSV, index=False, float_format="%.6g", lineterminator="\n")
    simulate_cell_counts(
        cell_table, layout, cell_px=geometry.cell_px, mpp=cohort.mpp, panel=cohort.panel,
        rng=cell_count_rng,
    ).write_h5ad(folder / CELLS_H5AD, compression="gzip")  # fmt: skip
    description = _describe(sample_id, seed=seed, cohort=cohort, truth=truth, image=image)
    if phenotype:
        planted = catalogue.IMMUNE_PHENOTYPES[phenotype]
        description["immune_phenotype"] = {
            "name": planted.name, "description": planted.description,
            "nest_t_cell": planted.nest_t_cell, "margin_t_cell": planted.margin_t_cell,
            "margin_um": planted.margin_um, "t_cell_scale": planted.t_cell_scale,
        }  # fmt: skip
    description["image"].update(
        width=geometry.width, height=geometry.height, levels=geometry.n_levels
    )
    description["staining"] = {
        "haematoxylin_od": list(palette.haematoxylin),
        "eosin_od": list(palette.eosin),
        "blood_od": list(palette.blood),
    }
    text = json.dumps(description, indent=2, sort_keys=True, allow_nan=False) + "\n"
    (folder / TRUTH_JSON).write_text(text, encoding="utf-8")
    return geometry.width, geometry.height


def _describe(
    sample_id: str, *, seed: int, cohort: _Cohort, truth: Any, image: Path
) -> dict[str, Any]:
    """What ``ground_truth.json`` says about the sample and how it was made."""
    effects = {
        "ifn_near_tumour_border": catalogue.IFN_NEAR_BORDER,
        "hypoxia_far_from_vessels": catalogue.HYPOXIA_FAR_FROM_VESSELS,
    }
    regions = truth["region"].value_counts()
    return {
        "sample_id": sample_id,
        "generator": "tmescope.datasets.write_synthetic_cohort",
        "seed": seed,
        "mpp": cohort.mpp,
        "n_spots_in_tissue": len(truth),
        "n_genes": len(cohort.panel.names),
        "image": {"path": image.name, "spot_diameter_um": VISIUM_SPOT_DIAMETER_UM},
        "ground_truth": {
            "cells": f"{CELLS_CSV}: x, y (level-0 pixels, the cell's centre) and cell_type of "
            "every cell; an osteoclast has a row per nucleus, a lumen a row per red cell",
            "table": TRUTH_CSV,
            "composition": "fraction of the cells drawn under each spot (osteoclasts by nucleus)",
            "border_um": "distance from the spot centre to the nearest tumour border",
            "vessel_um": "distance from the spot centre to the nearest vessel",
        },
        "cell_types": {
            t.name: {"markers": list(t.markers), "umi_per_cell": t.umi}
            for t in catalogue.CELL_TYPES
        },
        "regions": {
            name: {
                "composition": catalogue.REGION_COMPOSITION[name],
                "n_spots": int(regions.get(name, 0)),
            }
            for name in catalogue.REGIONS
        },
        "border_infiltrate": {
            "extra_probability": catalogue.BORDER_INFILTRATE,
            "length_um": catalogue.BORDER_INFILTRATE_UM,
        },
        "gene_groups": {
            "housekeeping": list(catalogue.HOUSEKEEPING),
            "antigen_presentation": list(catalogue.ANTIGEN_PRESENTATION),
            "interferon_response": list(catalogue.IFN_RESPONSE),
            "hypoxia": list(catalogue.HYPOXIA),
            "background": f"SYN0001… ({len(cohort.panel.names) - len(catalogue.NAMED_GENES)} genes)",
        },
        "spatial_effects": {
            name: {
                "genes": list(e.genes),
                "factor": e.description,
                "amplitude": e.amplitude,
                "length_um": e.length_um,
                "onset_um": e.onset_um,
            }
            for name, e in effects.items()
        },
        "coordinates": f"x, y are level-0 pixels of {image.name} (pxl_col/pxl_row_in_fullres)",
    }
