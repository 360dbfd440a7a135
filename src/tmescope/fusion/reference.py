"""Cell-type proportions of spots by non-negative least squares against a single-cell reference.

A spot's expression is modelled as a non-negative mix of per-type mean profiles. Both sides are
library-size normalised, never logged: mixtures add up in counts, not in logs. Because every
reference cell is scaled to the same total first, a proportion is the share of the spot's RNA
that comes from a type, not the share of its cells (a large, RNA-rich type weighs more):
:func:`cell_shares` converts with each type's mean counts per cell, as cell2location does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import nnls

from tmescope.errors import InputNotFoundError, InvalidParameterError, ReferenceDataError
from tmescope.fusion.targets import normalise_total

if TYPE_CHECKING:
    import anndata as ad

log = logging.getLogger(__name__)

_SHOWN = 5  # names an error message lists


@dataclass(frozen=True, eq=False)
class ReferenceProfiles:
    """Mean library-size-normalised expression (each cell scaled to 1e4) of each cell type.

    With ``markers``, a pseudo-reference of marker gene sets instead
    (:mod:`tmescope.fusion.marker_reference`): each population's profile is uniform over its
    markers, no cells stand behind it (``n_cells`` all 0) and there are no counts per cell.
    """

    cell_types: tuple[str, ...]
    genes: tuple[str, ...]
    profiles: np.ndarray  # (n_types, n_genes) float32
    n_cells: tuple[int, ...]  # cells behind each profile
    counts_per_cell: tuple[float, ...] | None = None  # mean raw library size of each type
    markers: bool = False  # profiles of marker gene sets, not of measured cells


def build_reference_profiles(
    adata: ad.AnnData, *, label_key: str, min_cells: int = 10, layer: str | None = None
) -> ReferenceProfiles:
    """Per-type mean profiles of an AnnData of raw counts (cells × genes).

    Counts come from ``.X``, or from ``.layers[layer]`` when the reference keeps its raw counts
    there. Cells with no label or no counts are left out; types with fewer than ``min_cells``
    cells are dropped with a warning, and at least two types must remain.
    """
    if isinstance(min_cells, bool) or not isinstance(min_cells, int) or min_cells < 1:
        raise InvalidParameterError(f"min_cells must be an integer >= 1, found {min_cells!r}")
    if label_key not in adata.obs.columns:
        keys = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise ReferenceDataError(
            f"the reference has no cell-type column {label_key!r} in .obs (it has: {keys}); "
            "pass the column that holds cell-type labels as label_key"
        )
    counts = _raw_counts(adata, layer)
    labels = pd.Series(adata.obs[label_key].to_numpy(), dtype=object)
    library = np.asarray(counts.sum(axis=1)).ravel()
    usable = labels.notna().to_numpy() & (library > 0)
    sizes = labels[usable].astype(str).value_counts()
    kept = sorted(t for t, n in sizes.items() if n >= min_cells)
    dropped = {t: int(n) for t, n in sizes.items() if n < min_cells}
    if dropped:
        log.warning("cell types with fewer than %d cells dropped: %s", min_cells, dropped)
    if len(kept) < 2:
        found = ", ".join(f"{t} {n}" for t, n in sizes.items()) or "no labelled cell with counts"
        raise ReferenceDataError(
            f"need at least 2 cell types with >= {min_cells} cells in {label_key!r}, "
            f"found {found}; lower min_cells or use a larger reference"
        )
    type_of = labels.astype(str).to_numpy()
    normalised = normalise_total(counts)  # (n_cells, n_genes), every cell summing to 1e4
    profiles = np.zeros((len(kept), counts.shape[1]), dtype=np.float64)
    n_cells, per_cell = [], []
    for t, cell_type in enumerate(kept):
        cells = np.flatnonzero(usable & (type_of == cell_type))
        profiles[t] = np.asarray(normalised[cells].sum(axis=0, dtype=np.float64)).ravel()
        profiles[t] /= cells.size
        n_cells.append(int(cells.size))
        per_cell.append(float(library[cells].mean()))
    genes = tuple(map(str, adata.var_names))
    return ReferenceProfiles(
        tuple(kept), genes, profiles.astype(np.float32), tuple(n_cells), tuple(per_cell)
    )


def cell_shares(rna_shares: np.ndarray, counts_per_cell: Sequence[float]) -> np.ndarray:
    """Shares of cells from shares of RNA: each type's share divided by its mean counts per
    cell, then rescaled to sum to one (rows of NaN stay NaN).

    A spot with RNA shares ``r`` holds cells in proportion ``r_t / m_t``, where ``m_t`` is the
    mean library size of a cell of type ``t``: an RNA-rich tumour cell contributes more RNA
    than a lymphocyte, so its RNA share overstates its share of cells.
    """
    per_cell = np.asarray(counts_per_cell, dtype=np.float64)
    rna = np.asarray(rna_shares, dtype=np.float64)
    if per_cell.shape != rna.shape[1:] or not (np.isfinite(per_cell).all() and per_cell.min() > 0):
        raise InvalidParameterError(
            f"counts_per_cell must be {rna.shape[1]} positive numbers, one per type, got "
            f"{per_cell.tolist()}"
        )
    cells = rna / per_cell
    total = cells.sum(axis=1, keepdims=True)
    return (cells / np.where(total > 0, total, np.nan)).astype(np.float32)


def load_reference(
    path: str | Path, *, label_key: str, min_cells: int = 10, layer: str | None = None
) -> ReferenceProfiles:
    """Profiles of a single-cell reference stored as ``.h5ad`` (see :func:`build_reference_profiles`)."""
    import anndata as ad

    file = Path(path)
    if not file.is_file():
        raise InputNotFoundError(f"single-cell reference {file} does not exist; check the path")
    try:
        adata = ad.read_h5ad(file)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ReferenceDataError(
            f"cannot read {file} as an AnnData .h5ad file ({type(err).__name__}: {err}); "
            "write the reference with adata.write_h5ad()"
        ) from err
    return build_reference_profiles(adata, label_key=label_key, min_cells=min_cells, layer=layer)


def deconvolve_nnls(
    spot_counts: np.ndarray | sp.spmatrix,
    spot_genes: Sequence[str],
    reference: ReferenceProfiles,
    *,
    min_shared_genes: int = 50,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(n_spots, n_types)`` float32 proportions summing to 1, and the cell-type names.

    Raw spot counts and reference profiles are both restricted to their shared genes (matched
    case-insensitively) and scaled to sum 1 there. A spot with no counts on those genes, or whose
    best fit is all zeros, gets a row of NaN: it holds no information about its mix.
    """
    raw, ref_cols = _on_shared_genes(spot_counts, spot_genes, reference, min_shared_genes)
    spots = normalise_total(raw, target_sum=1.0).astype(np.float64)
    basis = reference.profiles[:, ref_cols].astype(np.float64).T  # (n_shared, n_types)
    basis /= np.maximum(basis.sum(axis=0, keepdims=True), 1e-300)
    # ||A x - b||² = ||R x - Qᵀ b||² + const for A = QR: solve each spot in n_types dimensions.
    q, r = np.linalg.qr(basis)
    projected = spots @ q  # (n_spots, n_types)
    weights = np.full((spots.shape[0], basis.shape[1]), np.nan)
    for i in np.flatnonzero(spots.sum(axis=1) > 0):
        solution, _ = nnls(r, projected[i])
        if solution.sum() > 0:
            weights[i] = solution / solution.sum()
    n_missing = int(np.isnan(weights[:, 0]).sum())
    if n_missing:
        log.info("%d of %d spots have no counts on the shared genes: NaN", n_missing, len(spots))
    return weights.astype(np.float32), reference.cell_types


