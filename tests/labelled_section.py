"""A small Xenium-like SpatialData written with spatialdata's own models: a segmentation mask
(``cell_labels``, sparse label ids, in 32 px chunks) placed in µm by a scale and a translation,
an RGB H&E placed in the same µm system at its own scale, and a table of counts and cell types
annotating the mask's labels (as spatialdata-io's Xenium reader writes it by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from factories import random_counts

MASK_SHAPE = (120, 160)  # (y, x) px of the mask
MASK_UM = 0.5  # µm per mask pixel
MASK_SHIFT_UM = (4.0, 6.0)  # x, y of the mask's corner in µm
HE_UM = 0.4  # µm per H&E pixel (its corner at the origin)
N_GENES = 5
TYPES = ("tumour", "t_cell", "fibroblast")


def cell_mask(*, n_cells: int = 24, seed: int = 0) -> np.ndarray:
    """``(y, x)`` int32 mask of ``n_cells`` discs with sparse ids (some above 1,000: the chunks'
    ids span more than their pixels), background 0."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(MASK_SHAPE, np.int32)
    ids = rng.choice(np.arange(1, 5000), n_cells, replace=False)
    yy, xx = np.mgrid[: MASK_SHAPE[0], : MASK_SHAPE[1]]
    for label in ids:
        cy, cx = rng.uniform(8, MASK_SHAPE[0] - 8), rng.uniform(8, MASK_SHAPE[1] - 8)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(3, 7) ** 2] = label
    return mask


def labels_element(mask: np.ndarray, *, chunks: int = 32) -> Any:
    """The mask as a 2-level multiscale labels element in ``global`` (µm)."""
    from spatialdata.models import Labels2DModel
    from spatialdata.transformations import Scale, Sequence, Translation

    to_um = Sequence(
        [
            Scale([MASK_UM, MASK_UM], axes=("y", "x")),
            Translation([MASK_SHIFT_UM[1], MASK_SHIFT_UM[0]], axes=("y", "x")),
        ]
    )
    return Labels2DModel.parse(
        mask, dims=("y", "x"), scale_factors=[2], chunks=chunks, transformations={"global": to_um}
    )


def cells_table(ids: np.ndarray, *, seed: int = 0) -> ad.AnnData:
    """Counts and types of the cells ``ids`` (in a shuffled order), annotating ``cell_labels``."""
    from spatialdata.models import TableModel

    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.asarray(ids))
    obs = pd.DataFrame(
        {
            "region": pd.Categorical(["cell_labels"] * len(ids)),
            "cell_labels": ids,
            "cell_type": pd.Categorical(rng.choice(TYPES, len(ids))),
        },
        index=[f"cell{i}" for i in ids],
    )
    table = ad.AnnData(X=random_counts(len(ids), N_GENES, seed=seed).astype(np.float32), obs=obs)
    table.var_names = [f"GENE{i}" for i in range(N_GENES)]
    return TableModel.parse(
        table, region="cell_labels", region_key="region", instance_key="cell_labels"
    )


def write_section(path: Path, mask: np.ndarray, table: ad.AnnData, *, chunks: int = 32) -> Path:
    """The SpatialData of ``mask`` and ``table`` beside an H&E covering the mask, at ``path``."""
    import spatialdata as sd
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Scale

    height = int(np.ceil((MASK_SHIFT_UM[1] + MASK_SHAPE[0] * MASK_UM) / HE_UM)) + 10
    width = int(np.ceil((MASK_SHIFT_UM[0] + MASK_SHAPE[1] * MASK_UM) / HE_UM)) + 10
    rng = np.random.default_rng(1)
    pixels = rng.integers(150, 230, (3, height, width), dtype=np.uint8)  # (c, y, x)
    image = Image2DModel.parse(
        pixels, dims=("c", "y", "x"), c_coords=["r", "g", "b"], chunks=64,
        transformations={"global": Scale([HE_UM, HE_UM], axes=("y", "x"))},
    )  # fmt: skip
    sdata = sd.SpatialData(
        images={"he_image": image},
        labels={"cell_labels": labels_element(mask, chunks=chunks)},
        tables={"table": table},
    )
    sdata.attrs["spatialdata_io_reader"] = "xenium"  # spatialdata-io's mark: "global" is µm
    sdata.write(path)
    return path


def oracle_pixels(path: Path) -> pd.DataFrame:
    """Each label's centroid in the H&E's pixels by ``spatialdata.get_centroids`` (which
    computes the whole mask: right for a test, not for a Xenium section), indexed by label."""
    import spatialdata as sd

    labels = sd.read_zarr(path, selection=("labels",)).labels["cell_labels"]
    centroids = sd.get_centroids(labels, coordinate_system="global").compute()
    return centroids[["x", "y"]] / HE_UM
