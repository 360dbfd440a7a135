"""Barcodes and feature names as the readers hand them on: text, trimmed, present, printable,
and for barcodes each once.

Positions and count matrices are joined on barcodes, so a barcode read wrongly (``"nan"`` for an
empty cell, ``"b'AAAC…'"`` for bytes, a duplicate) would silently join the wrong spots.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from tmescope.errors import TmescopeError

_CONTROL = r"[\x00-\x1f\x7f]"  # NUL bytes of UTF-16 read as UTF-8, binary junk, tabs inside


def clean_labels(
    values: Iterable[object], *, what: str, source: str, error: type[TmescopeError]
) -> np.ndarray:
    """``values`` as an object array of trimmed strings; raise ``error`` naming ``source`` and
    ``what`` (``"barcode"``, ``"feature id"`` …) when one is missing, empty, not text (bytes must
    be UTF-8) or holds control characters."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    series = series.reset_index(drop=True)
    if pd.api.types.infer_dtype(series, skipna=False) != "string":  # bytes, numbers, missing
        series = series.map(lambda v: _as_text(v, what=what, source=source, error=error))
    series = series.astype(object).str.strip()
    labels = series.to_numpy(dtype=object)
    bad = (series == "") | series.str.contains(_CONTROL, regex=True)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        if not labels[i]:
            raise error(
                f"{source}: {what} {i + 1} is empty; expected one {what} per entry; check that "
                "the file was copied whole"
            )
        raise error(
            f"{source}: {what} {i + 1} ({labels[i][:40]!r}) holds control characters; the file "
            "is damaged or not UTF-8 text; copy it again from the Space Ranger outs/ folder"
        )
    return labels


def clean_barcodes(
    values: Iterable[object], *, source: str, error: type[TmescopeError]
) -> np.ndarray:
    """:func:`clean_labels` for barcodes, which must also be unique."""
    barcodes = clean_labels(values, what="barcode", source=source, error=error)
    repeated = pd.Index(barcodes).duplicated()
    if repeated.any():
        example = barcodes[int(np.flatnonzero(repeated)[0])]
        raise error(
            f"{source}: barcode {example!r} appears twice ({int(repeated.sum())} repeat(s)); "
            "expected each spot once; use the file of one Space Ranger run, unedited"
        )
    return barcodes


def _as_text(value: object, *, what: str, source: str, error: type[TmescopeError]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(
                f"{source}: {what} {bytes(value)[:40]!r} is not UTF-8 text; copy the file again "
                "from the Space Ranger outs/ folder"
            ) from exc
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return str(value)
    if (
        value is None
        or value is pd.NA
        or (isinstance(value, float | np.floating) and np.isnan(value))
    ):
        return ""  # a missing cell: reported as empty
    raise error(
        f"{source}: each {what} must be text, found {type(value).__name__} {str(value)[:40]!r}; "
        "expected the labels Space Ranger writes (e.g. AAACAAGTATCTCCCA-1, ENSG00000243485)"
    )
