"""Read spot × gene counts: 10x feature-barcode HDF5 (v3 and legacy v2) or Matrix Market folders.

Counts come back as an AnnData with barcodes as ``obs_names``, gene symbols (made unique) as
``var_names``, and ``var`` columns ``gene_ids``, ``feature_types``, ``genome``. Only "Gene
Expression" features are kept; antibody or CRISPR features of multiome runs are dropped.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from tmescope.errors import CountsFormatError
from tmescope.io._keys import H5Keys as H
from tmescope.io._keys import MtxFiles

log = logging.getLogger(__name__)


def read_10x_h5(path: Path) -> ad.AnnData:
    """Read a 10x HDF5 matrix; root attributes are optional (files rewritten by other tools)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            adata = _read_h5_v3(f[H.MATRIX], path) if H.MATRIX in f else _read_h5_legacy(f, path)
            adata.uns["10x_metadata"] = _root_attrs(f)
    except OSError as exc:
        raise CountsFormatError(
            f"could not open {path} as HDF5 ({_first_line(exc)}): the file is truncated or is not "
            "a 10x feature-barcode matrix; re-copy it from the Space Ranger outs/ folder"
        ) from exc
    except KeyError as exc:
        raise CountsFormatError(
            f"{path} is HDF5 but not a 10x feature-barcode matrix: missing {exc}; expected a "
            "'matrix' group with data, indices, indptr, shape, barcodes and features"
        ) from exc
    return _keep_gene_expression(adata)


def _read_h5_v3(group: h5py.Group, path: Path) -> ad.AnnData:
    features = group[H.FEATURES]
    n_features = len(features[H.FEATURE_ID])
    var = pd.DataFrame(
        {
            "gene_ids": _decode(features[H.FEATURE_ID][:]),
            "gene_symbols": _decode(features[H.FEATURE_NAME][:]),
            "feature_types": _decode(features[H.FEATURE_TYPE][:])
            if H.FEATURE_TYPE in features
            else np.full(n_features, H.GENE_EXPRESSION, dtype=object),
            "genome": _decode(features[H.GENOME][:])
            if H.GENOME in features
            else np.full(n_features, "", dtype=object),
        }
    )
    return _assemble_csc(group, var, path)


def _read_h5_legacy(f: h5py.File, path: Path) -> ad.AnnData:
    genomes = [k for k in f if isinstance(f[k], h5py.Group)]
    if len(genomes) != 1:
        raise CountsFormatError(
            f"{path} has no 'matrix' group and {len(genomes)} genome groups; expected a 10x "
            "feature-barcode matrix (Space Ranger / Cell Ranger 3+) or a single-genome v2 file"
        )
    group = f[genomes[0]]
    ids = _decode(group[H.LEGACY_GENE_IDS][:])
    var = pd.DataFrame(
        {
            "gene_ids": ids,
            "gene_symbols": _decode(group[H.LEGACY_GENE_NAMES][:]),
            "feature_types": np.full(len(ids), H.GENE_EXPRESSION, dtype=object),
            "genome": np.full(len(ids), genomes[0], dtype=object),
        }
    )
    return _assemble_csc(group, var, path)


def _assemble_csc(group: h5py.Group, var: pd.DataFrame, path: Path) -> ad.AnnData:
    """10x stores genes × barcodes in CSC, which read as CSR is barcodes × genes."""
    shape = np.atleast_1d(group[H.SHAPE][()])
    if shape.shape != (2,):
        raise CountsFormatError(
            f"{path}: the matrix shape is {shape.tolist()}; expected two numbers (features, barcodes)"
        )
    n_genes, n_barcodes = (int(v) for v in shape)
    data = group[H.DATA][:]
    indices = group[H.INDICES][:]
    indptr = group[H.INDPTR][:]
    barcodes = _decode(group[H.BARCODES][:])
    problems = []
    if len(barcodes) != n_barcodes:
        problems.append(f"{len(barcodes)} barcodes for shape {n_genes}×{n_barcodes}")
    if len(var) != n_genes:
        problems.append(f"{len(var)} features for shape {n_genes}×{n_barcodes}")
    if len(indptr) != n_barcodes + 1 or len(data) != len(indices) or indptr[-1] != len(data):
        problems.append("indptr, indices and data do not fit together")
    elif len(indices) and (indices.min() < 0 or indices.max() >= n_genes):
        problems.append("feature indices out of range")
    if problems:
        raise CountsFormatError(f"{path}: inconsistent 10x matrix: {'; '.join(problems)}")
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n_barcodes, n_genes))
    return _make_anndata(matrix, barcodes, var)


