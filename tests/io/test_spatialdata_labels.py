"""Tables annotating a labels element (a segmentation mask: spatialdata-io's Xenium default,
CosMx): each label's centroid summed a chunk at a time equals ``spatialdata.get_centroids``,
whatever the chunks; the mask's transformation is honoured on the way to the H&E's pixels; a
label the mask lacks is named in one line; and the same cells read as a cell table equal the
equivalent ``.h5ad``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anndata as ad
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from labelled_section import (
    HE_UM,
    cell_mask,
    cells_table,
    labels_element,
    oracle_pixels,
    write_section,
)
from tmescope.errors import CountsFormatError, InvalidParameterError
from tmescope.io.cell_table import read_cell_table
from tmescope.io.label_centroids import label_centroids, mask_sums
from tmescope.io.spatialdata_sample import read_spatialdata

# zarr 3.1 warns of its coming autosharding on every array spatialdata writes.
pytestmark = pytest.mark.filterwarnings("ignore:.*autosharding:UserWarning")


@pytest.fixture(scope="module")
def section(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    mask = cell_mask()
    ids = np.unique(mask[mask > 0])
    path = write_section(tmp_path_factory.mktemp("sd") / "xenium.zarr", mask, cells_table(ids))
    return {"path": path, "mask": mask, "ids": ids, "oracle": oracle_pixels(path)}


def test_centroids_equal_spatialdata_get_centroids() -> None:
    import spatialdata as sd

    element = labels_element(cell_mask(seed=4), chunks=32)
    centres, sizes, ids = label_centroids(element, what="mask")
    oracle = sd.get_centroids(element, coordinate_system="global").compute()
    assert list(ids) == sorted(oracle.index)  # background 0 left out, as there
    from spatialdata.transformations import get_transformation

    to_um = get_transformation(element, "global").to_affine_matrix(("x", "y"), ("x", "y"))
    np.testing.assert_allclose(
        centres @ to_um[:2, :2].T + to_um[:2, 2], oracle.loc[ids, ["x", "y"]], atol=1e-9
    )
    mask = cell_mask(seed=4)
    assert sizes**2 == pytest.approx([(mask == i).sum() for i in ids])


@pytest.mark.parametrize("chunks", [(7, 11), (32, 160), (120, 3)])
def test_chunked_sums_equal_one_chunk(chunks: tuple[int, int]) -> None:
    mask = cell_mask(seed=2)
    mask[:5, :5] = 2**30  # ids far apart: some chunks number them with np.unique
    whole = mask_sums(mask)
    for ours, theirs in zip(mask_sums(da.from_array(mask, chunks=chunks)), whole, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    ids, count, sum_x, _ = whole
    j = np.nonzero(mask == ids[-1])[1]
    assert ids[-1] == 2**30 and count[-1] == 25 and sum_x[-1] == j.sum()


def test_a_labels_table_lands_on_the_he_through_both_transformations(section: dict) -> None:
    """Mask px → µm by a scale and a translation, µm → H&E px by the image's own scale."""
    with read_spatialdata(section["path"]) as sample:
        labels = sample.spots["barcode"].str.removeprefix("cell").astype(int).to_numpy()
        expected = section["oracle"].loc[labels].to_numpy()
        np.testing.assert_allclose(sample.spots[["x", "y"]].to_numpy(), expected, atol=1e-9)
        assert sample.mpp == pytest.approx(HE_UM) and sample.n_spots == len(section["ids"])
        # a cell's diameter: a disc of its area (√area, as a polygon's), 0.5 µm per mask pixel
        side_um = np.median([np.sqrt((section["mask"] == i).sum()) for i in labels]) * 0.5
        assert sample.spot_diameter_um == pytest.approx(side_um * 2 / math.sqrt(math.pi))


def test_labels_absent_from_the_mask_are_named_in_one_line(tmp_path: Path) -> None:
    mask = cell_mask()
    ids = np.unique(mask[mask > 0])
    for extra, shown in ((9999, "9999"), (0, "0")):  # 0 is background, never a cell
        table = cells_table(np.append(ids, extra))
        path = write_section(tmp_path / f"holes{extra}.zarr", mask, table)
        with pytest.raises(CountsFormatError, match=r"1 rows .* absent from 'cell_labels'") as e:
            read_spatialdata(path)
        message = str(e.value)
        assert "\n" not in message and f"e.g. {shown})" in message
        assert "a label (not 0, the background) in 'cell_labels'" in message


def test_a_3d_mask_is_refused() -> None:
    from spatialdata.models import Labels3DModel

    element = Labels3DModel.parse(np.zeros((2, 8, 8), np.int32), dims=("z", "y", "x"))
    with pytest.raises(CountsFormatError, match=r"axes \('z', 'y', 'x'\); expected a 2D mask"):
        label_centroids(element, what="mask")


def test_a_cell_table_from_the_spatialdata_equals_the_h5ad(section: dict, tmp_path: Path) -> None:
    """The same cells written as an .h5ad (positions by spatialdata.get_centroids) read alike."""
    table = ad.read_zarr(section["path"] / "tables" / "table")
    h5ad = ad.AnnData(X=table.X, obs=table.obs[["cell_type"]], var=table.var)
    h5ad.obsm["spatial"] = section["oracle"].loc[table.obs["cell_labels"]].to_numpy()
    h5ad.write_h5ad(tmp_path / "cells.h5ad")
    ours, theirs = read_cell_table(section["path"]), read_cell_table(tmp_path / "cells.h5ad")
    assert len(ours) == len(section["ids"]) and ours.has_types and ours.genes == theirs.genes
    np.testing.assert_allclose(ours.frame[["x", "y"]], theirs.frame[["x", "y"]], atol=1e-9)
    assert list(ours.frame["cell_type"]) == list(theirs.frame["cell_type"])
    assert ours.counts is not None and theirs.counts is not None
    assert (sp.csr_matrix(ours.counts) != theirs.counts).nnz == 0


def test_a_cell_table_names_its_table_only_in_a_spatialdata(section: dict, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="no table 'other'; its tables: table"):
        read_cell_table(section["path"], table="other")
    assert len(read_cell_table(section["path"], table="table")) == len(section["ids"])
    (tmp_path / "cells.csv").write_text("x,y,cell_type\n1,2,t\n")
    with pytest.raises(InvalidParameterError, match="not one; leave --table out"):
        read_cell_table(tmp_path / "cells.csv", table="table")
