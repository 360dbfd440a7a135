"""Visium HD 2 µm bins summed into coarser square bins, streamed: never the 2 µm matrix whole.

A whole HD section has some 11 million 2 µm bins; their count matrix read whole (a Matrix Market
file decompressed into memory, then parsed) takes several times the memory of the section's 8
µm bins. Here the 2 µm counts are read a block of entries at a time (Matrix Market: lines of the
gzip stream; HDF5: a range of barcodes' columns) and each block is summed straight into the
coarse bins it belongs to, so memory holds one block and the coarse matrix being built.

A 2 µm bin's place on the grid is in its barcode (``s_002um_<row>_<col>-1``, five digits each,
as Space Ranger names them); a coarse bin of ``size_um`` holds the 2 µm bins of rows and columns
``size_um / 2`` apart, as Space Ranger's own ``square_008um`` and ``square_016um`` hold theirs,
and is named the same way. Its centre is the mean of its 2 µm bins' centres in
``tissue_positions.parquet`` (read in batches of rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.errors import CountsFormatError, InvalidParameterError, SpaceRangerLayoutError
from tmescope.io._keys import HD_FINEST_BIN_UM, MtxFiles
from tmescope.io._keys import H5Keys as H
from tmescope.io._keys import PositionColumns as C
from tmescope.io._keys import VisiumFiles as F
from tmescope.io.count_table import build_counts, check_entries
from tmescope.io.counts_h5 import root_attributes
from tmescope.io.mtx_stream import mtx_entries

FINEST_UM = HD_FINEST_BIN_UM
CHUNK_ENTRIES = 1 << 20  # matrix entries per block: ~25 MB of parsed entries at a time
CHUNK_BARCODES = 1 << 18  # barcodes (or position rows) per block
_BARCODE = re.compile(r"^s_(\d{3})um_(\d{5})_(\d{5})-\d+$")


@dataclass(frozen=True, eq=False)
class CoarseBins:
    """The coarse bins of one section: counts (bins × genes, only bins holding a 2 µm bin of
    the matrix) and their positions (the canonical spot table: ``barcode, in_tissue, array_row,
    array_col, x, y``, full-resolution pixels)."""

    counts: ad.AnnData
    positions: pd.DataFrame
    size_um: int


def aggregate_hd_bins(
    bin_dir: Path | str, *, size_um: int, chunk_entries: int = CHUNK_ENTRIES
) -> CoarseBins:
    """Sum the 2 µm bins of ``bin_dir`` (``binned_outputs/square_002um``) into ``size_um`` bins.

    Reads ``filtered_feature_bc_matrix.h5`` when present, else the Matrix Market folder, and
    ``spatial/tissue_positions.parquet``; see the module docstring.
    """
    bin_dir = Path(bin_dir)
    if size_um < FINEST_UM or size_um % FINEST_UM:
        raise InvalidParameterError(
            f"a coarse bin size must be a multiple of {FINEST_UM} µm, got {size_um}"
        )
    factor = size_um // FINEST_UM
    h5 = bin_dir / F.FILTERED_H5
    mtx = bin_dir / F.FILTERED_MTX_DIR
    if h5.is_file():
        summed, labels, metadata = _sum_h5(h5, factor=factor, chunk=chunk_entries)
    elif mtx.is_dir():
        summed, labels, metadata = _sum_mtx(mtx, factor=factor, chunk=chunk_entries)
    else:
        raise SpaceRangerLayoutError(
            f"{bin_dir} has no count matrix; expected {F.FILTERED_H5} or {F.FILTERED_MTX_DIR}/"
        )
    grid, matrix = summed.finish()
    positions = _centres(bin_dir / F.SPATIAL / F.POSITIONS_PARQUET, grid, factor=factor)
    names = [f"s_{size_um:03d}um_{r:05d}_{c:05d}-1" for r, c in grid]
    counts = build_counts(
        matrix, barcodes=np.array(names, dtype=object), source=str(bin_dir), **labels
    )
    counts.uns["10x_metadata"] = metadata  # as read_10x_h5 keeps the file's root attributes
    positions.insert(0, "barcode", names)
    return CoarseBins(counts=counts, positions=positions, size_um=int(size_um))


class _Sums:
    """Coarse bins × features sums, added a block of entries at a time.

    The coarse bins are fixed up front, from every 2 µm barcode's coarse key (row × 2**20 +
    column), so every block is a matrix of the same shape. Blocks are merged as a binary
    counter merges: a sum of 2**k blocks waits at level k until another joins it, so each entry
    is merged O(log blocks) times and memory holds about twice the finished sum and one block.
    """

    def __init__(self, barcode_keys: np.ndarray, n_features: int) -> None:
        self.keys, row = np.unique(barcode_keys, return_inverse=True)  # ascending: barcode order
        self.row_of_barcode = row.ravel().astype(np.int32)  # (n_barcodes,) coarse row
        self.shape = (len(self.keys), n_features)
        self.levels: list[sp.csr_matrix | None] = []

    def add(self, barcodes: np.ndarray, features: np.ndarray, values: np.ndarray) -> None:
        """Entries ``(2 µm barcode index, feature index, count)``, each ``(m,)``."""
        if not barcodes.size:
            return
        block = sp.csr_matrix(
            (values.astype(np.float32), (self.row_of_barcode[barcodes], features)),
            shape=self.shape,
        )
        block.sum_duplicates()
        for level in range(len(self.levels) + 1):
            if level == len(self.levels):
                self.levels.append(block)
                return
            waiting = self.levels[level]
            if waiting is None:
                self.levels[level] = block
                return
            block = (waiting + block).tocsr()
            self.levels[level] = None

    def finish(self) -> tuple[np.ndarray, sp.csr_matrix]:
        """``(n, 2)`` int64 grid cells ``(row, col)`` in barcode order, and their sums."""
        total = sp.csr_matrix(self.shape, dtype=np.float32)
        for waiting in self.levels:
            if waiting is not None:
                total = (total + waiting).tocsr()
        self.levels = []
        return np.column_stack(np.divmod(self.keys, _KEY_COLUMNS)), total


_KEY_COLUMNS = 1 << 20  # a coarse key is row × 2**20 + column (HD grids are ~3,350 wide)


def _coarse_keys(barcodes: np.ndarray, *, factor: int, source: Path) -> np.ndarray:
    """``(n,)`` int64 coarse keys of 2 µm barcodes (text)."""
    text = pd.Series(barcodes, dtype=object).astype(str)
    parts = text.str.extract(_BARCODE)
    bad = parts.isna().any(axis=1) | (parts[0] != f"{FINEST_UM:03d}")
    if bad.any():
        raise CountsFormatError(
            f"{source}: barcode {text[bad].iloc[0]!r} is not a 2 µm Visium HD bin; expected "
            "s_002um_<row>_<col>-1 as Space Ranger names them"
        )
    rows = parts[1].astype(np.int64).to_numpy() // factor
    cols = parts[2].astype(np.int64).to_numpy() // factor
    return rows * _KEY_COLUMNS + cols


def _sum_h5(path: Path, *, factor: int, chunk: int) -> tuple[_Sums, dict[str, object], dict]:
    """Sum a 10x HDF5 matrix (genes × barcodes, CSC) a range of barcodes at a time; also its
    labels and root attributes."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f[H.MATRIX]
            features = group[H.FEATURES]
            labels: dict[str, object] = {
                "gene_ids": features[H.FEATURE_ID][()],
                "gene_names": features[H.FEATURE_NAME][()],
                "feature_types": features[H.FEATURE_TYPE][()]
                if H.FEATURE_TYPE in features
                else None,
                "genome": features[H.GENOME][()] if H.GENOME in features else None,
            }
            metadata = root_attributes(f)
            n_features = len(labels["gene_ids"])  # type: ignore[arg-type]
            indptr = np.asarray(group[H.INDPTR][()], dtype=np.int64)
            n_barcodes = len(indptr) - 1
            keys = _h5_keys(group[H.BARCODES], factor=factor, source=path)
            sums = _Sums(keys, n_features)
            start = 0
            while start < n_barcodes:
                # As many barcodes as keep the block near ``chunk`` entries (at least one).
                stop = int(np.searchsorted(indptr, indptr[start] + chunk, side="right")) - 1
                stop = min(max(stop, start + 1), n_barcodes)
                lo, hi = int(indptr[start]), int(indptr[stop])
                values = np.asarray(group[H.DATA][lo:hi])
                genes = np.asarray(group[H.INDICES][lo:hi], dtype=np.int64)
                check_entries(values, genes, n_features, source=path)
                owners = np.repeat(np.arange(start, stop), np.diff(indptr[start : stop + 1]))
                sums.add(owners, genes, values)
                start = stop
    except (OSError, KeyError, ValueError) as exc:
        raise CountsFormatError(
            f"could not read {path} as a 10x HDF5 matrix ({exc}); copy it again from the Space "
            "Ranger outs/ folder"
        ) from exc
    return sums, labels, metadata


