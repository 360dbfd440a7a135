"""The interface statistics' twin on any AnnData: positions in obsm["spatial"], abundances in an
obsm DataFrame or obs columns (e.g. a user's own deconvolution of measured spots)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tmescope.analysis.adata_pairs import adata_interface_maps, adata_pair_statistics
from tmescope.errors import InvalidParameterError


def _spots(um_per_px: float | None = 0.5) -> ad.AnnData:
    """Spots 32 px (16 µm) apart: tumour on the left, T cells on the right, a mixed border."""
    gx, gy = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
    xy = np.c_[gx.ravel(), gy.ravel()].astype(float) * 32
    tumour = np.clip((12 - gx.ravel()) / 4 + 0.5, 0, 1)
    adata = ad.AnnData(np.zeros((len(xy), 1), np.float32))
    adata.obsm["spatial"] = xy
    adata.obsm["populations"] = pd.DataFrame(
        {"tumour": tumour, "t_cell": 1 - tumour}, index=adata.obs_names
    )
    adata.obs["tumour"] = tumour
    adata.obs["t_cell"] = 1 - tumour
    if um_per_px is not None:
        adata.uns["subspot"] = {"um_per_px": um_per_px}
    return adata


def test_statistics_read_obsm_or_obs_columns_alike() -> None:
    adata = _spots()
    from_obsm = adata_pair_statistics(adata, n_shifts=19)
    from_obs = adata_pair_statistics(adata, key=["tumour", "t_cell"], n_shifts=19)
    np.testing.assert_allclose(from_obsm.ratio, from_obs.ratio)
    assert from_obsm.names == ("tumour", "t_cell")
    assert from_obsm.radius == pytest.approx(60.0)  # 30 µm at 0.5 µm/px


def test_interface_map_peaks_at_the_border() -> None:
    adata = _spots()
    scores = adata_interface_maps(adata, [("tumour", "t_cell")])["tumour|t_cell"]
    column = adata.obsm["spatial"][:, 0] / 32
    assert scores[np.abs(column - 12) <= 1].mean() > 3 * scores[np.abs(column - 12) > 6].mean()


def test_a_user_anndata_says_its_scale_or_is_told_how() -> None:
    bare = _spots(None)
    with pytest.raises(InvalidParameterError, match="um_per_px="):
        adata_pair_statistics(bare)
    stats = adata_pair_statistics(bare, um_per_px=0.5, n_shifts=19)
    assert np.isfinite(stats.ratio[0, 1])


@pytest.mark.parametrize(
    ("change", "match"),
    [(lambda a: a.obsm.pop("spatial"), "obsm\\['spatial'\\]"),
     (lambda a: a.obsm.pop("populations"), "no obsm\\['populations'\\]"),
     (lambda a: a.obsm.__setitem__("populations", np.ones((a.n_obs, 2))), "DataFrame")],
)  # fmt: skip
def test_missing_parts_are_named(change: object, match: str) -> None:
    adata = _spots()
    change(adata)  # type: ignore[operator]
    with pytest.raises(InvalidParameterError, match=match):
        adata_pair_statistics(adata, n_shifts=19)


def test_an_unknown_population_in_a_pair_is_named() -> None:
    with pytest.raises(InvalidParameterError, match="unknown population 'b_cell'"):
        adata_interface_maps(_spots(), [("tumour", "b_cell")])
