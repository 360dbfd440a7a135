"""Write files exactly as Space Ranger lays them out (used by the synthetic cohort and tests).

Every writer here is deterministic: the same inputs give the same bytes (no time stamps).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
import tifffile
from PIL import Image

from tmescope.io._keys import H5Keys as H
from tmescope.io._keys import PositionColumns as C

POSITION_COLUMNS = C.ALL

StripRenderer = Callable[[int, int, int], np.ndarray]
"""``render(level, y0, height) -> (height, level_width, 3) uint8``: one horizontal strip."""


def write_10x_h5(
    path: Path,
    counts: sp.spmatrix,
    *,
    barcodes: Sequence[str],
    gene_ids: Sequence[str],
    gene_names: Sequence[str],
    with_10x_attrs: bool = True,
    library_id: str = "sample",
) -> None:
    """Write spots × genes ``counts`` as a 10x feature-barcode matrix (CSC, genes × barcodes)."""
    csr = sp.csr_matrix(counts)  # barcodes × genes in CSR is genes × barcodes in CSC
    csr.sort_indices()
    n_barcodes, n_genes = csr.shape
    with h5py.File(path, "w", track_order=False) as f:
        if with_10x_attrs:
            f.attrs["filetype"] = "matrix"
            f.attrs["library_ids"] = np.array([library_id.encode()], dtype="S")
            f.attrs["chemistry_description"] = b"Visium Spatial Gene Expression"
            f.attrs["software_version"] = b"spaceranger-synthetic"
        m = f.create_group(H.MATRIX)
        _dataset(m, H.DATA, csr.data.astype(np.int32))
        _dataset(m, H.INDICES, csr.indices.astype(np.int64))
        _dataset(m, H.INDPTR, csr.indptr.astype(np.int64))
        _dataset(m, H.SHAPE, np.array([n_genes, n_barcodes], dtype=np.int32))
        _dataset(m, H.BARCODES, np.array([b.encode() for b in barcodes], dtype="S"))
        feats = m.create_group(H.FEATURES)
        _dataset(feats, H.FEATURE_ID, np.array([g.encode() for g in gene_ids], dtype="S"))
        _dataset(feats, H.FEATURE_NAME, np.array([g.encode() for g in gene_names], dtype="S"))
        _dataset(feats, H.FEATURE_TYPE, np.array([H.GENE_EXPRESSION.encode()] * n_genes, dtype="S"))
        _dataset(feats, H.GENOME, np.array([b"GRCh38"] * n_genes, dtype="S"))


def _dataset(group: h5py.Group, name: str, values: np.ndarray) -> None:
    # No time stamps, so the same counts always give the same bytes.
    group.create_dataset(name, data=values, track_times=False)


def write_10x_mtx(
    folder: Path,
    counts: sp.spmatrix,
    *,
    barcodes: Sequence[str],
    gene_ids: Sequence[str],
    gene_names: Sequence[str],
    compress: bool = True,
    legacy_genes_tsv: bool = False,
) -> None:
    """Write a Matrix Market folder (``features.tsv`` or the legacy two-column ``genes.tsv``)."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, sp.coo_matrix(sp.csr_matrix(counts).T), field="integer")
    features = pd.DataFrame({"id": list(gene_ids), "name": list(gene_names)})
    if not legacy_genes_tsv:
        features["type"] = H.GENE_EXPRESSION
    feature_name = "genes.tsv" if legacy_genes_tsv else "features.tsv"
    _write_bytes(folder / f"matrix.mtx{suffix}", buffer.getvalue(), compress)
    _write_bytes(folder / f"barcodes.tsv{suffix}", ("\n".join(barcodes) + "\n").encode(), compress)
    _write_bytes(
        folder / f"{feature_name}{suffix}",
        features.to_csv(sep="\t", header=False, index=False).encode(),
        compress,
    )


