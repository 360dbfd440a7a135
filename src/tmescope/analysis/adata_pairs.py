"""Interface statistics of any AnnData with positions and abundances (the Python twin of
``tmescope interactions --resolution``).

It takes tmescope's sub-spot predictions, but equally a user's own deconvolution of measured
spots (cell2location, RCTD, …) or cell-level calls: ``obsm["spatial"]`` holds the positions,
and the abundances are an ``obsm`` DataFrame (one column per population) or ``obs`` columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tmescope.analysis.interfaces import (
    DEFAULT_RADIUS_UM,
    PairStatistics,
    ShiftNull,
    interface_map,
    pair_statistics,
    pairs_of,
)
from tmescope.errors import InvalidParameterError

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd


def abundance_table(adata: ad.AnnData, key: str | Sequence[str] = "populations") -> pd.DataFrame:
    """The abundances: ``obsm[key]`` as a DataFrame, or the ``obs`` columns named in ``key``."""
    import pandas as pd

    if isinstance(key, str):
        if key not in adata.obsm:
            raise InvalidParameterError(
                f"no obsm[{key!r}] in the AnnData (it has {sorted(adata.obsm) or 'none'}); pass "
                "key= the obsm entry holding one column per population, or a list of obs columns"
            )
        table = adata.obsm[key]
        if not isinstance(table, pd.DataFrame):
            raise InvalidParameterError(
                f"obsm[{key!r}] is a plain array without population names; store it as a "
                "DataFrame with one named column per population"
            )
        return table
    missing = [c for c in key if c not in adata.obs.columns]
    if missing:
        raise InvalidParameterError(f"no obs column(s) {missing}; the obs columns are "
                                    f"{list(adata.obs.columns)}")  # fmt: skip
    return adata.obs[list(key)].astype(float)


def um_per_px_of(adata: ad.AnnData, um_per_px: float | None = None) -> float:
    """µm per unit of ``obsm["spatial"]``: given, or as tmescope's predictions record it."""
    if um_per_px is not None:
        if not um_per_px > 0:
            raise InvalidParameterError(f"um_per_px must be > 0; found {um_per_px}")
        return float(um_per_px)
    recorded = adata.uns.get("subspot", {}).get("um_per_px")
    if recorded is None:
        raise InvalidParameterError(
            "the AnnData does not say how many µm one unit of obsm['spatial'] is; pass "
            "um_per_px= (Visium full-resolution px: 100 µm spot pitch / the pitch in px)"
        )
    return float(recorded)


def adata_pair_statistics(
    adata: ad.AnnData,
    *,
    key: str | Sequence[str] = "populations",
    radius_um: float = DEFAULT_RADIUS_UM,
    um_per_px: float | None = None,
    n_shifts: int = 199,
    seed: int = 0,
    null: ShiftNull | None = None,
) -> PairStatistics:
    """Co-location ratio, toroidal-shift z and p of every pair of populations in ``adata``.

    ``null`` defaults to the closed shift when the abundances are shares (each observation's
    sum to one) and the plain shift otherwise (counts, abundances); see
    :mod:`tmescope.analysis.interfaces`."""
    table = abundance_table(adata, key)
    scale = um_per_px_of(adata, um_per_px)
    return pair_statistics(
        positions_of(adata), table.to_numpy(float), [str(c) for c in table.columns],
        radius=radius_um / scale, n_shifts=n_shifts, seed=seed, null=null,
    )  # fmt: skip


def adata_interface_maps(
    adata: ad.AnnData,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    key: str | Sequence[str] = "populations",
    radius_um: float = DEFAULT_RADIUS_UM,
    um_per_px: float | None = None,
) -> dict[str, np.ndarray]:
    """The interface score of each pair at every observation, keyed ``"A|B"``."""
    table = abundance_table(adata, key)
    names = [str(c) for c in table.columns]
    radius = radius_um / um_per_px_of(adata, um_per_px)
    values = table.to_numpy(float)
    xy = positions_of(adata)
    return {
        f"{names[a]}|{names[b]}": interface_map(xy, values, (a, b), radius)
        for a, b in pairs_of(names, pairs)
    }


def positions_of(adata: Any) -> np.ndarray:
    if "spatial" not in adata.obsm:
        raise InvalidParameterError(
            "no obsm['spatial'] in the AnnData: interface statistics need each observation's "
            "position (x, y)"
        )
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] < 2 or not np.isfinite(xy[:, :2]).all():
        raise InvalidParameterError(
            f"obsm['spatial'] must be finite (n, 2) positions; found shape {xy.shape}"
        )
    return xy[:, :2]
