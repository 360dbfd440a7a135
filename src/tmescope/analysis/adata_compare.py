"""The comparison between groups of tumours on any list of AnnData (the Python twin of
``tmescope compare``).

Each AnnData is one section: ``obsm["spatial"]`` its positions, abundances in an ``obsm``
DataFrame (one column per population; tmescope's maps call it ``populations``) or in ``obs``
columns — so it runs on our 16 µm maps, on a deconvolution of spots, and on Xenium or CosMx
cells with one-hot types (:func:`one_hot_types`). Its metadata (group, patient) comes from an
``obs`` column holding one value, or from ``uns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tmescope.analysis.adata_pairs import abundance_table, positions_of, um_per_px_of
from tmescope.analysis.group_compare import GroupComparison, compare_groups
from tmescope.analysis.interfaces import DEFAULT_RADIUS_UM
from tmescope.analysis.sample_summary import SampleSummary, summarise_sample
from tmescope.errors import InvalidParameterError

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd


def compare_adatas(
    adatas: Sequence[ad.AnnData],
    *,
    by: str,
    subject: str = "patient",
    key: str | Sequence[str] = "populations",
    radius_um: float = DEFAULT_RADIUS_UM,
    um_per_px: float | None = None,
    seed: int = 0,
) -> GroupComparison:
    """Compare the groups of ``by`` between sections, patients (``subject``) as the units.

    ``um_per_px`` is µm per unit of ``obsm["spatial"]`` (1 for positions in µm, as Xenium's);
    by default each AnnData's ``uns["subspot"]["um_per_px"]`` (tmescope's maps). A section's id
    is ``uns["sample_id"]``, or its one ``obs["sample_id"]``, else ``section_<i>``.
    """
    if not adatas:
        raise InvalidParameterError("compare_adatas needs a list of AnnData, one per section")
    summaries: list[SampleSummary] = []
    metadata: dict[str, dict[str, str]] = {}
    for index, adata in enumerate(adatas):
        sample_id = _sample_id(adata, index)
        if sample_id in metadata:
            raise InvalidParameterError(f"two sections are called {sample_id!r}; ids must differ")
        table = abundance_table(adata, key)
        scale = um_per_px_of(adata, um_per_px)
        summary = summarise_sample(
            sample_id, positions_of(adata) * scale, table.to_numpy(float),
            [str(c) for c in table.columns], radius_um=radius_um,
        )  # fmt: skip
        summaries.append(summary)
        metadata[sample_id] = _metadata(adata, (by, subject))
    return compare_groups(summaries, metadata, by=by, subject=subject, seed=seed)


def one_hot_types(types: Sequence[str] | pd.Series, *, index: Sequence[str] | None = None) -> pd.DataFrame:
    """Cells' types as a DataFrame of one-hot abundances (one column per type, sorted): what
    ``obsm["populations"]`` holds for cell-level data."""
    import pandas as pd

    values = pd.Series(np.asarray(types, dtype=object).astype(str))
    table = pd.get_dummies(values).astype(np.float32)
    table = table[sorted(table.columns)]
    if index is not None:
        table.index = pd.Index([str(i) for i in index])
    return table


def _sample_id(adata: ad.AnnData, index: int) -> str:
    if "sample_id" in adata.uns:
        return str(adata.uns["sample_id"])
    if "sample_id" in adata.obs.columns:
        ids = adata.obs["sample_id"].astype(str).unique()
        if len(ids) == 1:
            return str(ids[0])
    return f"section_{index}"


def _metadata(adata: ad.AnnData, columns: Sequence[str]) -> dict[str, str]:
    """The named columns of one section: an ``obs`` column with a single value, or ``uns``."""
    found: dict[str, str] = {}
    for name in columns:
        if name in adata.obs.columns:
            values = adata.obs[name].astype(str).unique()
            if len(values) != 1:
                raise InvalidParameterError(
                    f"obs[{name!r}] holds {len(values)} values in one section; a section has one "
                    f"{name} (put it in uns[{name!r}], or split the AnnData by section)"
                )
            found[name] = str(values[0])
        elif name in adata.uns:
            found[name] = str(adata.uns[name])
    return found
