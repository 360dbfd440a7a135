"""Read a Matrix Market count folder: ``matrix.mtx``, ``barcodes.tsv`` and ``features.tsv`` (or
the legacy two-column ``genes.tsv``), each gzipped or not.

Compression is sniffed from the content (gzip's magic bytes), never from the name: R users save
plain text as ``matrix.mtx.gz`` with every value in double quotes (``"AAACAAGTATCTCCCA-1"``),
and the quotes are stripped like any CSV quoting.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from tmescope.errors import CountsFormatError, TmescopeWarning
from tmescope.io._keys import MtxFiles
from tmescope.io._messages import first_line
from tmescope.io.count_table import build_counts

GZIP_MAGIC = b"\x1f\x8b"
_MIN_ENTRY_BYTES = 6  # "1 1 1\n": no entry is shorter, which bounds what a header may declare
_FIELDS = ("integer", "real", "double")  # Space Ranger writes integer, R's writeMM real
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
        matrix_bytes = read_text_bytes(matrix_path)
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
    matrix = _parse_matrix(
        matrix_bytes, path=matrix_path, n_features=len(features), n_barcodes=len(barcodes)
    )
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


def _parse_matrix(data: bytes, *, path: Path, n_features: int, n_barcodes: int) -> sp.csr_matrix:
    """The features × barcodes matrix as barcodes × features CSR, its header checked first, so
    that a damaged size line never makes the parser allocate for entries the file cannot hold."""
    banner_end = data.find(b"\n")
    banner = data[:banner_end].decode("ascii", "replace").strip().lower().split()
    if len(banner) != 5 or banner[:2] != ["%%matrixmarket", "matrix"]:
        raise CountsFormatError(
            f"{path} is not a Matrix Market file (first line {_short(banner)}); expected "
            "'%%MatrixMarket matrix coordinate integer general' as Space Ranger writes it"
        )
    kind = " ".join(banner[2:])
    if banner[2] != "coordinate" or banner[3] not in (*_FIELDS, "pattern") or banner[4] not in (
        "general", "symmetric"
    ):
        raise CountsFormatError(
            f"{path} holds a '{kind}' matrix; expected 'coordinate integer general' (or real) "
            "counts as Space Ranger writes them"
        )
    size, body_start = _size_line(data, banner_end + 1, path=path)
    n_rows, n_cols, n_entries = size
    if (n_rows, n_cols) != (n_features, n_barcodes):
        raise CountsFormatError(
            f"{path.parent}: matrix is {n_rows}×{n_cols} (features × barcodes) but there are "
            f"{n_features} features and {n_barcodes} barcodes; the files do not belong together"
        )
    if n_entries == 0 and _has_entries(data, body_start):
        raise CountsFormatError(
            f"{path} declares 0 counts but holds entries after its size line: its header is "
            "damaged; copy it again"
        )
    if n_entries == 0:
        # R's writeMM writes an all-zero matrix as 'coordinate pattern symmetric' with no
        # entries: a valid, empty count matrix (scipy reads it as zeros too).
        warnings.warn(
            f"{path}: the count matrix has no entries ('{kind}', 0 of {n_rows}×{n_cols}); the "
            "sample is read with no counts (all zeros)",
            TmescopeWarning,
            stacklevel=4,
        )
        return sp.csr_matrix((n_barcodes, n_features), dtype=np.float64)
    if banner[3] not in _FIELDS or banner[4] != "general":
        raise CountsFormatError(
            f"{path} holds a '{kind}' matrix with {n_entries:,} entries; expected 'coordinate "
            "integer general' (or real) counts as Space Ranger writes them (a pattern matrix "
            "has no counts, a symmetric one is not features × barcodes)"
        )
    if n_entries > (len(data) - body_start) // _MIN_ENTRY_BYTES + 1:
        raise CountsFormatError(
            f"{path} declares {n_entries:,} counts but holds {len(data) - body_start:,} bytes of "
            "entries: the file is cut short or its header damaged; copy it again"
        )
    # scipy reads "5.5" or "1e3" in an integer matrix as 5 or 1: read every field as real, so
    # that the count checks see what the file says.
    as_real = b"%%MatrixMarket matrix coordinate real general" + data[banner_end:]
    try:
        coo = scipy.io.mmread(io.BytesIO(as_real))
    except (ValueError, OverflowError, RuntimeError) as exc:
        raise CountsFormatError(
            f"could not parse {path} as Matrix Market ({first_line(exc)}); the file is damaged; "
            "copy it again from the Space Ranger outs/ folder"
        ) from exc
    return sp.csr_matrix(coo.T)  # duplicate entries add up, as Matrix Market readers agree


def _has_entries(data: bytes, start: int) -> bool:
    """Whether any line from ``start`` on is neither blank nor a comment."""
    return any(
        line.strip() and not line.lstrip().startswith(b"%") for line in data[start:].splitlines()
    )


def _size_line(data: bytes, start: int, *, path: Path) -> tuple[tuple[int, int, int], int]:
    """``(rows, columns, entries)`` from the first line after the comments, and where the
    entries begin."""
    position = start
    while position < len(data):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end
        line = data[position:end].strip()
        position = end + 1
        if not line or line.startswith(b"%"):
            continue
        fields = line.split()
        try:
            numbers = tuple(int(v) for v in fields)
        except ValueError:
            numbers = ()
        if len(numbers) != 3 or min(numbers) < 0:
            break
        return (numbers[0], numbers[1], numbers[2]), position
    raise CountsFormatError(
        f"{path} has no valid size line (rows, columns, entries) after its header; the file is "
        "damaged; copy it again from the Space Ranger outs/ folder"
    )


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
