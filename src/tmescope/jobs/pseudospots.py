"""``tmescope pseudospots``: a Visium-like sample made from a section whose cells are measured.

The field validates sub-spot maps this way (iStar, Thor): take a section measured at cell level
(Xenium or CosMx with a post-stained H&E, or Visium HD's 2 µm bins), sum its cells into 55 µm
spots on Visium's 100 µm hexagonal lattice, map from those spots and the H&E, and score the
maps against the cells (``tmescope evaluate``). A spot sums the counts of the cells whose
position lies in its disc; spots without a cell are left out (glass). The lattice starts at the
cells' top-left corner unless ``origin`` or ``positions`` (a CSV of ``x``, ``y`` and optionally
``barcode``, full-resolution pixels: the spots of a real Visium run) place it.

The output is an AnnData as scanpy and HEST lay a Visium sample out (``obsm["spatial"]`` in the
image's full-resolution pixels, ``uns["spatial"][sample]["scalefactors"]``), which ``tmescope
embed OUT.h5ad --image IMG`` reads; ``obsm["cell_composition"]`` keeps each spot's true share
of every cell type (when the cells have types) and ``obs["n_cells"]`` its number of cells.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmescope.errors import InvalidParameterError
from tmescope.io._keys import VISIUM_SPOT_DIAMETER_UM, VISIUM_SPOT_PITCH_UM
from tmescope.io.cell_table import CellTable, read_cell_table


@dataclass(frozen=True)
class PseudospotSettings:
    """The lattice: spot ``diameter_um`` every ``pitch_um`` (Visium: 55 and 100)."""

    diameter_um: float = VISIUM_SPOT_DIAMETER_UM
    pitch_um: float = VISIUM_SPOT_PITCH_UM
    origin: tuple[float, float] | None = None  # full-res px of the first spot
    min_cells: int = 1

    def __post_init__(self) -> None:
        if not (0 < self.diameter_um <= self.pitch_um):
            raise InvalidParameterError(
                f"--diameter must be positive and at most the --pitch, got {self.diameter_um} "
                f"and {self.pitch_um} µm"
            )
        if self.min_cells < 1:
            raise InvalidParameterError(f"--min-cells must be at least 1, got {self.min_cells}")


def hex_lattice(
    low: np.ndarray, high: np.ndarray, *, pitch_px: float, origin: np.ndarray | None = None
) -> pd.DataFrame:
    """Visium's lattice over the box ``low``–``high`` (px): ``array_col`` steps by 2 within a row
    (half a pitch per step), odd rows offset by one; ``barcode`` names each spot by its indices."""
    start = low if origin is None else origin
    row_px = pitch_px * math.sqrt(3) / 2
    first_row = math.floor((low[1] - start[1]) / row_px)
    rows = np.arange(first_row, math.ceil((high[1] - start[1]) / row_px) + 1)
    half = pitch_px / 2
    first_col = math.floor((low[0] - start[0]) / half) - 1
    cols = np.arange(first_col, math.ceil((high[0] - start[0]) / half) + 2)
    r, c = np.meshgrid(rows, cols, indexing="ij")
    keep = (r - c) % 2 == 0  # array_col has the parity of array_row, as on Visium slides
    r, c = r[keep], c[keep]
    return pd.DataFrame(
        {
            "barcode": [f"ps_r{a}_c{b}" for a, b in zip(r, c, strict=True)],
            "array_row": r, "array_col": c,
            "x": start[0] + c * half, "y": start[1] + r * row_px,
        }
    )  # fmt: skip


def make_pseudospots(
    cells: CellTable,
    *,
    mpp: float,
    settings: PseudospotSettings | None = None,
    positions: pd.DataFrame | None = None,
    sample_id: str = "pseudospots",
    image: Path | None = None,
) -> Any:
    """The pseudo-spot AnnData of ``cells`` (see the module docstring)."""
    import anndata as ad

    settings = settings or PseudospotSettings()
    if cells.counts is None:
        raise InvalidParameterError(
            f"{cells.source.name} has no counts per cell; pseudo-spots sum the cells' counts: "
            "give an .h5ad with cells × genes counts in X (or layers['counts'])"
        )
    xy = cells.frame[["x", "y"]].to_numpy(float)
    if positions is None:
        origin = None if settings.origin is None else np.asarray(settings.origin, float)
        spots = hex_lattice(
            xy.min(axis=0), xy.max(axis=0), pitch_px=settings.pitch_um / mpp, origin=origin
        )
    else:
        spots = _given_positions(positions)
    radius_px = settings.diameter_um / 2 / mpp
    members = _disc_members(spots[["x", "y"]].to_numpy(float), xy, radius_px)
    n_cells = np.asarray(members.sum(axis=1)).ravel()
    keep = n_cells >= settings.min_cells
    if not keep.any():
        raise InvalidParameterError(
            f"no spot of the lattice holds {settings.min_cells} cell(s) of {cells.source.name}; "
            "check --mpp (µm per pixel of the cells' positions) and --positions"
        )
    members, spots = members[keep], spots[keep].reset_index(drop=True)
    counts = sp.csr_matrix(members @ cells.counts, dtype=np.float32)
    obs = spots.set_index("barcode")[["array_row", "array_col"]].assign(
        in_tissue=1, n_cells=n_cells[keep]
    )
    obs.index.name = None
    table = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=pd.Index(list(cells.genes))))
    table.obsm["spatial"] = spots[["x", "y"]].to_numpy(np.float64)
    if cells.has_types:
        types = pd.Categorical(cells.frame["cell_type"].astype(str))
        one_hot = sp.csr_matrix(
            (np.ones(len(types)), (np.arange(len(types)), types.codes)),
            shape=(len(types), len(types.categories)),
        )
        shares = (members @ one_hot).toarray() / np.maximum(n_cells[keep], 1)[:, None]
        table.obsm["cell_composition"] = pd.DataFrame(
            shares, index=table.obs_names, columns=list(types.categories.astype(str))
        )
    table.uns["spatial"] = {
        sample_id: {
            "scalefactors": {"spot_diameter_fullres": settings.diameter_um / mpp},
            "metadata": {"source_image_path": str(image) if image else ""},
        }
    }
    table.uns["pseudospots"] = {
        "cells": str(cells.source), "mpp": float(mpp), "diameter_um": settings.diameter_um,
        "pitch_um": settings.pitch_um, "n_cells": len(cells),
        "n_cells_in_spots": int(n_cells[keep].sum()), "sample_id": sample_id,
    }  # fmt: skip
    return table


def write_pseudospots(table: Any, out: Path) -> Path:
    """Write the AnnData to ``out`` atomically (a half-written file never carries its name)."""
    out = Path(out)
    if out.suffix != ".h5ad":
        raise InvalidParameterError(f"--out must name an .h5ad file, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        table.write_h5ad(partial)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def pseudospots_from_file(
    cells: Path,
    *,
    out: Path,
    mpp: float | None,
    image: Path | None,
    settings: PseudospotSettings | None = None,
    positions: Path | None = None,
    sample_id: str | None = None,
    table_name: str | None = None,
) -> dict[str, Any]:
    """Twin of ``tmescope pseudospots``: read, aggregate, check against the image, write.
    Without ``mpp``, the image's metadata say the µm per pixel of the positions;
    ``table_name``: the table of cells of a SpatialData holding several."""
    mpp = mpp if mpp is not None else _image_mpp(image)
    table = read_cell_table(cells, table=table_name)
    spots_at = None if positions is None else _read_positions(positions)
    sample_id = sample_id or out.name.removesuffix(".h5ad")
    result = make_pseudospots(
        table, mpp=mpp, settings=settings, positions=spots_at, sample_id=sample_id, image=image
    )
    if image is not None:
        from tmescope.io.slide_backends import open_slide
        from tmescope.io.table_sample import check_positions_on_image

        with open_slide(image) as slide:
            check_positions_on_image(
                np.asarray(result.obsm["spatial"]), slide, what=f"the pseudo-spots of {cells.name}"
            )
    write_pseudospots(result, out)
    return {
        "out": str(out), "spots": int(result.n_obs), "genes": int(result.n_vars),
        **{k: v for k, v in result.uns["pseudospots"].items() if k != "cells"},
    }  # fmt: skip


def _image_mpp(image: Path | None) -> float:
    from tmescope.io.slide_sample import check_mpp

    if image is None:
        raise InvalidParameterError(
            "pseudospots needs the µm per pixel of the cells' positions: pass --mpp, or --image "
            "whose metadata says it"
        )
    from tmescope.io.slide_backends import open_slide

    with open_slide(image) as slide:
        if slide.mpp is None:
            raise InvalidParameterError(
                f"{image.name} does not say its µm per pixel; pass --mpp (0.5 at 20×)"
            )
        check_mpp(slide.mpp)
        return float(slide.mpp)


def _read_positions(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InvalidParameterError(f"could not read --positions {path}: {exc}") from exc


def _given_positions(frame: pd.DataFrame) -> pd.DataFrame:
    if not {"x", "y"} <= set(frame.columns):
        raise InvalidParameterError(
            f"--positions needs columns x and y (full-resolution pixels), found "
            f"{list(frame.columns)[:8]}"
        )
    out = pd.DataFrame({"x": frame["x"].to_numpy(float), "y": frame["y"].to_numpy(float)})
    n = len(out)
    out.insert(0, "barcode", frame["barcode"].astype(str).to_numpy() if "barcode" in frame
               else [f"ps_{i}" for i in range(n)])  # fmt: skip
    for column in ("array_row", "array_col"):
        out[column] = frame[column].to_numpy() if column in frame else np.zeros(n, np.int64)
    return out


def _disc_members(centres: np.ndarray, xy: np.ndarray, radius_px: float) -> sp.csr_matrix:
    """``(n_spots, n_cells)`` 0/1: the cells within ``radius_px`` of each spot centre."""
    from scipy.spatial import cKDTree

    found = cKDTree(xy).query_ball_point(centres, r=radius_px * (1 + 1e-9))  # the rim counts
    lengths = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
    indptr = np.r_[0, np.cumsum(lengths)]
    indices = np.fromiter((i for f in found for i in f), dtype=np.int64, count=int(indptr[-1]))
    data = np.ones(indices.size, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(centres), len(xy)))