def _write_bytes(path: Path, payload: bytes, compress: bool) -> None:
    if compress:
        path.write_bytes(gzip.compress(payload, mtime=0))
    else:
        path.write_bytes(payload)


def write_positions_csv(path: Path, spots: pd.DataFrame, *, header: bool) -> None:
    """Write positions with Space Ranger's column order; ``spots`` uses our x/y names."""
    table = _to_spaceranger_columns(spots)
    table.to_csv(path, header=header, index=False, lineterminator="\n")


def write_positions_parquet(path: Path, spots: pd.DataFrame) -> None:
    """Write Visium HD ``tissue_positions.parquet``."""
    _to_spaceranger_columns(spots).to_parquet(path, index=False)


def _to_spaceranger_columns(spots: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.BARCODE: spots["barcode"].astype(str),
            C.IN_TISSUE: spots["in_tissue"].astype(int),
            C.ARRAY_ROW: spots["array_row"].astype(int),
            C.ARRAY_COL: spots["array_col"].astype(int),
            C.PXL_ROW: spots["y"],
            C.PXL_COL: spots["x"],
        }
    )


def write_scalefactors(path: Path, scalefactors: dict[str, float]) -> None:
    path.write_text(json.dumps(scalefactors, indent=4, sort_keys=True) + "\n", encoding="utf-8")


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write an image as PNG (PIL writes no time stamp by default)."""
    Image.fromarray(pixels).save(path, format="PNG", optimize=False)


def write_pyramidal_tiff(
    path: Path,
    *,
    width: int,
    height: int,
    mpp: float,
    render_strip: StripRenderer,
    n_levels: int,
    tile: int = 256,
    compression: str | None = "jpeg",
    quality: int = 90,
) -> None:
    """Write a tiled pyramidal RGB TIFF (levels as SubIFDs) with its µm/px in the resolution tags.

    Each level is rendered strip by strip (``tile`` rows at a time), so memory stays bounded by
    one strip of the widest level whatever the image size.
    """
    levels = [(max(1, width >> i), max(1, height >> i)) for i in range(n_levels)]
    bigtiff = width * height * 3 > 2**31
    kwargs: dict[str, Any] = {}
    if compression == "jpeg":
        kwargs = {"compression": "jpeg", "compressionargs": {"level": quality}}
    elif compression is not None:
        kwargs = {"compression": compression}
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        for level, (w, h) in enumerate(levels):
            level_mpp = mpp * width / w
            tif.write(
                _tiles(render_strip, level, w, h, tile),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                subifds=n_levels - 1 if level == 0 else None,
                subfiletype=1 if level else 0,
                resolution=(1e4 / level_mpp, 1e4 / level_mpp),
                resolutionunit="CENTIMETER",
                metadata=None,
                software=False,
                **kwargs,
            )


def _tiles(
    render_strip: StripRenderer, level: int, width: int, height: int, tile: int
) -> Iterator[np.ndarray]:
    for y0 in range(0, height, tile):
        strip_h = min(tile, height - y0)
        strip = render_strip(level, y0, strip_h)
        if strip.shape != (strip_h, width, 3) or strip.dtype != np.uint8:
            raise ValueError(
                f"strip renderer returned {strip.shape} {strip.dtype}, expected ({strip_h}, {width}, 3) uint8"
            )
        for x0 in range(0, width, tile):
            block = np.full((tile, tile, 3), 255, dtype=np.uint8)
            part = strip[:, x0 : x0 + tile]
            block[: part.shape[0], : part.shape[1]] = part
            yield block


def array_strip_renderer(pixels: np.ndarray) -> StripRenderer:
    """Serve strips of every pyramid level of a small in-memory image (for tests and fixtures)."""
    cache: dict[int, np.ndarray] = {0: pixels}

    def render(level: int, y0: int, height: int) -> np.ndarray:
        if level not in cache:
            h, w = pixels.shape[:2]
            size = (max(1, w >> level), max(1, h >> level))
            cache[level] = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))
        return cache[level][y0 : y0 + height]

    return render
