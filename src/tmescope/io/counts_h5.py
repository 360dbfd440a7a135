"""Read a 10x feature-barcode matrix HDF5 file: Space Ranger / Cell Ranger 3+ (a ``matrix``
group) or legacy Cell Ranger 2 (one group per genome). Root attributes are optional (files
rewritten by other tools drop them) and only ever feed the metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp

from tmescope.errors import CountsFormatError
from tmescope.io._keys import H5Keys as H
from tmescope.io._messages import first_line
from tmescope.io.count_table import build_counts

_MAX_DEFLATE_RATIO = 1032
_READ_ERRORS = (OSError, TypeError, ValueError, RuntimeError, KeyError)  # h5py, damaged files


def read_10x_h5(path: Path) -> ad.AnnData:
    """Read a 10x HDF5 matrix (genes × barcodes, CSC) as a barcodes × genes AnnData."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if H.MATRIX in f:
                adata = _read_v3(_group(f, H.MATRIX, path), path)
            else:
                adata = _read_legacy(f, path)
            adata.uns["10x_metadata"] = root_attributes(f)
    except CountsFormatError:
        raise
    except _READ_ERRORS as exc:
        # h5py raises any of these on a damaged file: at open, or on a broken link or heap.
        raise CountsFormatError(
            f"could not open {path} as HDF5 ({first_line(exc)}): the file is truncated or is not "
            "a 10x feature-barcode matrix; re-copy it from the Space Ranger outs/ folder"
        ) from exc
    return adata


def _read_v3(group: h5py.Group, path: Path) -> ad.AnnData:
    features = _group(group, H.FEATURES, path)
    barcodes = _array(group, H.BARCODES, path)
    gene_ids = _array(features, H.FEATURE_ID, path)
    has = set(features)  # optional: files rewritten by other tools may drop them
    return build_counts(
        _csr(group, path, n_barcodes=_length(barcodes), n_genes=_length(gene_ids)),
        barcodes=barcodes,
        gene_ids=gene_ids,
        gene_names=_array(features, H.FEATURE_NAME, path),
        feature_types=_array(features, H.FEATURE_TYPE, path) if H.FEATURE_TYPE in has else None,
        genome=_array(features, H.GENOME, path) if H.GENOME in has else None,
        source=str(path),
    )


def _read_legacy(f: h5py.File, path: Path) -> ad.AnnData:
    genomes = [k for k in f if isinstance(f.get(k), h5py.Group)]
    if len(genomes) != 1:
        raise CountsFormatError(
            f"{path} has no 'matrix' group and {len(genomes)} genome groups; expected a 10x "
            "feature-barcode matrix (Space Ranger / Cell Ranger 3+) or a single-genome v2 file"
        )
    group = f[genomes[0]]
    barcodes = _array(group, H.BARCODES, path)
    gene_ids = _array(group, H.LEGACY_GENE_IDS, path)
    matrix = _csr(group, path, n_barcodes=_length(barcodes), n_genes=_length(gene_ids))
    return build_counts(
        matrix,
        barcodes=barcodes,
        gene_ids=gene_ids,
        gene_names=_array(group, H.LEGACY_GENE_NAMES, path),
        feature_types=None,
        genome=np.full(matrix.shape[1], genomes[0], dtype=object),
        source=str(path),
    )


