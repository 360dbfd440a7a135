"""A Xenium-like SpatialData whose table annotates a labels mask, through the CLI: ``tmescope
embed SD.zarr`` stores its cells at the mask's centroids in the H&E's pixels, ``tmescope
pseudospots SD.zarr`` sums them, and a table naming a label the mask lacks is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_calls import call_cli as in_process
from labelled_section import cell_mask, cells_table, oracle_pixels, write_section
from tmescope.store import CohortStore, RowKind

# zarr 3.1 warns of its coming autosharding on every array spatialdata writes.
pytestmark = pytest.mark.filterwarnings("ignore:.*autosharding:UserWarning")


def call_cli(*args: str | Path) -> tuple[int, str, str]:
    """``tmescope ARGS`` in this process (:func:`cli_calls.call_cli`): exit code, out, err."""
    result = in_process(*args)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def section(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mask = cell_mask()
    ids = np.unique(mask[mask > 0])
    return write_section(tmp_path_factory.mktemp("sd") / "xenium.zarr", mask, cells_table(ids))


def test_embed_stores_the_cells_of_a_labels_table(section: Path, tmp_path: Path) -> None:
    store, mask = tmp_path / "cohort.zarr", cell_mask()
    code, out, err = call_cli(
        "embed", section, "--store", store, "--encoder", "test-vit-tiny", "--subspot", "0",
        "--device", "cpu", "--json",
    )  # fmt: skip
    assert code == 0, (out, err)
    (summary,) = json.loads(out)
    assert summary["sample_id"] == "xenium" and summary["n_spots"] == len(np.unique(mask)) - 1
    opened = CohortStore.open(store)
    spots = opened.read_kind("xenium") == RowKind.SPOT
    labels = [int(b.removeprefix("cell")) for b in np.asarray(opened.read_barcodes("xenium"))]
    expected = oracle_pixels(section).loc[np.asarray(labels)[spots]].to_numpy()
    coords = np.asarray(opened.read_coords("xenium"), np.float64)[spots]
    np.testing.assert_allclose(coords, expected, atol=1e-3)


def test_a_label_the_mask_lacks_is_one_line(tmp_path: Path) -> None:
    mask = cell_mask()
    table = cells_table(np.append(np.unique(mask[mask > 0]), 9999))
    path = write_section(tmp_path / "holes.zarr", mask, table)
    code, out, err = call_cli(
        "embed", path, "--store", tmp_path / "s.zarr", "--encoder", "test-vit-tiny"
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in out + err and len(lines) == 1, (out, err)
    assert lines[0].startswith("error: ") and "absent from 'cell_labels' (e.g. 9999)" in lines[0]


def test_pseudospots_from_a_labels_spatialdata(section: Path, tmp_path: Path) -> None:
    import anndata as ad

    out_file = tmp_path / "ps.h5ad"
    # 10 µm spots every 20 µm over a section of 80 × 60 µm, at the H&E's 0.4 µm/px
    code, out, err = call_cli(
        "pseudospots", section, "--out", out_file, "--mpp", "0.4", "--diameter", "10",
        "--pitch", "20", "--table", "table", "--json",
    )  # fmt: skip
    assert code == 0, (out, err)
    summary = json.loads(out)
    assert summary["n_cells"] == len(np.unique(cell_mask())) - 1 and summary["spots"] > 1
    spots = ad.read_h5ad(out_file)
    assert spots.obsm["cell_composition"].shape[1] >= 2 and spots.X.sum() > 0
