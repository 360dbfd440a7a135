"""Matrix Market count entries read a block of lines at a time, never the file whole.

A Visium HD ``square_002um`` matrix holds hundreds of millions of entries; read whole (its
decompressed text, then the parse) it costs many times one sample's 8 µm data. Here the
header is checked first (banner, size line, shape), so that a damaged size line never makes a
reader allocate for entries the file cannot hold; the entries are then parsed from the (gzip)
stream in blocks with pandas' C parser, each block checked before it is handed on; at the end
the entries seen must be those declared, and the file must end with a line end (a copy cut
mid-line would read a wrong last value).
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from tmescope.errors import CountsFormatError, TmescopeWarning
from tmescope.io._messages import first_line
from tmescope.io.count_table import check_entries

GZIP_MAGIC = b"\x1f\x8b"
_FIELDS = ("integer", "real", "double")  # Space Ranger writes integer, R's writeMM real
_HEADER_LINE_BYTES = 1 << 16  # a banner, comment or size line longer than this is damage
_READ_ERRORS = (OSError, EOFError, zlib.error)  # the bytes: a cut gzip stream, a failing disk
_PARSE_ERRORS = (ValueError, OverflowError, pd.errors.ParserError)  # the text
# A fourth column catches a line with an extra field (pandas would otherwise make the first
# column of such a first line an index, shifting every value).
_COLUMNS = {"feature": np.int64, "barcode": np.int64, "count": np.float64, "extra": np.float32}

Entries = tuple[np.ndarray, np.ndarray, np.ndarray]  # (feature, barcode, count), each (m,)


def mtx_entries(path: Path, *, shape: tuple[int, int], chunk: int) -> Iterator[Entries]:
    """0-based ``(feature int32, barcode int32, count float32)`` blocks of about ``chunk``
    entries of a coordinate Matrix Market file of ``shape`` (features, barcodes).

    Counts are checked whole numbers from 0 to ``MAX_COUNT``; duplicates are handed on as they
    are (a reader adds them up). An all-zero matrix (R's ``pattern symmetric`` with 0 entries)
    yields nothing, with a warning.
    """
    folder = path.parent
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == GZIP_MAGIC
            if not gzipped:
                _check_line_end(raw, path)
        with _text(path, gzipped=gzipped) as (handle, tail):
            kind, declared = _read_header(handle, path=path, shape=shape)
            if declared == 0:
                _expect_no_entries(handle, path=path, kind=kind, shape=shape)
                seen = 0
            else:
                seen = yield from _blocks(handle, path=path, shape=shape, chunk=chunk)
            if gzipped:
                _check_line_end(io.BytesIO(tail.last), path)
    except _READ_ERRORS as exc:
        raise CountsFormatError(
            f"could not read the Matrix Market folder {folder}: {first_line(exc)}; copy it again "
            "from the Space Ranger outs/ folder"
        ) from exc
    if seen != declared:
        raise CountsFormatError(
            f"{path} declares {declared:,} counts but holds {seen:,}: the file is cut short or its "
            "header damaged; copy it again"
        )


class _Tail(io.RawIOBase):
    """A stream that remembers its last byte: whether a gzip's text ends with a line end is
    known only once it has been read."""

    def __init__(self, inner: io.BufferedIOBase) -> None:
        self.inner, self.last = inner, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        if data:
            self.last = data[-1:]
        return len(data)


@contextmanager
def _text(path: Path, *, gzipped: bool) -> Iterator[tuple[io.BufferedReader, _Tail]]:
    """The file's text as a buffered binary stream, and the tail tracker under it."""
    with gzip.open(path, "rb") if gzipped else path.open("rb") as inner:
        tail = _Tail(inner)
        yield io.BufferedReader(tail, buffer_size=1 << 20), tail


def _check_line_end(handle: BinaryIO, path: Path) -> None:
    """The last byte of ``handle`` (a plain file, or a gzip's last byte) is a line end."""
    handle.seek(0, io.SEEK_END)
    if handle.tell() == 0:
        raise CountsFormatError(
            f"{path} is empty; copy it again from the Space Ranger outs/ folder"
        )
    handle.seek(-1, io.SEEK_END)
    if handle.read(1) not in (b"\n", b"\r"):
        raise CountsFormatError(
            f"{path} ends mid-line (its last line has no line end): the file looks cut short; "
            "copy it again from the Space Ranger outs/ folder"
        )


def _read_header(
    handle: io.BufferedReader, *, path: Path, shape: tuple[int, int]
) -> tuple[str, int]:
    """The matrix kind (``coordinate integer general`` …) and the entries it declares."""
    banner = handle.readline(_HEADER_LINE_BYTES).decode("ascii", "replace").strip().lower().split()
    if len(banner) != 5 or banner[:2] != ["%%matrixmarket", "matrix"]:
        text = repr(" ".join(banner))
        raise CountsFormatError(
            f"{path} is not a Matrix Market file (first line {text[:60]}); expected "
            "'%%MatrixMarket matrix coordinate integer general' as Space Ranger writes it"
        )
    kind = " ".join(banner[2:])
    if (
        banner[2] != "coordinate"
        or banner[3] not in (*_FIELDS, "pattern")
        or banner[4] not in ("general", "symmetric")
    ):
        raise CountsFormatError(
            f"{path} holds a '{kind}' matrix; expected 'coordinate integer general' (or real) "
            "counts as Space Ranger writes them"
        )
    n_rows, n_cols, declared = _size_line(handle, path=path)
    if (n_rows, n_cols) != shape:
        raise CountsFormatError(
            f"{path.parent}: matrix is {n_rows}×{n_cols} (features × barcodes) but there are "
            f"{shape[0]} features and {shape[1]} barcodes; the files do not belong together"
        )
    if declared and (banner[3] not in _FIELDS or banner[4] != "general"):
        raise CountsFormatError(
            f"{path} holds a '{kind}' matrix with {declared:,} entries; expected 'coordinate "
            "integer general' (or real) counts as Space Ranger writes them (a pattern matrix "
            "has no counts, a symmetric one is not features × barcodes)"
        )
    return kind, declared


def _size_line(handle: io.BufferedReader, *, path: Path) -> tuple[int, int, int]:
    """``(rows, columns, entries)``: the first line after the comments."""
    while line := handle.readline(_HEADER_LINE_BYTES):
        line = line.strip()
        if not line or line.startswith(b"%"):
            continue
        try:
            numbers = tuple(int(v) for v in line.split())
        except ValueError:
            break
        if len(numbers) == 3 and min(numbers) >= 0:
            return numbers[0], numbers[1], numbers[2]
        break
    raise CountsFormatError(
        f"{path} has no valid size line (rows, columns, entries) after its header; the file is "
        "damaged; copy it again from the Space Ranger outs/ folder"
    )


def _expect_no_entries(
    handle: io.BufferedReader, *, path: Path, kind: str, shape: tuple[int, int]
) -> None:
    """A matrix declaring 0 entries holds none: R's writeMM writes an all-zero matrix so."""
    for line in handle:
        if line.strip() and not line.lstrip().startswith(b"%"):
            raise CountsFormatError(
                f"{path} declares 0 counts but holds entries after its size line: its header is "
                "damaged; copy it again"
            )
    warnings.warn(
        f"{path}: the count matrix has no entries ('{kind}', 0 of {shape[0]}×{shape[1]}); the "
        "sample is read with no counts (all zeros)",
        TmescopeWarning,
        stacklevel=5,
    )


def _blocks(
    handle: io.BufferedReader, *, path: Path, shape: tuple[int, int], chunk: int
) -> Generator[Entries, None, int]:
    """The entries, ``chunk`` lines at a time; returns how many there were."""
    n_features, n_barcodes = shape
    seen = 0
    try:
        with pd.read_csv(
            handle, sep=r"\s+", header=None, comment="%", names=list(_COLUMNS), index_col=False,
            dtype=_COLUMNS, chunksize=chunk,
        ) as reader:  # fmt: skip
            for block in reader:
                if block["count"].isna().any() or block["extra"].notna().any():
                    raise CountsFormatError(
                        f"{path}: an entry has not three fields (feature, barcode, count); the "
                        "file is damaged; copy it again from the Space Ranger outs/ folder"
                    )
                features = _zero_based(block["feature"], n_features, what="feature", path=path)
                barcodes = _zero_based(block["barcode"], n_barcodes, what="barcode", path=path)
                values = block["count"].to_numpy()
                check_entries(values, features, n_features, source=path)
                seen += len(block)
                yield features, barcodes, values.astype(np.float32)  # whole, so exact
    except CountsFormatError:
        raise
    except _PARSE_ERRORS as exc:
        raise CountsFormatError(
            f"could not parse {path} as Matrix Market ({first_line(exc)}); the file is damaged; "
            "copy it again from the Space Ranger outs/ folder"
        ) from exc
    return seen


def _zero_based(column: pd.Series, n: int, *, what: str, path: Path) -> np.ndarray:
    """1-based indices as 0-based int32, checked in range (1 to ``n``) before they narrow."""
    one_based = column.to_numpy()
    if one_based.size and (one_based.min() < 1 or one_based.max() > n):
        raise CountsFormatError(f"{path}: a {what} index is out of range")
    return np.subtract(one_based, 1, dtype=np.int32, casting="unsafe")