def read_10x_mtx(folder: Path) -> ad.AnnData:
    """Read a Matrix Market count folder (``matrix.mtx[.gz]``, barcodes, features or genes)."""
    folder = Path(folder)
    matrix_path = _first_existing(folder, MtxFiles.MATRIX)
    barcodes_path = _first_existing(folder, MtxFiles.BARCODES)
    features_path = _first_existing(folder, MtxFiles.FEATURES)
    try:
        with _open_maybe_gzip(matrix_path) as fh:
            matrix = scipy.io.mmread(fh)
        barcodes = pd.read_csv(barcodes_path, header=None, sep="\t", dtype=str)[0].to_numpy()
        features = pd.read_csv(features_path, header=None, sep="\t", dtype=str)
    except (OSError, ValueError, EOFError, IndexError, pd.errors.ParserError) as exc:
        raise CountsFormatError(
            f"could not read the Matrix Market folder {folder}: {_first_line(exc)}"
        ) from exc
    matrix = sp.csr_matrix(matrix.T)  # features × barcodes on disk
    if features.shape[1] < 2:
        raise CountsFormatError(
            f"{features_path} has {features.shape[1]} column(s); expected gene id and name "
            "(and feature type)"
        )
    var = pd.DataFrame(
        {
            "gene_ids": features[0].to_numpy(dtype=object),
            "gene_symbols": features[1].to_numpy(dtype=object),
            "feature_types": features[2].to_numpy(dtype=object)
            if features.shape[1] > 2
            else np.full(len(features), H.GENE_EXPRESSION, dtype=object),
            "genome": np.full(len(features), "", dtype=object),
        }
    )
    if matrix.shape != (len(barcodes), len(var)):
        raise CountsFormatError(
            f"{folder}: matrix is {matrix.shape[1]}×{matrix.shape[0]} (features × barcodes) but "
            f"there are {len(var)} features and {len(barcodes)} barcodes"
        )
    return _keep_gene_expression(_make_anndata(matrix, barcodes, var))


def describe_disagreement(a: ad.AnnData, b: ad.AnnData) -> str | None:
    """Say how two count matrices of one sample differ, or ``None`` when they agree."""
    if a.shape != b.shape:
        return f"shapes differ ({a.n_obs}×{a.n_vars} vs {b.n_obs}×{b.n_vars})"
    if not np.array_equal(a.obs_names.to_numpy(), b.obs_names.to_numpy()):
        return "barcodes differ"
    if not np.array_equal(a.var["gene_ids"].to_numpy(), b.var["gene_ids"].to_numpy()):
        return "features differ"
    if (a.X != b.X).nnz:
        return "counts differ"
    return None


def _make_anndata(matrix: sp.csr_matrix, barcodes: np.ndarray, var: pd.DataFrame) -> ad.AnnData:
    # Gene symbols repeat in real 10x references (e.g. TBCE, HSPA14): suffix them as scanpy does.
    var.index = ad.utils.make_index_unique(pd.Index(var["gene_symbols"].astype(str).to_numpy()))
    return ad.AnnData(
        X=matrix.astype(np.float32),
        obs=pd.DataFrame(index=pd.Index(np.asarray(barcodes, dtype=str), name=None)),
        var=var,
    )


def _keep_gene_expression(adata: ad.AnnData) -> ad.AnnData:
    is_gene = (adata.var["feature_types"] == H.GENE_EXPRESSION).to_numpy()
    if is_gene.all():
        return adata
    dropped = sorted(set(adata.var.loc[~is_gene, "feature_types"]))
    log.info("dropping %d non-gene features (%s)", int((~is_gene).sum()), ", ".join(dropped))
    return adata[:, is_gene].copy()


def _root_attrs(f: h5py.File) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key in ("software_version", "chemistry_description", "library_ids", "filetype"):
        if key in f.attrs:
            value = f.attrs[key]
            if isinstance(value, np.ndarray):
                value = [_decode_one(v) for v in value.tolist()]
                if len(value) == 1 and key != "library_ids":
                    value = value[0]
            else:
                value = _decode_one(value)
            meta[key] = value
    return meta


def _decode(values: np.ndarray) -> np.ndarray:
    return np.array([_decode_one(v) for v in values], dtype=object)


def _decode_one(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CountsFormatError(
        f"Matrix Market folder {folder} lacks {' or '.join(names)}; expected matrix.mtx.gz, "
        "barcodes.tsv.gz and features.tsv.gz as Space Ranger writes them"
    )


@contextmanager
def _open_maybe_gzip(path: Path) -> Iterator[IO[bytes]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        yield fh  # type: ignore[misc]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
