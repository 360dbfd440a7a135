"""Counts of the synthetic spots: per-cell-type profiles, spatial effects, negative binomial noise.

A spot's expected counts are the sum over the cells under it of each cell's UMIs spread over its
type's profile, plus a little ambient RNA. Two spatial effects then act on whole gene groups,
whatever cells the spot holds: interferon-response genes rise near tumour borders and hypoxia
genes rise with distance from the nearest vessel (see catalogue). Counts are Gamma–Poisson
(negative binomial) around that mean, with a per-gene dispersion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tmescope.datasets.catalogue import (
    CELL_TYPES,
    HOUSEKEEPING,
    HYPOXIA,
    HYPOXIA_FAR_FROM_VESSELS,
    IFN_NEAR_BORDER,
    IFN_RESPONSE,
    NAMED_GENES,
    TYPE_INDEX,
    TYPE_NAMES,
)

AMBIENT_UMI = 30.0  # ambient RNA every spot picks up, spread like the sample's average cell
SPOT_EFFICIENCY_SD = 0.2  # log-scale spread of capture efficiency between spots
BATCH_SD = 0.1  # log-scale gene-wise shift of one sample against the cohort

# Log-scale expression (a cell's own markers are about 3) of shared genes, beyond markers.
_SHARED: dict[str, dict[str, float]] = {
    "COL1A1": {"tumour": 1.5},  # osteosarcoma makes osteoid
    "COL1A2": {"tumour": 1.0},
    "CD74": {"macrophage": 3.5, "b_cell": 3.5, "endothelial": 1.0, "tumour": 0.5},
    "HLA-DRA": {"macrophage": 3.0, "b_cell": 3.0, "endothelial": 0.5},
    "HLA-DRB1": {"macrophage": 2.5, "b_cell": 2.5},
    "CXCL9": {"macrophage": 1.5, "tumour": 0.5, "endothelial": 0.3},
    "CXCL10": {"macrophage": 1.5, "tumour": 0.5, "endothelial": 0.3},
    "IDO1": {"macrophage": 1.0, "tumour": 0.3},
    "IFNG": {"t_cell": 1.2},
    "PDCD1": {"t_cell": 1.2},
    "VEGFA": {"tumour": 1.2},
    "PGK1": {"tumour": 1.2},
    "LDHA": {"tumour": 1.2},
    "SLC2A1": {"tumour": 1.0},
    "CA9": {"tumour": 0.3},
    "BNIP3": {"tumour": 0.3},
    "ADM": {"tumour": 0.3, "endothelial": 0.3},
}
_SHARED_BY_ALL = {
    "STAT1": 0.8,
    "GBP1": 0.8,
    "ISG15": 0.8,
    "IFI6": 0.8,
    "VEGFA": 0.3,
    "PGK1": 0.3,
    "LDHA": 0.3,
}


@dataclass(frozen=True, eq=False)
class GenePanel:
    """Genes of the cohort and what each cell type expresses."""

    ids: tuple[str, ...]  # Ensembl-like, never real (ENSG9…)
    names: tuple[str, ...]  # real symbols for named genes, SYN#### for background genes
    profiles: np.ndarray  # (n_types, n_genes): share of a cell's UMIs going to each gene
    dispersion: np.ndarray  # (n_genes,): negative binomial size; smaller is noisier


def build_gene_panel(n_genes: int, *, rng: np.random.Generator) -> GenePanel:
    """The named genes of the catalogue, then background genes up to ``n_genes``."""
    names = (*NAMED_GENES, *(f"SYN{i:04d}" for i in range(1, n_genes - len(NAMED_GENES) + 1)))
    column = {name: g for g, name in enumerate(names)}
    n_types = len(TYPE_NAMES)
    base = rng.normal(-0.5, 1.0, n_genes)
    log_expr = base[None, :] + rng.normal(0, 0.5, (n_types, n_genes))
    named = np.arange(len(NAMED_GENES))
    log_expr[:, named] = -1.5 + rng.normal(0, 0.3, (n_types, named.size))  # leaky, low
    for gene in HOUSEKEEPING:
        log_expr[:, column[gene]] = 3.0 + rng.normal(0, 0.4, n_types)
    for t, cell_type in enumerate(CELL_TYPES):
        for gene in cell_type.markers:
            log_expr[t, column[gene]] = 3.0 + rng.normal(0, 0.5)
    for gene, level in _SHARED_BY_ALL.items():
        log_expr[:, column[gene]] = np.maximum(log_expr[:, column[gene]], level)
    for gene, by_type in _SHARED.items():
        for type_name, level in by_type.items():
            log_expr[TYPE_INDEX[type_name], column[gene]] = level + rng.normal(0, 0.2)
    # Red cells carry almost nothing but haemoglobin; necrotic debris mostly degraded RNA.
    red = TYPE_INDEX["erythrocyte"]
    haemoglobin = [column[g] for g in CELL_TYPES[red].markers]
    log_expr[red] -= 4.0
    log_expr[red, haemoglobin] = 4.5
    dead = TYPE_INDEX["necrotic"]
    log_expr[dead, [column[g] for g in HOUSEKEEPING]] = 1.5
    profiles = np.exp(log_expr)
    profiles /= profiles.sum(axis=1, keepdims=True)
    ids = tuple(f"ENSG9{g + 1:010d}" for g in range(n_genes))
    dispersion = np.exp(rng.normal(np.log(4.0), 0.4, n_genes))
    return GenePanel(ids=ids, names=names, profiles=profiles, dispersion=dispersion)


def spatial_factors(
    names: tuple[str, ...], *, border_um: np.ndarray, vessel_um: np.ndarray
) -> np.ndarray:
    """``(n_spots, n_genes)`` multipliers of the spatial effects (1 for unaffected genes)."""
    factors = np.ones((border_um.size, len(names)))
    ifn, hyp = IFN_NEAR_BORDER, HYPOXIA_FAR_FROM_VESSELS
    near_border = 1 + ifn.amplitude * np.exp(-(border_um - ifn.onset_um).clip(0) / ifn.length_um)
    starving = 1 + hyp.amplitude * np.clip((vessel_um - hyp.onset_um) / hyp.length_um, 0, 1)
    for group, factor in ((IFN_RESPONSE, near_border), (HYPOXIA, starving)):
        columns = [g for g, name in enumerate(names) if name in group]
        factors[:, columns] = factor[:, None]
    return factors


def draw_counts(
    cell_counts: np.ndarray,
    *,
    border_um: np.ndarray,
    vessel_um: np.ndarray,
    panel: GenePanel,
    rng: np.random.Generator,
) -> sp.csr_matrix:
    """``(n_spots, n_genes)`` UMI counts of spots holding ``cell_counts`` ``(n_spots, n_types)``."""
    umi = np.array([t.umi for t in CELL_TYPES])
    mean = (cell_counts * umi) @ panel.profiles  # (n_spots, n_genes)
    total = mean.sum(axis=0)
    average_cell = total / total.sum() if total.sum() > 0 else panel.profiles.mean(axis=0)
    mean += AMBIENT_UMI * average_cell
    mean *= spatial_factors(panel.names, border_um=border_um, vessel_um=vessel_um)
    mean *= rng.lognormal(0, SPOT_EFFICIENCY_SD, (mean.shape[0], 1))
    mean *= rng.lognormal(0, BATCH_SD, (1, mean.shape[1]))
    size = panel.dispersion[None, :]
    counts = rng.poisson(rng.gamma(size, mean / size))
    return sp.csr_matrix(counts.astype(np.int32))