def _csr(group: h5py.Group, path: Path, *, n_barcodes: int, n_genes: int) -> sp.csr_matrix:
    """10x stores genes × barcodes in CSC, which read as CSR is barcodes × genes.

    ``n_barcodes`` and ``n_genes`` are the lengths of the label datasets, which the shape must
    match: checked before any array of that size is made.
    """
    shape = np.atleast_1d(_array(group, H.SHAPE, path))
    if shape.shape != (2,) or shape.dtype.kind not in "iuf" or not _whole(shape):
        raise CountsFormatError(
            f"{path}: the matrix shape is {_short(shape)}; expected two numbers (features, barcodes)"
        )
    shape_genes, shape_barcodes = (int(v) for v in shape)
    data = _array(group, H.DATA, path)
    indices = _array(group, H.INDICES, path)
    indptr = _array(group, H.INDPTR, path)
    problems = []
    if n_barcodes != shape_barcodes:
        problems.append(f"{n_barcodes} barcodes for shape {shape_genes}×{shape_barcodes}")
    if n_genes != shape_genes:
        problems.append(f"{n_genes} features for shape {shape_genes}×{shape_barcodes}")
    if data.ndim != 1 or indices.ndim != 1 or indptr.ndim != 1:
        problems.append("data, indices and indptr must be 1-D")
    elif indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
        problems.append(f"indices and indptr are {indices.dtype} and {indptr.dtype}, not integers")
    elif (
        len(indptr) != shape_barcodes + 1
        or len(data) != len(indices)
        or indptr[0] != 0
        or indptr[-1] != len(data)
        or np.any(np.diff(indptr) < 0)
    ):
        problems.append("indptr, indices and data do not fit together")
    elif len(indices) and (indices.min() < 0 or indices.max() >= shape_genes):
        problems.append("feature indices out of range")
    if problems:
        raise CountsFormatError(
            f"{path}: inconsistent 10x matrix: {'; '.join(problems)}; the file is damaged or was "
            "rewritten by another tool; copy it again from the Space Ranger outs/ folder"
        )
    if data.dtype.kind not in "biuf":
        raise CountsFormatError(
            f"{path}: counts are {data.dtype} values; expected whole numbers (integers)"
        )
    matrix = sp.csr_matrix(
        (data, indices.astype(np.int64), indptr.astype(np.int64)),
        shape=(shape_barcodes, shape_genes),
    )
    matrix.sum_duplicates()  # a gene listed twice for one barcode: its counts add up
    return matrix


def _not_a_10x_matrix(path: Path, what: str) -> CountsFormatError:
    return CountsFormatError(
        f"{path} is HDF5 but not a 10x feature-barcode matrix: {what}; expected a 'matrix' group "
        "with data, indices, indptr, shape, barcodes and features"
    )


def _group(parent: h5py.Group, name: str, path: Path) -> h5py.Group:
    item = parent.get(name)
    if not isinstance(item, h5py.Group):
        raise _not_a_10x_matrix(path, _missing(parent, name, item, "group"))
    return item


def _array(parent: h5py.Group, name: str, path: Path) -> np.ndarray:
    """A dataset read whole, or an error saying it is missing, not a dataset or unreadable."""
    item = parent.get(name)
    if not isinstance(item, h5py.Dataset):
        raise _not_a_10x_matrix(path, _missing(parent, name, item, "dataset"))
    # A damaged header may claim more elements than memory holds: compare with what the file
    # could hold at deflate's best ratio (1032:1) before allocating.
    if item.size * item.dtype.itemsize > _MAX_DEFLATE_RATIO * max(path.stat().st_size, 2**20):
        raise CountsFormatError(
            f"{path}: {name!r} claims {item.size:,} values, more than the file can hold; the file "
            "is damaged; copy it again from the Space Ranger outs/ folder"
        )
    try:
        return np.asarray(item[()])
    except _READ_ERRORS as exc:
        raise CountsFormatError(
            f"could not read {name!r} of {path} ({first_line(exc)}): the file is damaged; "
            "copy it again from the Space Ranger outs/ folder"
        ) from exc


def _missing(parent: h5py.Group, name: str, item: object, kind: str) -> str:
    where = f"{_text(parent.name).rstrip('/')}/{name}"  # a damaged name may not decode
    return f"missing {where!r}" if item is None else f"{where!r} is not a {kind}"


def root_attributes(f: h5py.File) -> dict[str, Any]:
    """Space Ranger's version, chemistry and library ids; an unreadable one is left out, since
    the counts do not depend on them."""
    meta: dict[str, Any] = {}
    for key in ("software_version", "chemistry_description", "library_ids", "filetype"):
        try:
            value = f.attrs.get(key)
        except _READ_ERRORS:
            continue
        if value is None:
            continue
        if isinstance(value, np.ndarray):
            value = [_text(v) for v in value.reshape(-1).tolist()]
            if len(value) == 1 and key != "library_ids":
                value = value[0]
        else:
            value = _text(value)
        meta[key] = value
    return meta


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _length(labels: np.ndarray) -> int:
    return len(np.atleast_1d(labels))


def _whole(values: np.ndarray) -> bool:
    """Whole numbers from 0 to 2**31: a matrix dimension, not NaN or a damaged huge value."""
    with np.errstate(invalid="ignore"):
        fine = np.isfinite(values) & (values == np.round(values)) & (values >= 0)
        return bool(np.all(fine & (values < 2**31)))


def _short(values: np.ndarray) -> str:
    text = repr(values.tolist())
    return text if len(text) <= 60 else f"{text[:57]}..."
