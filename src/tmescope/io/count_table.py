"""The AnnData every count reader returns, built only from checked parts.

Whatever the file format, counts are whole numbers from 0 to :data:`MAX_COUNT` (float32 holds
them exactly), barcodes are unique text, and each feature has an id, a name and a type. Only
"Gene Expression" features are kept; antibody or CRISPR features of multiome runs are dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.errors import CountsFormatError
from tmescope.io._keys import H5Keys as H
from tmescope.io.labels import clean_barcodes, clean_labels

log = logging.getLogger(__name__)

# The AnnData holds float32 counts, exact for whole numbers up to 2**24; no spot holds as many
# UMIs of one gene (a whole Visium spot holds some 10**5), so a larger count is damage.
MAX_COUNT = 2**24


def build_counts(
    matrix: sp.csr_matrix,
    *,
    barcodes: object,
    gene_ids: object,
    gene_names: object,
    feature_types: object | None,
    genome: object | None,
    source: str,
) -> ad.AnnData:
    """Check ``matrix`` (barcodes × features) and its labels, then assemble the AnnData.

    ``feature_types`` ``None`` means every feature is gene expression; ``genome`` ``None`` means
    unknown. Labels may be bytes (HDF5) or text; they must have one entry per row or column.
    """
    n_barcodes, n_features = matrix.shape
    barcodes = clean_barcodes(_listed(barcodes), source=source, error=CountsFormatError)
    columns = {
        "gene_ids": clean_labels(
            _listed(gene_ids), what="feature id", source=source, error=CountsFormatError
        ),
        "gene_symbols": clean_labels(
            _listed(gene_names), what="feature name", source=source, error=CountsFormatError
        ),
        "feature_types": np.full(n_features, H.GENE_EXPRESSION, dtype=object)
        if feature_types is None
        else clean_labels(
            _listed(feature_types), what="feature type", source=source, error=CountsFormatError
        ),
        "genome": np.full(n_features, "", dtype=object)
        if genome is None
        else _decoded(_listed(genome)),
    }
    lengths = {name: len(values) for name, values in columns.items() if len(values) != n_features}
    if len(barcodes) != n_barcodes or lengths:
        found = ", ".join(f"{n} {name}" for name, n in lengths.items())
        raise CountsFormatError(
            f"{source}: the matrix is {n_features} features × {n_barcodes} barcodes but there are "
            f"{len(barcodes)} barcodes{', ' + found if found else ''}; the files of the matrix "
            "do not belong together; copy them again from one Space Ranger run"
        )
    check_count_values(matrix, source=source)
    var = pd.DataFrame(columns)
    # Gene symbols repeat in real 10x references (e.g. TBCE, HSPA14): suffix them as scanpy does.
    var.index = ad.utils.make_index_unique(pd.Index(var["gene_symbols"].astype(str).to_numpy()))
    adata = ad.AnnData(
        X=matrix.astype(np.float32),
        obs=pd.DataFrame(index=pd.Index(barcodes.astype(str), name=None)),
        var=var,
    )
    return _keep_gene_expression(adata, source=source)


def check_count_values(matrix: sp.csr_matrix, *, source: str) -> None:
    """Counts are whole numbers from 0 to MAX_COUNT: not NaN, negative, fractional or huge."""
    data = matrix.data
    if data.dtype.kind not in "biuf":
        raise CountsFormatError(
            f"{source}: counts are {data.dtype} values; expected whole numbers (integers)"
        )
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data) | (data != np.round(data))
    else:
        bad = np.zeros(data.shape, dtype=bool)
    bad |= (data < 0) | (data > MAX_COUNT)
    if bad.any():
        value = data[int(np.flatnonzero(bad)[0])]
        raise CountsFormatError(
            f"{source}: counts must be whole numbers from 0 to {MAX_COUNT:,} (UMIs), found "
            f"{value.item()!r} ({int(bad.sum())} such value(s)); is this a normalised or damaged "
            "matrix? Use Space Ranger's raw counts"
        )


def check_entries(
    values: np.ndarray, features: np.ndarray, n_features: int, *, source: Path | str
) -> None:
    """A block of a streamed matrix's entries, each ``(m,)``: feature indices (0-based) in
    range, counts whole numbers from 0 to MAX_COUNT (checked before they are summed)."""
    if features.size and (features.min() < 0 or features.max() >= n_features):
        raise CountsFormatError(f"{source}: a feature index is out of range")
    if values.size and not (
        np.all(np.isfinite(values))
        and values.min() >= 0
        and values.max() <= MAX_COUNT
        and np.all(values == np.round(values))
    ):
        raise CountsFormatError(
            f"{source}: counts must be whole numbers from 0 to {MAX_COUNT:,}; found other values"
        )


def _keep_gene_expression(adata: ad.AnnData, *, source: str) -> ad.AnnData:
    is_gene = (adata.var["feature_types"] == H.GENE_EXPRESSION).to_numpy()
    if is_gene.all():
        return adata
    dropped = sorted(set(adata.var.loc[~is_gene, "feature_types"]))
    if not is_gene.any():
        raise CountsFormatError(
            f"{source}: none of its {adata.n_vars} features is {H.GENE_EXPRESSION!r} (found "
            f"{', '.join(map(repr, dropped[:4]))}); expected a gene expression matrix"
        )
    log.info("dropping %d non-gene features (%s)", int((~is_gene).sum()), ", ".join(dropped))
    return adata[:, is_gene].copy()


def _listed(values: object) -> list[object]:
    """Labels as a list (an HDF5 array of bytes, a pandas column …); a 2-D array gives rows,
    which the label checks refuse as not text."""
    return list(np.atleast_1d(np.asarray(values, dtype=object)))


def _decoded(values: list[object]) -> np.ndarray:
    return np.array(
        [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values],
        dtype=object,
    )
