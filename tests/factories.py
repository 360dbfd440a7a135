"""Small synthetic Space Ranger samples written to a temporary folder, with chosen variations.

Every file is written with the project's own deterministic writers
(:mod:`tmescope.datasets.spaceranger_writer`); only the layouts those writers do not cover (the
legacy Cell Ranger 2 HDF5, images with alpha, grey or 16-bit channels) are written here directly.

Geometry: a Visium hexagonal lattice with a 100 µm pitch. Within an array row the occupied
``array_col`` step by 2 and odd rows are offset by 1, so one ``array_col`` is 50 µm across and one
``array_row`` is 86.6 µm down. The full-resolution frame has a known µm/px; in-tissue spots are
drawn as dark 55 µm discs on a light background with a gentle gradient.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
import tifffile
from PIL import Image

from tmescope.datasets.spaceranger_writer import (
    array_strip_renderer,
    write_10x_h5,
    write_10x_mtx,
    write_png,
    write_positions_csv,
    write_positions_parquet,
    write_pyramidal_tiff,
    write_scalefactors,
)
from tmescope.io._keys import VisiumFiles as F

PITCH_UM = 100.0
ROW_STEP_UM = PITCH_UM * math.sqrt(3) / 2  # 86.6 µm between array rows
COL_STEP_UM = PITCH_UM / 2  # 50 µm per array_col
SPOT_UM = 55.0

BACKGROUND_RGB = (238, 228, 236)  # glass
SPOT_RGB = (112, 58, 138)  # haematoxylin-dark tissue under a spot

PositionsFormat = Literal["v1", "v1_header", "v2", "v2_no_header"]
MatrixFormat = Literal["h5", "h5_no_attrs", "h5_legacy", "mtx_gz", "mtx", "mtx_genes_tsv"]
Layout = Literal["parent", "outs", "flat"]

POSITIONS_FILE = {
    "v1": (F.POSITIONS_V1, False),
    "v1_header": (F.POSITIONS_V1, True),
    "v2": (F.POSITIONS_V2, True),
    "v2_no_header": (F.POSITIONS_V2, False),
}

# scalefactors_json.json key → Scalefactors attribute; the first four are in every Space Ranger
# version's file, the last two in newer ones (and HD) only.
SCALEFACTOR_FIELDS = {
    "tissue_hires_scalef": "hires",
    "tissue_lowres_scalef": "lowres",
    "spot_diameter_fullres": "spot_diameter_fullres",
    "fiducial_diameter_fullres": "fiducial_diameter_fullres",
    "bin_size_um": "bin_size_um",
    "microns_per_pixel": "microns_per_pixel",
}


# --------------------------------------------------------------------------------------------
# Values


def barcode(i: int) -> str:
    """A deterministic 16-base barcode with Space Ranger's ``-1`` suffix."""
    bases = "ACGT"
    return "".join(bases[(i >> (2 * k)) & 3] for k in range(16))[::-1] + "-1"


def hex_lattice(
    n_rows: int = 6,
    n_per_row: int = 7,
    *,
    mpp: float = 1.0,
    origin_px: tuple[float, float] = (80.0, 80.0),
    rotation_deg: float = 0.0,
    first_row: int = 0,
) -> pd.DataFrame:
    """Spots on a Visium lattice: ``barcode, in_tissue, array_row, array_col, x, y``.

    ``x, y`` are full-resolution pixels at ``mpp`` µm/px, rotated by ``rotation_deg`` about
    ``origin_px``. The inner spots (not on the lattice's border) are in tissue.
    """
    rows = []
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    for r in range(first_row, first_row + n_rows):
        for k in range(n_per_row):
            col = 2 * k + (r % 2)
            u = col * COL_STEP_UM / mpp
            v = (r - first_row) * ROW_STEP_UM / mpp
            x = origin_px[0] + cos * u - sin * v
            y = origin_px[1] + sin * u + cos * v
            inner = first_row < r < first_row + n_rows - 1 and 0 < k < n_per_row - 1
            rows.append((barcode(len(rows)), inner, r, col, x, y))
    return pd.DataFrame(rows, columns=["barcode", "in_tissue", "array_row", "array_col", "x", "y"])


def random_counts(
    n_spots: int, n_genes: int, *, seed: int = 0, density: float = 0.3
) -> sp.csr_matrix:
    """Sparse integer counts, spots × genes, every spot with at least one count."""
    rng = np.random.default_rng(seed)
    dense = rng.poisson(3.0, size=(n_spots, n_genes)) * (rng.random((n_spots, n_genes)) < density)
    dense[np.arange(n_spots), rng.integers(0, n_genes, n_spots)] += 1
    return sp.csr_matrix(dense.astype(np.int32))