def _h5_keys(barcodes: Any, *, factor: int, source: Path) -> np.ndarray:
    """``(n,)`` coarse keys of an HDF5 barcodes dataset, read a block at a time."""
    parts = [np.zeros(0, np.int64)]
    for start in range(0, len(barcodes), CHUNK_BARCODES):
        text = np.char.decode(barcodes[start : start + CHUNK_BARCODES].astype("S"))
        parts.append(_coarse_keys(text, factor=factor, source=source))
    return np.concatenate(parts)


def _sum_mtx(folder: Path, *, factor: int, chunk: int) -> tuple[_Sums, dict[str, object], dict]:
    """Sum a Matrix Market folder, its matrix read a block of lines at a time."""
    matrix = _first(folder, MtxFiles.MATRIX)
    features = pd.read_csv(
        _first(folder, MtxFiles.FEATURES), sep="\t", header=None, dtype=str,
        keep_default_na=False, na_filter=False,
    )  # fmt: skip
    keys = np.concatenate(
        [
            _coarse_keys(block[0].to_numpy(), factor=factor, source=folder)
            for block in pd.read_csv(
                _first(folder, MtxFiles.BARCODES), sep="\t", header=None, dtype=str,
                keep_default_na=False, na_filter=False, chunksize=CHUNK_BARCODES,
            )
        ]
    )  # fmt: skip
    sums = _Sums(keys, len(features))
    for genes, barcodes, values in mtx_entries(
        matrix, shape=(len(features), len(keys)), chunk=chunk
    ):
        sums.add(barcodes, genes, values)
    labels = {
        "gene_ids": features[0].to_numpy(),
        "gene_names": features[1].to_numpy(),
        "feature_types": features[2].to_numpy() if features.shape[1] > 2 else None,
        "genome": None,
    }
    return sums, labels, {}


