"""Finding a run's files, whichever of its folders the user points at."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import write_counts, write_visium, write_visium_hd
from tmescope.errors import SpaceRangerLayoutError
from tmescope.io.layout import locate_spaceranger_files


@pytest.mark.parametrize("layout", ["parent", "outs", "flat"])
def test_outs_its_parent_or_a_flat_folder(tmp_path: Path, layout: str) -> None:
    sample = write_visium(tmp_path, layout=layout)
    found = locate_spaceranger_files(sample.path)
    assert found.platform == "visium"
    assert found.root == sample.outs
    assert found.sample_id == "run1"
    assert found.positions == sample.spatial / "tissue_positions.csv"
    assert found.scalefactors == sample.spatial / "scalefactors_json.json"
    assert found.h5 == sample.outs / "filtered_feature_bc_matrix.h5"
    assert found.mtx_dir is None
    assert found.hires_image == sample.images["hires"]
    assert found.lowres_image == sample.images["lowres"]
    assert found.bin_size_um is None


@pytest.mark.parametrize(
    ("where", "relative"), [("run1", "."), ("run1", "outs"), ("run1/outs", ".")]
)
def test_relative_paths_still_name_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, relative: str
) -> None:
    write_visium(tmp_path)
    monkeypatch.chdir(tmp_path / where)
    found = locate_spaceranger_files(relative)
    assert found.sample_id == "run1"
    assert found.root == tmp_path / "run1" / "outs"


def test_v2_positions_win_over_v1(tmp_path: Path) -> None:
    sample = write_visium(tmp_path, positions="v1")
    assert locate_spaceranger_files(sample.path).positions.name == "tissue_positions_list.csv"
    (sample.spatial / "tissue_positions.csv").write_text("")
    assert locate_spaceranger_files(sample.path).positions.name == "tissue_positions.csv"


def test_optional_files_may_be_missing(tmp_path: Path) -> None:
    sample = write_visium(tmp_path, images=())
    (sample.spatial / "scalefactors_json.json").unlink()
    found = locate_spaceranger_files(sample.path)
    assert found.scalefactors is None
    assert found.hires_image is None and found.lowres_image is None


def test_h5_and_mtx_both_found(tmp_path: Path) -> None:
    sample = write_visium(tmp_path, matrix=("h5", "mtx_gz"))
    found = locate_spaceranger_files(sample.path)
    assert found.h5 is not None
    assert found.mtx_dir == sample.outs / "filtered_feature_bc_matrix"


@pytest.mark.parametrize("fmt", ["h5", "mtx_gz", "mtx"])
def test_raw_matrix_when_there_is_no_filtered_one(tmp_path: Path, fmt: str) -> None:
    sample = write_visium(tmp_path, matrix=())
    write_counts(
        sample.outs,
        sample.counts,
        barcodes=sample.barcodes,
        gene_ids=sample.gene_ids,
        gene_names=sample.gene_names,
        fmt=fmt,
        prefix="raw",
    )
    found = locate_spaceranger_files(sample.path)
    assert (found.h5 or found.mtx_dir).name.startswith("raw_feature_bc_matrix")


def test_filtered_matrix_wins_over_raw(tmp_path: Path) -> None:
    sample = write_visium(tmp_path, matrix=("h5",))
    write_counts(
        sample.outs,
        sample.counts,
        barcodes=sample.barcodes,
        gene_ids=sample.gene_ids,
        gene_names=sample.gene_names,
        fmt="h5",
        prefix="raw",
    )
    assert locate_spaceranger_files(sample.path).h5.name == "filtered_feature_bc_matrix.h5"


def test_an_empty_mtx_folder_is_no_matrix(tmp_path: Path) -> None:
    sample = write_visium(tmp_path, matrix=())
    (sample.outs / "filtered_feature_bc_matrix").mkdir()
    with pytest.raises(SpaceRangerLayoutError, match="no count matrix"):
        locate_spaceranger_files(sample.path)


# --------------------------------------------------------------------------------------------
# Visium HD


@pytest.mark.parametrize("where", ["run", "outs"])
def test_hd_defaults_to_8um_bins(tmp_path: Path, where: str) -> None:
    hd = write_visium_hd(tmp_path)
    found = locate_spaceranger_files(hd.path if where == "run" else hd.outs)
    assert found.platform == "visium_hd"
    assert found.bin_size_um == 8
    assert found.root == hd.outs
    assert found.sample_id == "hd_run"
    bin_dir = hd.outs / "binned_outputs" / "square_008um"
    assert found.positions == bin_dir / "spatial" / "tissue_positions.parquet"
    assert found.scalefactors == bin_dir / "spatial" / "scalefactors_json.json"
    assert found.h5 == bin_dir / "filtered_feature_bc_matrix.h5"
    # images are taken from outs/spatial/ when the bin folder has none
    assert found.hires_image == hd.outs / "spatial" / "tissue_hires_image.png"


def test_hd_without_8um_takes_the_largest_bins(tmp_path: Path) -> None:
    hd = write_visium_hd(tmp_path, bin_sizes=(2, 16))
    assert locate_spaceranger_files(hd.path).bin_size_um == 16


@pytest.mark.parametrize("size", [2, 8, 16])
def test_hd_explicit_bin_size(tmp_path: Path, size: int) -> None:
    hd = write_visium_hd(tmp_path)
    found = locate_spaceranger_files(hd.path, bin_size_um=size)
    assert found.bin_size_um == size
    assert found.positions.parent.parent.name == f"square_{size:03d}um"


@pytest.mark.parametrize("size", [2, 16])
def test_hd_pointing_at_a_bin_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    hd = write_visium_hd(tmp_path)
    bin_dir = hd.outs / "binned_outputs" / f"square_{size:03d}um"
    for path in (bin_dir, "."):
        monkeypatch.chdir(bin_dir)
        found = locate_spaceranger_files(path)
        assert (found.platform, found.bin_size_um, found.root) == ("visium_hd", size, hd.outs)
        assert found.sample_id == "hd_run"


def test_hd_images_in_the_bin_folder_come_first(tmp_path: Path) -> None:
    hd = write_visium_hd(tmp_path)
    own = hd.outs / "binned_outputs" / "square_008um" / "spatial" / "tissue_lowres_image.png"
    own.write_bytes((hd.outs / "spatial" / "tissue_lowres_image.png").read_bytes())
    found = locate_spaceranger_files(hd.path)
    assert found.lowres_image == own
    assert found.hires_image == hd.outs / "spatial" / "tissue_hires_image.png"


def test_hd_unwritten_bin_size_is_summed_from_the_2_um_bins(tmp_path: Path) -> None:
    hd = write_visium_hd(tmp_path, bin_sizes=(2, 8))
    found = locate_spaceranger_files(hd.path, bin_size_um=4)
    fine = hd.outs / "binned_outputs" / "square_002um"
    assert (found.platform, found.bin_size_um, found.summed_from) == ("visium_hd", 4, fine)
    assert found.positions.parent.parent == fine
    assert locate_spaceranger_files(hd.path, bin_size_um=8).summed_from is None


@pytest.mark.parametrize(
    ("written", "size", "how"),
    [
        ((2, 8), 5, r"available bin sizes: 2 µm, 8 µm; .*pass a multiple of 2 µm to --bin-size"),
        ((2, 8), 0, r"pass a multiple of 2 µm"),
        ((8, 16), 4, r"available bin sizes: 8 µm, 16 µm; .*which this run lacks"),
    ],
)
def test_hd_bin_size_that_cannot_be_summed_says_how(
    tmp_path: Path, written: tuple[int, ...], size: int, how: str
) -> None:
    hd = write_visium_hd(tmp_path, bin_sizes=written)
    with pytest.raises(SpaceRangerLayoutError, match=rf"no {size} µm bins.*{how}") as info:
        locate_spaceranger_files(hd.path, bin_size_um=size)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_a_bin_size_in_whole_um_as_a_float_is_that_size(tmp_path: Path) -> None:
    """16.0 (typed, or as a store's JSON keeps it) names square_016um; 4.0 sums as 4."""
    hd = write_visium_hd(tmp_path, bin_sizes=(2, 8, 16))
    found = locate_spaceranger_files(hd.path, bin_size_um=16.0)
    assert found.bin_size_um == 16 and isinstance(found.bin_size_um, int)
    assert found.positions.parent.parent.name == "square_016um"
    assert locate_spaceranger_files(hd.path, bin_size_um=4.0).bin_size_um == 4


@pytest.mark.parametrize("size", [15.5, float("nan"), float("inf")])
def test_a_bin_size_that_is_no_whole_um_is_refused(tmp_path: Path, size: float) -> None:
    hd = write_visium_hd(tmp_path, bin_sizes=(2, 8))
    with pytest.raises(SpaceRangerLayoutError, match=r"bins: Visium HD bins are whole multiples"):
        locate_spaceranger_files(hd.path, bin_size_um=size)


def test_hd_binned_outputs_without_bins(tmp_path: Path) -> None:
    (tmp_path / "outs" / "binned_outputs" / "other").mkdir(parents=True)
    with pytest.raises(SpaceRangerLayoutError, match="no square_NNNum/ bin folders"):
        locate_spaceranger_files(tmp_path)


def test_hd_bin_folder_without_spatial(tmp_path: Path) -> None:
    (tmp_path / "outs" / "binned_outputs" / "square_008um").mkdir(parents=True)
    with pytest.raises(SpaceRangerLayoutError, match="has no spatial/ folder"):
        locate_spaceranger_files(tmp_path)


def test_a_bin_size_on_a_standard_visium_run_is_refused(tmp_path: Path) -> None:
    sample = write_visium(tmp_path)
    with pytest.raises(SpaceRangerLayoutError, match=r"standard Visium run.*drop --bin-size"):
        locate_spaceranger_files(sample.path, bin_size_um=8)


def test_a_bin_folder_of_another_size_than_asked_is_refused(tmp_path: Path) -> None:
    hd = write_visium_hd(tmp_path)
    bin_dir = hd.outs / "binned_outputs" / "square_016um"
    with pytest.raises(SpaceRangerLayoutError, match="holds 16 µm bins but 8 µm bins"):
        locate_spaceranger_files(bin_dir, bin_size_um=8)
    assert locate_spaceranger_files(bin_dir, bin_size_um=16).bin_size_um == 16
