"""``tmescope evaluate``: a sample's sub-spot maps scored against the cells of the same section.

The section's cells (a Xenium or CosMx cell table, Visium HD 2 µm bins with types, or a
synthetic section's ``cells.h5ad``) are the truth; the maps are scored exactly as
``benchmarks/highres.py`` scores them (:mod:`tmescope.analysis.map_scores`), beside the oracle
spot map (the cells' true composition in each measured spot's disc, painted on its bins) and
the two measured-spot baselines (each spot's measured composition painted on the nearest bins,
and its Gaussian interpolation, σ 50 µm). Twin of the command: :func:`evaluate_sample`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tmescope.analysis.map_scores import (
    bin_truth,
    disc_truth,
    gaussian_interpolated,
    map_scores,
    nearest_painted,
    pair_ratios,
    per_population_pearson,
)
from tmescope.errors import InvalidParameterError
from tmescope.io.cell_table import CellTable, read_cell_table

INTERPOLATION_SIGMA_UM = 50.0
MIN_OVERLAP = 0.5  # share of the cells that must fall on the sample's bins


@dataclass(frozen=True)
class EvaluateSettings:
    """What to score: bins of ``resolution_um``, pairs at ``radius_um``."""

    resolution_um: float = 16.0
    radius_um: float = 30.0

    def __post_init__(self) -> None:
        if not (self.resolution_um > 0 and self.radius_um > 0):
            raise InvalidParameterError(
                f"--resolution and --radius must be positive µm, got {self.resolution_um} and "
                f"{self.radius_um}"
            )


def evaluate_sample(
    store: Path | str,
    model_dir: Path | str,
    *,
    sample: str,
    cells: Path | str | CellTable,
    settings: EvaluateSettings | None = None,
    cell_type_key: str = "cell_type",
    cells_table: str | None = None,
) -> dict[str, Any]:
    """Score ``sample``'s maps against ``cells`` (see the module docstring); a JSON-ready dict.
    ``cells_table``: the table of cells of a SpatialData ``cells`` holding several."""
    from tmescope.jobs.predict_bins import subspot_anndata
    from tmescope.jobs.subspot_maps import load_predictor

    settings = settings or EvaluateSettings()
    predictor = load_predictor(model_dir)
    table = (
        cells
        if isinstance(cells, CellTable)
        else read_cell_table(cells, key=cell_type_key, table=cells_table)
    )
    maps = subspot_anndata(
        store, model_dir, sample=sample, resolution_um=settings.resolution_um, expression=False
    )
    mpp = float(maps.uns["subspot"]["um_per_px"])
    bin_px = float(maps.uns["subspot"]["bin_um"]) / mpp
    xy = np.asarray(maps.obsm["spatial"], dtype=float)
    populations = maps.obsm["populations"]
    frame, type_source = _typed_cells(table, predictor.subspot.reference)
    _check_overlap(frame, xy, bin_px, sample=sample, source=table.source)
    types = [p for p in populations.columns if p in set(frame["cell_type"].astype(str))]
    if len(types) < 2:
        raise InvalidParameterError(
            f"the cells' types {sorted(set(frame['cell_type'].astype(str)))[:8]} share fewer "
            f"than 2 names with the model's populations {list(populations.columns)}; name the "
            "cell types as the reference does, or leave cell_type out to transfer them"
        )
    truth = bin_truth(xy, frame, types, bin_px)
    keep = np.isfinite(truth).all(axis=1)
    spots = _measured_spots(store, sample)
    spot_xy = spots[["x", "y"]].to_numpy(float)
    radius_px = float(spots.attrs["diameter_um"]) / 2 / mpp
    oracle, _ = disc_truth(spot_xy, frame, types, radius_px)
    measured = _measured_composition(maps, spots, types)
    estimates = {
        "model": populations[types].to_numpy(float),
        "image_only": maps.obsm["populations_image"][types].to_numpy(float),
        "oracle_spot": np.nan_to_num(nearest_painted(xy, spot_xy, oracle)),
        "measured_painted": np.nan_to_num(nearest_painted(xy, spot_xy, measured)),
        "measured_interpolated": gaussian_interpolated(
            xy, spot_xy, measured, INTERPOLATION_SIGMA_UM / mpp
        ),
    }
    pair_px = settings.radius_um / mpp
    true_pairs = pair_ratios(xy[keep], truth[keep], pair_px)
    scores = {
        name: map_scores(xy[keep], est[keep], truth[keep], true_pairs, pair_px)
        for name, est in estimates.items()
    }
    per_type = per_population_pearson(estimates["model"][keep], truth[keep])
    per_type_oracle = per_population_pearson(estimates["oracle_spot"][keep], truth[keep])
    return {
        "sample": sample,
        "cells": {
            "source": str(table.source),
            "n": len(frame),
            "in_bins": int(np.isfinite(truth).all(axis=1).sum()),
            "cell_type_from": type_source,
        },
        "bins": int(keep.sum()),
        "bin_um": round(bin_px * mpp, 2),
        "radius_um": settings.radius_um,
        "types": types,
        "maps": {name: s["pearson"] for name, s in scores.items()}
        | {
            "gain": round(scores["model"]["pearson"] - scores["oracle_spot"]["pearson"], 4),
            "per_type_model": {types[k]: round(v, 3) for k, v in per_type.items()},
            "per_type_oracle_spot": {types[k]: round(v, 3) for k, v in per_type_oracle.items()},
        },
        "pairs": {"n": len(true_pairs)}
        | {f"log_ratio_error_{name}": s["pair_log_error"] for name, s in scores.items()},
    }


def _typed_cells(table: CellTable, reference: Any) -> tuple[pd.DataFrame, str]:
    """The cells with a type each, and where the types came from."""
    if table.has_types:
        return table.frame, "the table's cell_type"
    from tmescope.fusion.type_transfer import transfer_cell_types

    assert table.counts is not None  # read_cell_table refuses a table with neither
    labels = transfer_cell_types(table.counts, table.genes, reference)
    frame = table.frame.assign(cell_type=labels)
    return frame[labels != ""].reset_index(drop=True), (
        "transferred from the model's reference (most likely profile of each cell's counts)"
    )


def _measured_spots(store_path: Path | str, sample: str) -> pd.DataFrame:
    """The sample's measured spots (barcode, x, y) and their diameter (``attrs``)."""
    from tmescope.store import CohortStore, RowKind

    store = CohortStore.open(store_path, mode="r")
    kind = store.read_kind(sample)
    spot = kind == RowKind.SPOT
    coords = np.asarray(store.read_coords(sample), dtype=float)[spot]
    frame = pd.DataFrame(
        {"barcode": store.read_barcodes(sample)[spot], "x": coords[:, 0], "y": coords[:, 1]}
    )
    # By barcode, as Space Ranger lists them: a bin equidistant from two spots takes the first
    # (the benchmark's and the acceptance scorer's tie-break, from ground_truth.csv).
    frame = frame.sort_values("barcode", ignore_index=True)
    extra = store.sample_record(sample).meta.extra
    frame.attrs["diameter_um"] = float(extra.get("spot_diameter_um") or 55.0)
    if frame.empty:
        raise InvalidParameterError(
            f"{sample} has no measured spots (an H&E-only slide?): evaluate scores maps against "
            "an oracle of measured spots; embed the section with its counts"
        )
    return frame