def _centres(path: Path, grid: np.ndarray, *, factor: int) -> pd.DataFrame:
    """The coarse bins' positions: each the mean centre of its 2 µm bins in ``path``."""
    import pyarrow.parquet as pq

    key = grid[:, 0] * _KEY_COLUMNS + grid[:, 1]
    sums = np.zeros((len(key), 3))
    try:
        table = pq.ParquetFile(path)
        columns = [C.ARRAY_ROW, C.ARRAY_COL, C.PXL_COL, C.PXL_ROW]
        for batch in table.iter_batches(batch_size=CHUNK_BARCODES, columns=columns):
            part = batch.to_pandas()
            own = (part[C.ARRAY_ROW].to_numpy(np.int64) // factor) * _KEY_COLUMNS + (
                part[C.ARRAY_COL].to_numpy(np.int64) // factor
            )
            where = np.searchsorted(key, own)
            hit = (where < len(key)) & (key[np.minimum(where, len(key) - 1)] == own)
            np.add.at(sums, where[hit], np.c_[part[[C.PXL_COL, C.PXL_ROW]].to_numpy(float)[hit],
                                               np.ones(hit.sum())])  # fmt: skip
    except (OSError, KeyError, ValueError) as exc:
        raise SpaceRangerLayoutError(
            f"could not read {path} ({exc}); expected Visium HD's tissue_positions.parquet"
        ) from exc
    if len(key) and sums[:, 2].min() == 0:
        raise SpaceRangerLayoutError(
            f"{path} lacks the positions of some bins of the matrix; the files come from "
            "different runs"
        )
    centre = sums[:, :2] / np.maximum(sums[:, 2:], 1)
    return pd.DataFrame(
        {
            "in_tissue": np.ones(len(key), dtype=bool),
            "array_row": grid[:, 0].astype(np.int32),
            "array_col": grid[:, 1].astype(np.int32),
            "x": centre[:, 0],
            "y": centre[:, 1],
        }
    )


def _first(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CountsFormatError(f"Matrix Market folder {folder} lacks {' or '.join(names)}")
