"""A tumour's immune phenotype from where its T cells sit (Chen & Mellman 2017), on any map of
abundances: tmescope's 16 µm bins, a deconvolution of spots, or cells with one-hot types.

The rule, in three steps (thresholds are module constants, named in the output):

1. **Tumour nests** are the locations whose neighbourhood (within :data:`NEST_SMOOTH_UM`, itself
   included) is at least :data:`NEST_SHARE` tumour; the **margin** is the rest of the tissue
   within :data:`MARGIN_UM` of a nest: the stroma around the nests, where excluded T cells wait.
2. **Desert** when T cells are scarce where they would matter: their mean share over nests and
   margin together (``t_density``) is below :data:`DESERT_T`.
3. Otherwise the **infiltration** score, the mean T-cell share inside the nests over that in the
   margin, decides: **inflamed** at :data:`INFLAMED_INFILTRATION` or more (T cells enter the nests
   about as much as they crowd their edge), **excluded** below (they stop at the edge).

A sample with fewer than :data:`MIN_NEST` nest locations has no nests to speak of: its call is
``"no tumour"``. The thresholds were set on synthetic sections with planted phenotypes (see
docs/compare.md) and are not validated against pathologists' calls on real slides.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

NEST_SMOOTH_UM = 25.0
NEST_SHARE = 0.5
MARGIN_UM = 50.0
DESERT_T = 0.04
INFLAMED_INFILTRATION = 0.3
MIN_NEST = 10
PHENOTYPES = ("inflamed", "excluded", "desert")
NO_TUMOUR = "no tumour"


@dataclass(frozen=True)
class PhenotypeCall:
    """The call and the figures that decided it."""

    phenotype: str  # one of PHENOTYPES, or NO_TUMOUR
    infiltration: float  # t_nest / t_margin (NaN without a margin)
    t_nest: float  # mean T-cell share inside nests
    t_margin: float  # mean T-cell share in the margin
    t_density: float  # mean T-cell share over nests and margin
    n_nest: int
    n_margin: int
    decided_by: str  # the rule that decided, in words

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else
                    round(v, 6) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}  # fmt: skip


def call_immune_phenotype(
    coords_um: np.ndarray, t_cell: np.ndarray, tumour: np.ndarray
) -> PhenotypeCall:
    """The immune phenotype of one section from its T-cell and tumour shares at ``coords_um``
    (n locations, µm)."""
    xy = np.asarray(coords_um, dtype=np.float64)
    t = np.asarray(t_cell, dtype=np.float64)
    tum = np.asarray(tumour, dtype=np.float64)
    tree = cKDTree(xy)
    nest = _local_mean(tree, xy, tum, NEST_SMOOTH_UM) >= NEST_SHARE
    if nest.sum() < MIN_NEST:
        return PhenotypeCall(NO_TUMOUR, math.nan, math.nan, math.nan, float(t.mean()),
                             int(nest.sum()), 0,
                             f"fewer than {MIN_NEST} locations in tumour nests")  # fmt: skip
    distance, _ = cKDTree(xy[nest]).query(xy[~nest], distance_upper_bound=MARGIN_UM)
    margin = np.zeros(len(xy), bool)
    margin[np.flatnonzero(~nest)[np.isfinite(distance)]] = True
    t_nest = float(t[nest].mean())
    t_margin = float(t[margin].mean()) if margin.any() else math.nan
    t_density = float(t[nest | margin].mean())
    infiltration = t_nest / t_margin if margin.any() and t_margin > 0 else math.nan
    common = (infiltration, t_nest, t_margin, t_density, int(nest.sum()), int(margin.sum()))
    if t_density < DESERT_T:
        return PhenotypeCall("desert", *common, f"T-cell share {t_density:.3f} < {DESERT_T} "
                             "over nests and margin")  # fmt: skip
    if not np.isfinite(infiltration) or infiltration >= INFLAMED_INFILTRATION:
        return PhenotypeCall("inflamed", *common, f"infiltration {infiltration:.2f} >= "
                             f"{INFLAMED_INFILTRATION} (T in nests / T in margin)")  # fmt: skip
    return PhenotypeCall("excluded", *common, f"infiltration {infiltration:.2f} < "
                         f"{INFLAMED_INFILTRATION} (T in nests / T in margin)")  # fmt: skip


def _local_mean(tree: cKDTree, xy: np.ndarray, values: np.ndarray, radius: float) -> np.ndarray:
    """Mean of ``values`` over each location's neighbourhood within ``radius`` (itself in)."""
    import scipy.sparse as sp

    pairs = tree.query_pairs(radius, output_type="ndarray")
    n = len(xy)
    rows = np.r_[pairs[:, 0], pairs[:, 1], np.arange(n)]
    cols = np.r_[pairs[:, 1], pairs[:, 0], np.arange(n)]
    weights = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    return (weights @ values) / np.asarray(weights.sum(axis=1)).ravel()