def _measured_composition(maps: Any, spots: pd.DataFrame, types: list[str]) -> np.ndarray:
    """The measured composition of each spot: the mean of the reconciled bins of its disc
    (which equals it, by the reconciliation); NaN for spots with no bin in their disc."""
    frame = maps.obsm["populations"][types].copy()
    frame["spot"] = maps.obs["spot"].to_numpy()
    means = frame[frame["spot"] != ""].groupby("spot")[types].mean()
    return means.reindex(spots["barcode"]).to_numpy(float)


def _check_overlap(
    cells: pd.DataFrame, xy: np.ndarray, bin_px: float, *, sample: str, source: Path
) -> None:
    """Refuse cells that mostly miss the sample's bins (another section, or another frame)."""
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(xy).query(cells[["x", "y"]].to_numpy(float), p=np.inf)
    share = float((distance <= bin_px / 2).mean()) if len(cells) else 0.0
    if share < MIN_OVERLAP:
        low, high = cells[["x", "y"]].min().to_numpy(), cells[["x", "y"]].max().to_numpy()
        raise InvalidParameterError(
            f"only {share:.0%} of the cells of {source.name} lie on {sample}'s bins (cells span "
            f"x {low[0]:.0f}–{high[0]:.0f}, y {low[1]:.0f}–{high[1]:.0f} px; bins "
            f"x {xy[:, 0].min():.0f}–{xy[:, 0].max():.0f}, y {xy[:, 1].min():.0f}–"
            f"{xy[:, 1].max():.0f}); expected the cells of the same section in its H&E's "
            "full-resolution pixels"
        )
