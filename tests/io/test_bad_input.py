"""Every bad input raises the fitting TmescopeError (which is also the fitting built-in error)
with a message that names what was expected and what was found."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from factories import (
    SyntheticVisium,
    hex_lattice,
    write_counts,
    write_png,
    write_random_bytes,
    write_visium,
    write_visium_hd,
)
from tmescope.errors import (
    CountsFormatError,
    ImageMismatchError,
    InputNotFoundError,
    PositionsFormatError,
    ResolutionError,
    ScalefactorsError,
    SlideReadError,
    SpaceRangerLayoutError,
    TmescopeError,
)
from tmescope.io.visium import read_visium

HEADER = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
Action = Callable[[], object]


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], Action]  # writes the bad input under tmp_path; returns the failing call
    error: type[TmescopeError]
    builtin: type[Exception]
    match: str  # a regular expression the message must match


def run(tmp_path: Path, **kwargs: object) -> SyntheticVisium:
    return write_visium(tmp_path, **kwargs)


def read(sample: SyntheticVisium, **kwargs: object) -> Action:
    return lambda: read_visium(sample.path, **kwargs)


def with_positions(text: str) -> Callable[[Path], Action]:
    """A good run whose tissue_positions.csv is replaced by ``text``."""

    def make(tmp_path: Path) -> Action:
        sample = run(tmp_path)
        (sample.spatial / "tissue_positions.csv").write_text(text)
        return read(sample)

    return make


def good_rows(n: int = 3) -> str:
    spots = hex_lattice(3, 3)
    return "\n".join(
        f"{b},{int(t)},{r},{c},{y},{x}"
        for b, t, r, c, x, y in spots.head(n).itertuples(index=False)
    )


def binary_positions(tmp_path: Path) -> Action:
    sample = run(tmp_path)
    (sample.spatial / "tissue_positions.csv").write_bytes(b"\xff\xfe\x00\x81" * 50)
    return read(sample)


def file_instead_of_folder(tmp_path: Path) -> Action:
    (tmp_path / "run.h5").write_bytes(b"x")
    return lambda: read_visium(tmp_path / "run.h5")


def with_scalefactors(text: str) -> Callable[[Path], Action]:
    def make(tmp_path: Path) -> Action:
        sample = run(tmp_path)
        (sample.spatial / "scalefactors_json.json").write_text(text)
        return read(sample)

    return make


def with_h5(write: Callable[[Path, SyntheticVisium], None]) -> Callable[[Path], Action]:
    def make(tmp_path: Path) -> Action:
        sample = run(tmp_path)
        write(sample.outs / "filtered_feature_bc_matrix.h5", sample)
        return read(sample)

    return make


def truncated_h5(path: Path, sample: SyntheticVisium) -> None:
    big = sp.random(400, 300, density=0.3, format="csr", random_state=0) * 100
    write_counts(
        path.parent,
        big.astype(np.int32),
        barcodes=[f"B{i}" for i in range(400)],
        gene_ids=[f"G{i}" for i in range(300)],
        gene_names=[f"G{i}" for i in range(300)],
        fmt="h5",
    )
    path.write_bytes(path.read_bytes()[:3000])


def hdf5_without_groups(path: Path, sample: SyntheticVisium) -> None:
    with h5py.File(path, "w") as f:
        f["table"] = np.arange(10)


def hdf5_matrix_without_features(path: Path, sample: SyntheticVisium) -> None:
    with h5py.File(path, "a") as f:
        del f["matrix/features"]


def hdf5_genome_group_without_genes(path: Path, sample: SyntheticVisium) -> None:
    with h5py.File(path, "w") as f:
        f.create_group("analysis")["pca"] = np.zeros((3, 3))


def matrix_barcodes_not_in_positions(tmp_path: Path) -> Action:
    sample = run(tmp_path)
    write_counts(
        sample.outs,
        sample.counts,
        barcodes=[b.replace("-1", "-2") for b in sample.barcodes],
        gene_ids=sample.gene_ids,
        gene_names=sample.gene_names,
        fmt="h5",
    )
    return read(sample)


def empty_matrix(tmp_path: Path) -> Action:
    sample = run(tmp_path)
    write_counts(
        sample.outs,
        sp.csr_matrix((0, 3), dtype=np.int32),
        barcodes=[],
        gene_ids=["a", "b", "c"],
        gene_names=["a", "b", "c"],
        fmt="h5",
    )
    return read(sample)


def hires_too_small(tmp_path: Path) -> Action:
    sample = run(tmp_path)
    write_png(
        sample.images["hires"], np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8)
    )
    return read(sample)


def fullres_too_small(tmp_path: Path) -> Action:
    sample = run(tmp_path)
    return read(sample, image=sample.images["hires"])  # the hires PNG given as the full-res H&E


def unreadable_image(name: str) -> Callable[[Path], Action]:
    def make(tmp_path: Path) -> Action:
        sample = run(tmp_path)
        return read(sample, image=write_random_bytes(tmp_path / name))

    return make


def unreadable_hires(tmp_path: Path) -> Action:
    sample = run(tmp_path)
    write_random_bytes(sample.images["hires"])
    return read(sample)


def one_row_no_metadata(tmp_path: Path) -> Action:
    return read(run(tmp_path, spots=hex_lattice(1, 8).assign(in_tissue=True)))


def unknown_hd_bin(tmp_path: Path) -> Action:
    hd = write_visium_hd(tmp_path, bin_sizes=(2, 8, 16))
    return lambda: read_visium(hd.path, bin_size_um=5)


def hd_bin_without_2_um_bins(tmp_path: Path) -> Action:
    hd = write_visium_hd(tmp_path, bin_sizes=(8, 16))
    return lambda: read_visium(hd.path, bin_size_um=4)


def no_images(tmp_path: Path) -> Action:
    return read(run(tmp_path, images=()))


def missing_hires_scalef(tmp_path: Path) -> Action:
    sample = run(tmp_path)
    factors = {k: v for k, v in sample.scalefactors.items() if k != "tissue_hires_scalef"}
    (sample.spatial / "scalefactors_json.json").write_text(json.dumps(factors))
    return read(sample)


def removed(*names: str) -> Callable[[Path], Action]:
    def make(tmp_path: Path) -> Action:
        sample = run(tmp_path)
        for name in names:
            (sample.outs / name).unlink()
        return read(sample)

    return make


def bad_parquet(tmp_path: Path) -> Action:
    hd = write_visium_hd(tmp_path, bin_sizes=(8,))
    write_random_bytes(
        hd.outs / "binned_outputs" / "square_008um" / "spatial" / "tissue_positions.parquet"
    )
    return lambda: read_visium(hd.path)


CASES: dict[str, Case] = {
    # folders
    "missing folder": Case(
        lambda p: lambda: read_visium(p / "no_such_run"),
        InputNotFoundError,
        FileNotFoundError,
        r"no_such_run does not exist; expected a Space Ranger outs/ folder",
    ),
    "file instead of folder": Case(
        file_instead_of_folder,
        SpaceRangerLayoutError,
        ValueError,
        r"run\.h5 is a file; expected a Space Ranger outs/ folder",
    ),
    "no spatial folder": Case(
        lambda p: lambda: read_visium(p),
        SpaceRangerLayoutError,
        ValueError,
        r"holds no spatial/ folder .*expected a Space Ranger outs/ folder",
    ),
    "no positions file": Case(
        removed("spatial/tissue_positions.csv"),
        SpaceRangerLayoutError,
        ValueError,
        r"has no spot positions file; expected tissue_positions\.csv .*tissue_positions_list\.csv",
    ),
    "no count matrix": Case(
        removed("filtered_feature_bc_matrix.h5"),
        SpaceRangerLayoutError,
        ValueError,
        r"has no count matrix; expected filtered_feature_bc_matrix\.h5",
    ),
    # positions
    "positions without the expected columns": Case(
        with_positions("barcode,in_tissue,array_row,array_col,pxl_row,pxl_col\nA-1,1,0,0,1,2\n"),
        PositionsFormatError,
        ValueError,
        r"lacks column\(s\) pxl_row_in_fullres, pxl_col_in_fullres; found: barcode, .*pxl_col",
    ),
    "positions with too few columns": Case(
        with_positions("A-1,1,0,0\nB-1,1,0,2\n"),
        PositionsFormatError,
        ValueError,
        r"column pxl_col_in_fullres must be numeric, found nan for barcode 'A-1'",
    ),
    "non-numeric positions": Case(
        with_positions(f"{HEADER}\n{good_rows(2)}\nC-1,1,1,1,12.5e,30\n"),
        PositionsFormatError,
        ValueError,
        r"column pxl_row_in_fullres must be numeric, found '12\.5e' for barcode 'C-1'",
    ),
    "infinite positions": Case(
        with_positions(f"{HEADER}\nC-1,1,1,1,inf,30\n"),
        PositionsFormatError,
        ValueError,
        r"column pxl_row_in_fullres must be numeric, found inf",
    ),
    "in_tissue not 0/1": Case(
        with_positions(f"{HEADER}\n{good_rows(2)}\nC-1,2,1,1,12,30\n"),
        PositionsFormatError,
        ValueError,
        r"column in_tissue must hold 0 or 1, found \[2\]",
    ),
    "duplicate barcodes": Case(
        with_positions(f"{good_rows(3)}\n{good_rows(1)}\n"),
        PositionsFormatError,
        ValueError,
        r"barcode 'AAAAAAAAAAAAAAAA-1' appears twice",
    ),
    "empty positions file": Case(
        with_positions(""),
        PositionsFormatError,
        ValueError,
        r"is empty; expected one line per spot",
    ),
    "positions header only": Case(
        with_positions(HEADER + "\n"),
        PositionsFormatError,
        ValueError,
        r"holds no spots",
    ),
    "positions not text": Case(
        binary_positions,
        PositionsFormatError,
        ValueError,
        r"could not read positions file",
    ),
    "broken HD parquet": Case(
        bad_parquet,
        PositionsFormatError,
        ValueError,
        r"could not read .*tissue_positions\.parquet as a parquet positions table",
    ),
    # counts
    "truncated h5": Case(
        with_h5(truncated_h5),
        CountsFormatError,
        ValueError,
        r"could not open .*filtered_feature_bc_matrix\.h5 as HDF5 .*truncated or is not a 10x",
    ),
    "non-HDF5 named .h5": Case(
        with_h5(lambda path, s: write_random_bytes(path)),
        CountsFormatError,
        ValueError,
        r"could not open .* as HDF5",
    ),
    "HDF5 without groups": Case(
        with_h5(hdf5_without_groups),
        CountsFormatError,
        ValueError,
        r"has no 'matrix' group and 0 genome groups; expected a 10x feature-barcode matrix",
    ),
    "HDF5 matrix without features": Case(
        with_h5(hdf5_matrix_without_features),
        CountsFormatError,
        ValueError,
        r"is HDF5 but not a 10x feature-barcode matrix: missing .*features",
    ),
    "HDF5 with an unrelated group": Case(
        with_h5(hdf5_genome_group_without_genes),
        CountsFormatError,
        ValueError,
        r"is HDF5 but not a 10x feature-barcode matrix",
    ),
    "matrix barcodes missing from the positions": Case(
        matrix_barcodes_not_in_positions,
        SpaceRangerLayoutError,
        ValueError,
        r"20 of 20 matrix barcodes \(e\.g\. '.*-2'\) are missing from tissue_positions\.csv",
    ),
    "matrix without barcodes": Case(
        empty_matrix,
        CountsFormatError,
        ValueError,
        r"holds no barcodes",
    ),
    # images
    "hires smaller than the spots need": Case(
        hires_too_small,
        ImageMismatchError,
        ValueError,
        r"spots reach \(\d+, \d+\) px on tissue_hires_image\.png but the image is 80×60 px: "
        r"the scalefactors do not fit",
    ),
    "full-res image smaller than the spots need": Case(
        fullres_too_small,
        ImageMismatchError,
        ValueError,
        r"but the image is 486×356 px: is this the image given to Space Ranger, at full resolution",
    ),
    "random bytes named .png": Case(
        unreadable_image("he.png"),
        SlideReadError,
        OSError,
        r"could not read .*he\.png as an image",
    ),
    "random bytes named .tif": Case(
        unreadable_image("he.tif"),
        SlideReadError,
        OSError,
        r"could not read .*he\.tif as a TIFF image",
    ),
    "random bytes as the hires PNG": Case(
        unreadable_hires,
        SlideReadError,
        OSError,
        r"tissue_hires_image\.png as an image",
    ),
    "missing image file": Case(
        lambda p: read(run(p), image=p / "he.svs"),
        InputNotFoundError,
        FileNotFoundError,
        r"image .*he\.svs does not exist",
    ),
    "no image at all": Case(
        no_images,
        SpaceRangerLayoutError,
        ValueError,
        r"has neither tissue_hires_image\.png nor tissue_lowres_image\.png; pass the full-resolution",
    ),
    # resolution
    "µm/px neither in metadata nor derivable": Case(
        one_row_no_metadata,
        ResolutionError,
        ValueError,
        r"the image has no resolution metadata and cannot derive µm/px from the spot pitch",
    ),
    "unknown HD bin size": Case(
        unknown_hd_bin,
        SpaceRangerLayoutError,
        ValueError,
        r"no 5 µm bins .*available bin sizes: 2 µm, 8 µm, 16 µm; .*multiple of 2 µm",
    ),
    "HD bin size without 2 µm bins to sum": Case(
        hd_bin_without_2_um_bins,
        SpaceRangerLayoutError,
        ValueError,
        r"no 4 µm bins .*available bin sizes: 8 µm, 16 µm; .*which this run lacks",
    ),
    # scalefactors
    "broken scalefactors JSON": Case(
        with_scalefactors('{"tissue_hires_scalef": 0.5,'),
        ScalefactorsError,
        ValueError,
        r"could not read .*scalefactors_json\.json as JSON",
    ),
    "negative scalefactor": Case(
        with_scalefactors('{"tissue_hires_scalef": -0.5, "tissue_lowres_scalef": 0.1}'),
        ScalefactorsError,
        ValueError,
        r"tissue_hires_scalef must be a positive number, found -0\.5",
    ),
    "scalefactor as text": Case(
        with_scalefactors('{"tissue_hires_scalef": "0.5"}'),
        ScalefactorsError,
        ValueError,
        r"tissue_hires_scalef must be a number, found '0\.5'",
    ),
    "scalefactors not an object": Case(
        with_scalefactors("[0.5, 0.1]"),
        ScalefactorsError,
        ValueError,
        r"holds a list, expected a JSON object",
    ),
    "scalefactors lacking the image's key": Case(
        missing_hires_scalef,
        ScalefactorsError,
        ValueError,
        r"scalefactors lack 'tissue_hires_scalef', needed to place spots on the hires image",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input(tmp_path: Path, case: Case) -> None:
    action = case.make(tmp_path)
    with pytest.raises(case.error, match=case.match) as info:
        action()
    assert isinstance(info.value, TmescopeError)
    assert isinstance(info.value, case.builtin)
    assert "\n" not in str(info.value)  # the CLI prints it as one line


def test_every_error_class_is_covered() -> None:
    import tmescope.errors as errors

    covered = {case.error for case in CASES.values()}
    reader_errors = {
        errors.InputNotFoundError,
        errors.SpaceRangerLayoutError,
        errors.PositionsFormatError,
        errors.CountsFormatError,
        errors.ScalefactorsError,
        errors.SlideReadError,
        errors.ImageMismatchError,
        errors.ResolutionError,
    }
    assert reader_errors <= covered