def gene_table(n_genes: int) -> tuple[list[str], list[str]]:
    """Ensembl-like ids and symbols."""
    ids = [f"ENSG{i:011d}" for i in range(n_genes)]
    names = [f"GENE{i}" for i in range(n_genes)]
    return ids, names


def render_tissue(spots: pd.DataFrame, *, mpp: float, size: tuple[int, int]) -> np.ndarray:
    """Full-resolution RGB ``(h, w, 3)``: in-tissue spots are dark 55 µm discs on light glass."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 1.0 - 0.06 * (xx / width) - 0.04 * (yy / height)  # a gentle gradient
    image = np.stack([c * shade for c in BACKGROUND_RGB], axis=-1)
    radius = SPOT_UM / 2 / mpp
    tissue = spots[spots["in_tissue"].astype(bool)]
    for x, y in tissue[["x", "y"]].to_numpy(float):
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        image[inside] = SPOT_RGB
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def downscale(pixels: np.ndarray, scale: float) -> np.ndarray:
    """Resize as Space Ranger does for its hires/lowres PNGs (long side × ``scale``)."""
    height, width = pixels.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))


def lattice_extent(spots: pd.DataFrame, *, mpp: float, margin_um: float = 80.0) -> tuple[int, int]:
    """``(width, height)`` of a full-resolution image holding every spot with a margin."""
    margin = margin_um / mpp
    return (
        math.ceil(spots["x"].max() + margin),
        math.ceil(spots["y"].max() + margin),
    )


# --------------------------------------------------------------------------------------------
# Files


def write_counts(
    folder: Path,
    counts: sp.spmatrix,
    *,
    barcodes: Sequence[str],
    gene_ids: Sequence[str],
    gene_names: Sequence[str],
    fmt: MatrixFormat,
    prefix: str = "filtered",
) -> Path:
    """Write a count matrix as Space Ranger names it; returns the file or folder written."""
    folder.mkdir(parents=True, exist_ok=True)
    genes = {"barcodes": barcodes, "gene_ids": gene_ids, "gene_names": gene_names}
    if fmt.startswith("h5"):
        path = folder / f"{prefix}_feature_bc_matrix.h5"
        if fmt == "h5_legacy":
            write_legacy_h5(path, counts, **genes)
        else:
            write_10x_h5(path, counts, with_10x_attrs=fmt == "h5", library_id="lib1", **genes)
        return path
    path = folder / f"{prefix}_feature_bc_matrix"
    write_10x_mtx(
        path, counts, compress=fmt == "mtx_gz", legacy_genes_tsv=fmt == "mtx_genes_tsv", **genes
    )
    return path


def write_legacy_h5(
    path: Path,
    counts: sp.spmatrix,
    *,
    barcodes: Sequence[str],
    gene_ids: Sequence[str],
    gene_names: Sequence[str],
    genome: str = "GRCh38",
) -> None:
    """Cell Ranger 2 layout: one group per genome, ``genes`` and ``gene_names`` datasets."""
    csr = sp.csr_matrix(counts)  # barcodes × genes in CSR is genes × barcodes in CSC
    csr.sort_indices()
    with h5py.File(path, "w") as f:
        g = f.create_group(genome)
        g["data"] = csr.data.astype(np.int32)
        g["indices"] = csr.indices.astype(np.int64)
        g["indptr"] = csr.indptr.astype(np.int64)
        g["shape"] = np.array([csr.shape[1], csr.shape[0]], dtype=np.int32)
        g["barcodes"] = np.array([b.encode() for b in barcodes], dtype="S")
        g["genes"] = np.array([b.encode() for b in gene_ids], dtype="S")
        g["gene_names"] = np.array([b.encode() for b in gene_names], dtype="S")


def write_positions(spatial: Path, spots: pd.DataFrame, *, fmt: PositionsFormat) -> Path:
    name, header = POSITIONS_FILE[fmt]
    path = spatial / name
    write_positions_csv(path, spots, header=header)
    return path


def write_fullres_tiff(
    path: Path, pixels: np.ndarray, *, mpp: float, n_levels: int = 3, compression: str | None = None
) -> Path:
    """A tiled pyramidal TIFF (levels as SubIFDs) with ``mpp`` in its resolution tags."""
    height, width = pixels.shape[:2]
    write_pyramidal_tiff(
        path,
        width=width,
        height=height,
        mpp=mpp,
        render_strip=array_strip_renderer(pixels),
        n_levels=n_levels,
        tile=128,
        compression=compression,
    )
    return path


def write_random_bytes(path: Path, n: int = 4096, *, seed: int = 0) -> Path:
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def write_tiff_plain(path: Path, pixels: np.ndarray, **kwargs: object) -> Path:
    """A single-level TIFF of any channel layout or type (RGBA, grey, 16-bit, OME …)."""
    tifffile.imwrite(path, pixels, **kwargs)
    return path


# --------------------------------------------------------------------------------------------
# Whole samples


@dataclass
class SyntheticVisium:
    """What a factory wrote, and the truth the readers should recover."""

    path: Path  # the folder to hand to read_visium
    outs: Path  # the folder holding spatial/ and the matrix
    spots: pd.DataFrame  # every position written (the positions file)
    barcodes: list[str]  # matrix barcodes, in matrix order
    counts: sp.csr_matrix  # barcodes × genes, as written
    gene_ids: list[str]
    gene_names: list[str]
    mpp: float  # true µm per full-resolution pixel
    fullres: np.ndarray  # the full-resolution image (h, w, 3)
    scalefactors: dict[str, float]
    images: dict[str, Path] = field(default_factory=dict)  # kind -> file written
    fullres_tiff: Path | None = None

    @property
    def spatial(self) -> Path:
        return self.outs / F.SPATIAL

    @property
    def matrix_spots(self) -> pd.DataFrame:
        """The positions of the matrix barcodes, in matrix order."""
        return self.spots.set_index("barcode").loc[self.barcodes].reset_index()


def write_visium(
    root: Path,
    *,
    positions: PositionsFormat = "v2",
    matrix: Sequence[MatrixFormat] = ("h5",),
    layout: Layout = "parent",
    images: Sequence[Literal["hires", "lowres"]] = ("hires", "lowres"),
    spots: pd.DataFrame | None = None,
    mpp: float = 1.0,
    n_genes: int = 12,
    matrix_barcodes: Literal["in_tissue", "all"] = "in_tissue",
    seed: int = 0,
) -> SyntheticVisium:
    """Write one Visium run under ``root``.

    ``layout``: ``"parent"`` writes ``root/run1/outs/`` and returns ``root/run1``; ``"outs"``
    returns ``root/run1/outs``; ``"flat"`` writes spatial/ and the matrix straight into
    ``root/run1``. The matrix holds the in-tissue spots (a filtered matrix), or with
    ``matrix_barcodes="all"`` every spot (as a raw matrix does), in shuffled order.
    """
    spots = hex_lattice(mpp=mpp) if spots is None else spots
    run = root / "run1"
    outs = run if layout == "flat" else run / F.OUTS
    spatial = outs / F.SPATIAL
    spatial.mkdir(parents=True)

    rng = np.random.default_rng(seed)
    chosen = spots if matrix_barcodes == "all" else spots[spots["in_tissue"].astype(bool)]
    barcodes = [chosen["barcode"].iloc[i] for i in rng.permutation(len(chosen))]
    counts = random_counts(len(barcodes), n_genes, seed=seed)
    gene_ids, gene_names = gene_table(n_genes)
    for fmt in matrix:
        write_counts(
            outs, counts, barcodes=barcodes, gene_ids=gene_ids, gene_names=gene_names, fmt=fmt
        )

    write_positions(spatial, spots, fmt=positions)
    fullres = render_tissue(spots, mpp=mpp, size=lattice_extent(spots, mpp=mpp))
    scalefactors = {
        "tissue_hires_scalef": 0.6,
        "tissue_lowres_scalef": 0.15,
        "spot_diameter_fullres": SPOT_UM / mpp,
        "fiducial_diameter_fullres": 1.6 * SPOT_UM / mpp,
    }
    write_scalefactors(spatial / F.SCALEFACTORS, scalefactors)
    written = {}
    for kind in images:
        path = spatial / (F.HIRES_IMAGE if kind == "hires" else F.LOWRES_IMAGE)
        write_png(path, downscale(fullres, scalefactors[f"tissue_{kind}_scalef"]))
        written[kind] = path
    return SyntheticVisium(
        path={"parent": run, "outs": outs, "flat": run}[layout],
        outs=outs,
        spots=spots,
        barcodes=barcodes,
        counts=counts,
        gene_ids=gene_ids,
        gene_names=gene_names,
        mpp=mpp,
        fullres=fullres,
        scalefactors=scalefactors,
        images=written,
    )


def add_fullres_tiff(
    sample: SyntheticVisium, *, mpp: float | None = None, n_levels: int = 3
) -> Path:
    """Write the full-resolution image beside the run as a pyramidal TIFF (``mpp`` in its tags)."""
    path = sample.outs.parent / "fullres.tif"
    write_fullres_tiff(
        path, sample.fullres, mpp=sample.mpp if mpp is None else mpp, n_levels=n_levels
    )
    sample.fullres_tiff = path
    return path


def square_lattice(
    n: int, *, bin_um: float, mpp: float, origin_px: tuple[float, float] = (40.0, 40.0)
) -> pd.DataFrame:
    """Visium HD bins: an ``n × n`` square grid of ``bin_um`` bins (all in tissue but the first)."""
    step = bin_um / mpp
    rows = [
        (
            f"s_{bin_um:03.0f}um_{r:05d}_{c:05d}-1",
            True,
            r,
            c,
            origin_px[0] + c * step,
            origin_px[1] + r * step,
        )
        for r in range(n)
        for c in range(n)
    ]
    spots = pd.DataFrame(rows, columns=["barcode", "in_tissue", "array_row", "array_col", "x", "y"])
    spots.loc[0, "in_tissue"] = False
    return spots


@dataclass
class SyntheticVisiumHD:
    path: Path  # the outs/ parent
    outs: Path
    mpp: float
    bins: dict[int, pd.DataFrame]  # bin size (µm) -> its bins
    scalefactors: dict[int, dict[str, float]]


def write_visium_hd(
    root: Path,
    *,
    bin_sizes: Sequence[int] = (2, 8, 16),
    mpp: float = 0.5,
    n_bins: int = 6,
    with_microns_per_pixel: bool = True,
    n_genes: int = 8,
) -> SyntheticVisiumHD:
    """Write a Visium HD ``outs/`` with ``binned_outputs/square_NNNum/`` folders.

    Images lie in ``outs/spatial/``; each bin folder has its own positions parquet, scalefactors
    (with ``bin_size_um`` and ``microns_per_pixel``) and filtered HDF5.
    """
    run = root / "hd_run"
    outs = run / F.OUTS
    (outs / F.SPATIAL).mkdir(parents=True)
    bins, factors = {}, {}
    for size in bin_sizes:
        folder = outs / F.BINNED_OUTPUTS / f"square_{size:03d}um"
        (folder / F.SPATIAL).mkdir(parents=True)
        spots = square_lattice(n_bins, bin_um=size, mpp=mpp)
        write_positions_parquet(folder / F.SPATIAL / F.POSITIONS_PARQUET, spots)
        gene_ids, gene_names = gene_table(n_genes)
        write_counts(
            folder,
            random_counts(len(spots), n_genes, seed=size),
            barcodes=spots["barcode"].tolist(),
            gene_ids=gene_ids,
            gene_names=gene_names,
            fmt="h5",
        )
        sf = {
            "tissue_hires_scalef": 0.5,
            "tissue_lowres_scalef": 0.25,
            "spot_diameter_fullres": size / mpp,
            "fiducial_diameter_fullres": 100.0,
            "bin_size_um": float(size),
        }
        if with_microns_per_pixel:
            sf["microns_per_pixel"] = mpp
        write_scalefactors(folder / F.SPATIAL / F.SCALEFACTORS, sf)
        bins[size], factors[size] = spots, sf
    extents = [lattice_extent(spots, mpp=mpp, margin_um=40.0) for spots in bins.values()]
    size = (max(w for w, _ in extents), max(h for _, h in extents))
    fullres = render_tissue(pd.concat(bins.values()).iloc[:0], mpp=mpp, size=size)
    fullres[::7] = (180, 120, 170)  # some structure so the images are not blank
    write_png(outs / F.SPATIAL / F.HIRES_IMAGE, downscale(fullres, 0.5))
    write_png(outs / F.SPATIAL / F.LOWRES_IMAGE, downscale(fullres, 0.25))
    return SyntheticVisiumHD(path=run, outs=outs, mpp=mpp, bins=bins, scalefactors=factors)


# --------------------------------------------------------------------------------------------
# Shared stores (tests/conftest.py)


def copy_beside_its_cohort(store: Path, root: Path) -> Path:
    """A writable copy of a shared ``store`` at ``root/cohort.zarr``, its samples' folder linked
    at ``root/cohort`` (the store names the samples by their original folders)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(store, root / "cohort.zarr")
    (root / "cohort").symlink_to(store.parent / "cohort", target_is_directory=True)
    return root / "cohort.zarr"
