"""Read a Matrix Market count folder: ``matrix.mtx``, ``barcodes.tsv`` and ``features.tsv`` (or
the legacy two-column ``genes.tsv``), each gzipped or not.

Compression is sniffed from the content (gzip's magic bytes), never from the name: R users save
plain text as ``matrix.mtx.gz`` with every value in double quotes (``"AAACAAGTATCTCCCA-1"``),
and the quotes are stripped like any CSV quoting. The matrix is parsed a block of lines at a
time (:mod:`tmescope.io.mtx_stream`), never held whole as text.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.errors import CountsFormatError
from tmescope.io._keys import MtxFiles
from tmescope.io._messages import first_line
from tmescope.io.count_table import build_counts
from tmescope.io.mtx_stream import GZIP_MAGIC, mtx_entries

CHUNK_ENTRIES = 1 << 18  # entries parsed at a time: ~8 MB of parsed columns
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, OverflowError, pd.errors.ParserError)


def read_10x_mtx(folder: Path) -> ad.AnnData:
    """Read a Matrix Market count folder (``matrix.mtx[.gz]``, barcodes, features or genes)."""
    folder = Path(folder)
    matrix_path = _first_existing(folder, MtxFiles.MATRIX)
    barcodes_path = _first_existing(folder, MtxFiles.BARCODES)
    features_path = _first_existing(folder, MtxFiles.FEATURES)
    try:
        barcodes = _read_tsv(barcodes_path)
        features = _read_tsv(features_path)
    except CountsFormatError:
        raise
    except _READ_ERRORS as exc:
        raise CountsFormatError(
            f"could not read the Matrix Market folder {folder}: {first_line(exc)}; copy it again "
            "from the Space Ranger outs/ folder"
        ) from exc
    if features.shape[1] < 2:
        raise CountsFormatError(
            f"{features_path} has {features.shape[1]} column(s); expected gene id and name "
            "(and feature type)"
        )
    matrix = _read_matrix(matrix_path, n_features=len(features), n_barcodes=len(barcodes))
    return build_counts(
        matrix,
        barcodes=barcodes[0],
        gene_ids=features[0],
        gene_names=features[1],
        feature_types=features[2] if features.shape[1] > 2 else None,
        genome=None,
        source=str(folder),
    )


def read_text_bytes(path: Path) -> bytes:
    """A text file's bytes, gunzipped when its content is gzip; refused when empty or cut
    short (a copy that stopped mid-line would read as a wrong last value)."""
    raw = path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw
    if not data.strip():
        raise CountsFormatError(
            f"{path} is empty; copy it again from the Space Ranger outs/ folder"
        )
    if not data.endswith((b"\n", b"\r")):
        last = data.rsplit(b"\n", 1)[-1][:60].decode("utf-8", "replace")
        raise CountsFormatError(
            f"{path} ends mid-line ({last!r} has no line end): the file looks cut short; copy it "
            "again from the Space Ranger outs/ folder"
        )
    return data


def _read_tsv(path: Path) -> pd.DataFrame:
    """A tab-separated table of text, quotes stripped, nothing read as missing (a gene may be
    called "NA")."""
    return pd.read_csv(
        io.BytesIO(read_text_bytes(path)),
        sep="\t",
        header=None,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        encoding="utf-8-sig",
    )


def _read_matrix(path: Path, *, n_features: int, n_barcodes: int) -> sp.csr_matrix:
    """The features × barcodes file as barcodes × features CSR, built from its streamed blocks
    (duplicate entries add up, as Matrix Market readers agree)."""
    rows: list[np.ndarray] = []
    columns: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for features, barcodes, counts in mtx_entries(
        path, shape=(n_features, n_barcodes), chunk=CHUNK_ENTRIES
    ):
        rows.append(barcodes)
        columns.append(features)
        values.append(counts)
    coo = sp.coo_matrix(
        (_joined(values, np.float32), (_joined(rows, np.int32), _joined(columns, np.int32))),
        shape=(n_barcodes, n_features),
    )
    return coo.tocsr()


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """The blocks as one array; the list is emptied so that each block is freed once copied."""
    joined = np.concatenate(parts) if parts else np.zeros(0, dtype)
    parts.clear()
    return joined


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CountsFormatError(
        f"Matrix Market folder {folder} lacks {' or '.join(names)}; expected matrix.mtx.gz, "
        "barcodes.tsv.gz and features.tsv.gz as Space Ranger writes them"
    )


def _short(words: list[str]) -> str:
    text = repr(" ".join(words))
    return text if len(text) <= 60 else f"{text[:57]}..."