def deconvolve_poisson(
    spot_counts: np.ndarray | sp.spmatrix,
    spot_genes: Sequence[str],
    reference: ReferenceProfiles,
    *,
    min_shared_genes: int = 50,
    gene_sensitivity: bool = True,
    iterations: int = 300,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(n_spots, n_types)`` float32 shares of RNA by Poisson maximum likelihood, and the names.

    Each spot's raw counts on the shared genes are modelled as Poisson with mean
    ``Σ_t w_t p_t`` (``p_t`` the type's profile, summing to one): ``w_t`` is the spot's counts
    that come from type ``t``. The multiplicative EM updates (Lee & Seung's, for a fixed basis)
    keep ``w`` non-negative and raise the likelihood at every step. Unlike least squares on
    normalised counts, every count weighs by its own noise, so the many low-count genes that
    mark small populations count; on the synthetic cohort it halves NNLS's error per spot.

    With ``gene_sensitivity``, each gene also gets a factor ``s_g`` shared by every spot of the
    sample (``p_tg`` becomes ``s_g p_tg``, renormalised), estimated with ``w`` by alternating
    updates: a reference measured on another platform or batch captures genes with different
    efficiency, and without the factor that difference is explained by whichever type expresses
    the gene (cell2location's per-gene technical effect does the same). It uses the sample's own
    counts only. Spots with no counts on the shared genes get a row of NaN.
    """
    counts, ref_cols = _on_shared_genes(spot_counts, spot_genes, reference, min_shared_genes)
    profiles = reference.profiles[:, ref_cols].astype(np.float64)  # (n_types, n_shared)
    library = counts.sum(axis=1, keepdims=True)
    weights = np.repeat(library / profiles.shape[0], profiles.shape[0], axis=1)
    sensitivity = np.ones(profiles.shape[1])
    rounds = SENSITIVITY_ROUNDS if gene_sensitivity else 0
    gene_totals = counts.sum(axis=0)
    for _ in range(rounds):
        basis = _normalised(profiles * sensitivity)
        weights = _poisson_em(counts, basis, weights, SENSITIVITY_STEPS)
        # Multiplicative update of s_g towards the ratio of observed to fitted totals; the +1
        # keeps genes without counts from running to zero.
        sensitivity *= (gene_totals + 1.0) / ((weights @ basis).sum(axis=0) + 1.0)
    weights = _poisson_em(counts, _normalised(profiles * sensitivity), weights, iterations)
    total = weights.sum(axis=1, keepdims=True)
    shares = np.where(total > 0, weights / np.where(total > 0, total, 1.0), np.nan)
    return shares.astype(np.float32), reference.cell_types


SENSITIVITY_ROUNDS = 6  # alternations between the spots' weights and the genes' sensitivities
SENSITIVITY_STEPS = 50  # EM steps on the weights per alternation (warm-started)


def _poisson_em(
    counts: np.ndarray, basis: np.ndarray, weights: np.ndarray, steps: int
) -> np.ndarray:
    for _ in range(steps):
        weights = weights * ((counts / np.maximum(weights @ basis, 1e-300)) @ basis.T)
    return weights


def _normalised(profiles: np.ndarray) -> np.ndarray:
    return profiles / np.maximum(profiles.sum(axis=1, keepdims=True), 1e-300)


def _on_shared_genes(
    spot_counts: np.ndarray | sp.spmatrix,
    spot_genes: Sequence[str],
    reference: ReferenceProfiles,
    min_shared_genes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense float64 spot counts on the genes shared with the reference, and the reference's
    columns of those genes; a :class:`ReferenceDataError` when too few are shared."""
    if spot_counts.ndim != 2 or spot_counts.shape[1] != len(spot_genes):
        raise InvalidParameterError(
            f"spot_counts must be (n_spots, {len(spot_genes)}) to match spot_genes, "
            f"found shape {spot_counts.shape}"
        )
    spot_cols, ref_cols = _shared_columns(spot_genes, reference.genes)
    if len(spot_cols) < min_shared_genes:
        raise ReferenceDataError(
            f"spots and reference share {len(spot_cols)} genes, fewer than "
            f"min_shared_genes={min_shared_genes}; spot genes look like "
            f"{_preview(spot_genes)} and reference genes like {_preview(reference.genes)}: "
            "name both by symbol (or both by Ensembl id)"
        )
    if sp.issparse(spot_counts):
        counts = sp.csr_matrix(spot_counts)[:, spot_cols].toarray()
    else:
        counts = np.asarray(spot_counts)[:, spot_cols]
    return counts.astype(np.float64), np.asarray(ref_cols)


def _raw_counts(adata: ad.AnnData, layer: str | None) -> sp.csr_matrix:
    """``(n_cells, n_genes)`` CSR float32 raw counts, checked to be counts."""
    if layer is not None and layer not in adata.layers:
        layers = ", ".join(adata.layers.keys()) or "none"
        raise ReferenceDataError(
            f"the reference has no layer {layer!r} (it has: {layers}); pass one that holds raw counts"
        )
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ReferenceDataError("the reference has no .X matrix; pass layer= with raw counts")
    counts = sp.csr_matrix(matrix, dtype=np.float32)
    values = counts.data
    bad = values[(values < 0) | ~np.isfinite(values) | (np.abs(values - np.round(values)) > 1e-3)]
    if bad.size:
        where = f"layer {layer!r}" if layer else ".X"
        raise ReferenceDataError(
            f"the reference's {where} must hold raw counts (non-negative integers), found "
            f"{bad.size} values such as {', '.join(f'{v:g}' for v in bad[:3])}; pass layer= "
            "naming the raw-count layer (often 'counts')"
        )
    return counts


def _shared_columns(
    spot_genes: Sequence[str], reference_genes: Sequence[str]
) -> tuple[list[int], list[int]]:
    """Columns of the genes both sides hold (case-insensitive), in the spots' order."""
    reference_col: dict[str, int] = {}
    for c, gene in enumerate(reference_genes):
        reference_col.setdefault(gene.upper(), c)
    spot_cols: list[int] = []
    ref_cols: list[int] = []
    seen: set[str] = set()
    for c, gene in enumerate(spot_genes):
        key = gene.upper()
        if key in reference_col and key not in seen:
            seen.add(key)
            spot_cols.append(c)
            ref_cols.append(reference_col[key])
    return spot_cols, ref_cols


def _preview(genes: Sequence[str]) -> str:
    shown = ", ".join(list(genes)[:_SHOWN])
    return f"{shown}, …" if len(genes) > _SHOWN else shown or "(none)"
