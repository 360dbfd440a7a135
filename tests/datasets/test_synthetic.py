"""The synthetic cohort: real Space Ranger layout, same bytes per seed, and a truth that shows.

One small cohort is written per module and read back through ``read_visium``; tests must not
change its files.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

import tmescope.cpus
import tmescope.datasets
from tmescope.datasets import write_synthetic_cohort
from tmescope.datasets.catalogue import CELL_TYPES, REGIONS, TYPE_NAMES
from tmescope.datasets.cohort_sheet import patient_of
from tmescope.datasets.synthetic import _workers
from tmescope.errors import InvalidParameterError
from tmescope.io import Sample, read_visium
from tmescope.io.positions import read_positions
from tmescope.io.samplesheet import read_samplesheet

N_SPOTS = 400
SEED = 7


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_synthetic_cohort(
        tmp_path_factory.mktemp("cohort"), n_samples=2, n_spots=N_SPOTS, seed=SEED
    )


@pytest.fixture(scope="module")
def fullres(cohort: list[Path]) -> Iterator[list[Sample]]:
    samples = [read_visium(p, image=p / f"{p.name}_he.tif") for p in cohort]
    yield samples
    for sample in samples:
        sample.close()


def truth_of(sample_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sample_dir / "ground_truth.csv", dtype={"barcode": str})


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_same_seed_writes_the_same_bytes_serially_or_in_parallel(tmp_path: Path) -> None:
    messages: list[str] = []
    first = write_synthetic_cohort(tmp_path / "a", n_samples=3, n_spots=30, seed=1, workers=1)
    write_synthetic_cohort(
        tmp_path / "b", n_samples=3, n_spots=30, seed=1, workers=2, progress=messages.append
    )
    assert [p.name for p in first] == ["synth_00", "synth_01", "synth_02"]
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert a.keys() == b.keys()
    assert {"reference.h5ad", "samplesheet.csv", "synth_02/synth_02_he.tif"} <= a.keys()
    assert [name for name in a if a[name] != b[name]] == []
    # The pool reports each sample as it is done (in any order), with the time left.
    assert sorted(m.split(":")[0] for m in messages) == ["synth_00", "synth_01", "synth_02"]
    assert sum(m.endswith(" left") for m in messages) == 2


def test_seeds_and_samples_differ_and_a_sample_ignores_cohort_size(tmp_path: Path) -> None:
    one = write_synthetic_cohort(tmp_path / "one", n_samples=1, n_spots=40, seed=1)[0]
    two = write_synthetic_cohort(tmp_path / "two", n_samples=2, n_spots=40, seed=1)
    other = write_synthetic_cohort(tmp_path / "other", n_samples=1, n_spots=40, seed=2)[0]
    h5 = Path("outs/filtered_feature_bc_matrix.h5")
    assert files_of(one) == files_of(two[0])
    assert (two[0] / h5).read_bytes() != (two[1] / h5).read_bytes()
    assert (one / h5).read_bytes() != (other / h5).read_bytes()
    tif = (one / "synth_00_he.tif").read_bytes()
    assert tif != (other / "synth_00_he.tif").read_bytes()
    assert tif != (two[1] / "synth_01_he.tif").read_bytes()


def test_space_ranger_layout(cohort: list[Path]) -> None:
    sample = cohort[0]
    spatial = sample / "outs" / "spatial"
    expected = {
        "outs/filtered_feature_bc_matrix.h5",
        "outs/spatial/tissue_positions.csv",
        "outs/spatial/scalefactors_json.json",
        "outs/spatial/tissue_hires_image.png",
        "outs/spatial/tissue_lowres_image.png",
        "synth_00_he.tif",
        "ground_truth.csv",
        "ground_truth.json",
        "cells.csv",
        "cells.h5ad",
    }
    assert set(files_of(sample)) == expected
    root_files = sorted(p.name for p in sample.parent.iterdir() if p.is_file())
    assert root_files == ["reference.h5ad", "samplesheet.csv"]
    header = (spatial / "tissue_positions.csv").read_text().split("\n", 1)[0]
    assert header == "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
    positions = read_positions(spatial / "tissue_positions.csv")
    assert positions["in_tissue"].sum() == N_SPOTS
    assert (positions["in_tissue"] == 0).sum() > 0  # the whole capture grid is listed
    assert ((positions["array_col"] - positions["array_row"]) % 2 == 0).all()  # hexagonal lattice
    scalefactors = json.loads((spatial / "scalefactors_json.json").read_text())
    assert scalefactors["spot_diameter_fullres"] == pytest.approx(55 / 0.5)
    assert scalefactors["fiducial_diameter_fullres"] > scalefactors["spot_diameter_fullres"]
    for name, long_side, key in (
        ("tissue_hires_image.png", 2000, "tissue_hires_scalef"),
        ("tissue_lowres_image.png", 600, "tissue_lowres_scalef"),
    ):
        with Image.open(spatial / name) as image:
            assert max(image.size) == long_side
            assert image.mode == "RGB"
        with tifffile.TiffFile(sample / "synth_00_he.tif") as tif:
            full_long_side = max(tif.pages.first.shape[:2])
        assert scalefactors[key] == pytest.approx(long_side / full_long_side)


def test_fullres_tiff_is_tiled_pyramidal_jpeg(cohort: list[Path]) -> None:
    with tifffile.TiffFile(cohort[0] / "synth_00_he.tif") as tif:
        page = tif.pages.first
        assert page.is_tiled
        assert page.compression == tifffile.COMPRESSION.JPEG
        levels = tif.series[0].levels
        assert len(levels) > 1
        assert max(levels[-1].shape[:2]) < 1000
        assert [lvl.shape[0] for lvl in levels] == [
            levels[0].shape[0] >> i for i in range(len(levels))
        ]


def test_reads_back_with_the_fullres_image(cohort: list[Path], fullres: list[Sample]) -> None:
    for sample in fullres:
        assert sample.mpp == pytest.approx(0.5)
        assert sample.mpp_source == "tiff:XResolution"
        assert sample.image_kind == "fullres"
        assert len(sample.slide.levels) > 1
        assert sample.n_spots == sample.n_in_tissue == N_SPOTS
        assert sample.n_genes == 200


def test_reads_back_with_the_hires_png(cohort: list[Path]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hires image is too coarse for an encoder, rightly
        with read_visium(cohort[1]) as sample:
            assert sample.image_kind == "hires"
            assert sample.mpp_source == "spot-pitch"
            assert sample.mpp == pytest.approx(0.5, rel=0.01)
            assert sample.n_spots == N_SPOTS


def spot_colours(sample: Sample, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean RGB of a 40 µm square under each spot."""
    return np.array(
        [
            sample.read_patch(a, b, size_um=40, size_px=16).reshape(-1, 3).mean(0)
            for a, b in zip(x, y, strict=True)
        ]
    )


def test_tissue_lies_under_in_tissue_spots(cohort: list[Path], fullres: list[Sample]) -> None:
    for folder, sample in zip(cohort, fullres, strict=True):
        positions = read_positions(folder / "outs" / "spatial" / "tissue_positions.csv")
        brightness = spot_colours(sample, positions["x"], positions["y"]).mean(axis=1)
        inside = positions["in_tissue"].to_numpy() == 1
        assert brightness[inside].mean() < brightness[~inside].mean() - 40
        assert np.median(brightness[~inside]) > 235  # glass


def test_region_colours_follow_haematoxylin_and_eosin(
    cohort: list[Path], fullres: list[Sample]
) -> None:
    truth = pd.concat([truth_of(folder) for folder in cohort], keys=range(2), names=["sample"])
    colours = np.concatenate(
        [
            spot_colours(s, truth_of(f)["x"], truth_of(f)["y"])
            for f, s in zip(cohort, fullres, strict=True)
        ]
    )
    truth[["r", "g", "b"]] = colours
    by_region = truth.groupby("region")[["r", "g", "b"]].mean()
    assert truth["region"].value_counts()[["immune", "stroma", "tumour"]].min() >= 3
    immune, stroma, tumour = (
        by_region.loc["immune"],
        by_region.loc["stroma"],
        by_region.loc["tumour"],
    )
    assert immune.mean() < stroma.mean() - 10  # packed lymphocytes are dark
    assert immune["b"] - immune["r"] > stroma["b"] - stroma["r"] + 20  # and purple; stroma is pink
    assert tumour.mean() < stroma.mean() - 10


def test_counts_follow_composition(cohort: list[Path], fullres: list[Sample]) -> None:
    for folder, sample in zip(cohort, fullres, strict=True):
        counts = sample.counts.to_df()
        truth = truth_of(folder).set_index("barcode").loc[counts.index]
        share = counts.div(counts.sum(axis=1), axis=0)
        immune, stroma = truth["region"] == "immune", truth["region"] == "stroma"
        # Stroma holds T cells too, infiltrating around tumour borders.
        assert share.loc[immune, "CD3E"].mean() > 1.5 * share.loc[stroma, "CD3E"].mean()
        for gene, cell_type in (("CD3E", "t_cell"), ("SATB2", "tumour"), ("COL1A1", "fibroblast")):
            assert np.corrcoef(share[gene], truth[cell_type])[0, 1] > 0.5, gene
        # More cells, more UMIs (necrotic debris and red cells carry little RNA).
        umi_per_cell = np.array([t.umi for t in CELL_TYPES])
        expected = (
            truth[list(TYPE_NAMES)].to_numpy() * truth[["n_cells"]].to_numpy()
        ) @ umi_per_cell
        assert np.corrcoef(np.log1p(counts.sum(axis=1)), np.log1p(expected))[0, 1] > 0.7


def test_interferon_genes_rise_near_tumour_borders_beyond_composition(
    cohort: list[Path], fullres: list[Sample]
) -> None:
    residuals, proximity = [], []
    for folder, sample in zip(cohort, fullres, strict=True):
        counts = sample.counts.to_df()
        truth = truth_of(folder).set_index("barcode").loc[counts.index]
        y = np.log1p(1e4 * counts["CXCL9"] / counts.sum(axis=1))
        design = np.column_stack(
            [truth[list(TYPE_NAMES)], np.log1p(truth["n_cells"]), np.ones(len(truth))]
        )
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        residuals.append(y - design @ coef)
        proximity.append(np.exp(-truth["border_um"] / 100))
    assert np.corrcoef(np.concatenate(residuals), np.concatenate(proximity))[0, 1] > 0.15


def test_ground_truth_matches_the_matrix(cohort: list[Path], fullres: list[Sample]) -> None:
    for folder, sample in zip(cohort, fullres, strict=True):
        truth = truth_of(folder)
        assert list(truth["barcode"]) == list(sample.counts.obs_names)
        assert set(truth["region"]) <= set(REGIONS)
        fractions = truth[list(TYPE_NAMES)]
        assert fractions.to_numpy().min() >= 0
        has_cells = truth["n_cells"] > 0
        assert np.allclose(fractions[has_cells].sum(axis=1), 1, atol=1e-4)
        assert (truth[["border_um", "vessel_um"]] >= 0).all().all()
        spots = sample.spots.set_index("barcode").loc[truth["barcode"]]
        assert np.array_equal(spots[["x", "y"]].to_numpy(), truth[["x", "y"]].to_numpy())
        description = json.loads((folder / "ground_truth.json").read_text())
        assert description["sample_id"] == folder.name
        assert description["seed"] == SEED
        assert description["n_spots_in_tissue"] == N_SPOTS
        assert set(description["cell_types"]) == set(TYPE_NAMES)
        assert "CD3E" in description["cell_types"]["t_cell"]["markers"]
        assert set(description["regions"]) == set(REGIONS)
        assert sum(r["n_spots"] for r in description["regions"].values()) == N_SPOTS
        assert "CXCL9" in description["spatial_effects"]["ifn_near_tumour_border"]["genes"]


def test_cells_add_up_to_the_spot_truth(cohort: list[Path]) -> None:
    """Counting cells.csv within each 55 µm disc gives that spot's row of ground_truth.csv."""
    from scipy.spatial import cKDTree

    for sample_dir in cohort:
        cells = pd.read_csv(sample_dir / "cells.csv")
        assert list(cells.columns) == ["x", "y", "cell_type"]
        assert set(cells["cell_type"]) <= set(TYPE_NAMES) and len(set(cells["cell_type"])) >= 5
        truth = truth_of(sample_dir)
        mpp = json.loads((sample_dir / "ground_truth.json").read_text())["mpp"]
        radius_px = 55.0 / 2 / mpp
        near = cKDTree(cells[["x", "y"]].to_numpy()).query_ball_point(
            truth[["x", "y"]].to_numpy(float), r=radius_px
        )
        kind = cells["cell_type"].to_numpy()
        counts = np.array([[np.sum(kind[i] == t) for t in TYPE_NAMES] for i in near])
        np.testing.assert_array_equal(counts.sum(axis=1), truth["n_cells"])
        shares = counts / np.maximum(counts.sum(axis=1), 1)[:, None]
        np.testing.assert_allclose(shares, truth[list(TYPE_NAMES)].to_numpy(), atol=1e-5)
        # Cells lie between the spots too: most of the tissue is never measured.
        assert len(cells) > 1.5 * truth["n_cells"].sum()


def test_the_reference_holds_every_type_from_the_same_expression_model(
    cohort: list[Path], fullres: list[Sample]
) -> None:
    import anndata as ad
    import scipy.sparse as sp

    reference = ad.read_h5ad(cohort[0].parent / "reference.h5ad")
    labels = reference.obs["cell_type"].astype(str)
    assert labels.value_counts().reindex(list(TYPE_NAMES)).min() >= 10
    assert list(reference.var_names) == list(fullres[0].counts.var_names)
    raw = sp.csr_matrix(reference.X)
    assert raw.dtype.kind == "i" and raw.min() >= 0 and raw.sum() > 0
    # Each type's markers are highest in its own cells, and RNA per cell follows the catalogue.
    totals = np.asarray(raw.sum(axis=1)).ravel()
    genes = {g: i for i, g in enumerate(reference.var_names)}
    for cell_type in CELL_TYPES:
        own = (labels == cell_type.name).to_numpy()
        markers = raw[:, [genes[g] for g in cell_type.markers]].toarray().sum(axis=1)
        assert markers[own].mean() > 3 * markers[~own].mean(), cell_type.name
        assert abs(np.median(totals[own]) / cell_type.umi - 1) < 0.3, cell_type.name


def test_pyramid_levels_agree(cohort: list[Path], fullres: list[Sample]) -> None:
    slide = fullres[0].slide
    fine = slide.read_level(0, 1024, 1024, 1024, 1024)
    coarse = slide.read_level(1, 512, 512, 512, 512)
    reduced = np.asarray(Image.fromarray(fine).reduce(2)).astype(float)
    assert np.abs(reduced - coarse).mean() < 12  # drawn separately, nuclei at the same places


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 1.5}, "n_samples"),
        ({"n_spots": 5}, "n_spots"),
        ({"n_spots": True}, "n_spots"),
        ({"seed": -1}, "seed"),
        ({"n_genes": 10}, "n_genes"),
        ({"mpp": 0.01}, "mpp"),
        ({"mpp": float("nan")}, "mpp"),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, arguments: dict[str, object], fragment: str) -> None:
    kwargs: dict[str, object] = {"n_samples": 1, "n_spots": 20, "seed": 0, **arguments}
    with pytest.raises(InvalidParameterError, match=fragment) as error:
        write_synthetic_cohort(tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_raises(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("not a folder")
    with pytest.raises(InvalidParameterError, match="is a file"):
        write_synthetic_cohort(target, n_samples=1, n_spots=20, seed=0)


def test_progress_and_logging(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    messages: list[str] = []
    with caplog.at_level(logging.INFO, logger="tmescope.datasets"):
        write_synthetic_cohort(tmp_path, n_samples=2, n_spots=20, seed=0, progress=messages.append)
    assert [m.split(":")[0] for m in messages] == ["synth_00", "synth_01"]  # in turn: in order
    assert "(1 of 2), about" in messages[0] and "left" not in messages[1]
    assert sum("synth_01" in r.getMessage() for r in caplog.records) == 1


def test_the_sample_sheet_names_every_sample_two_sections_per_patient(cohort: list[Path]) -> None:
    root = cohort[0].parent
    text = (root / "samplesheet.csv").read_text(encoding="utf-8")
    assert text.splitlines() == [
        "sample,path,image,patient,section",
        "synth_00,synth_00,synth_00/synth_00_he.tif,patient_00,1",
        "synth_01,synth_01,synth_01/synth_01_he.tif,patient_00,2",
    ]
    sheet = read_samplesheet(root / "samplesheet.csv")  # relative to the sheet: it reads back
    assert [r.path for r in sheet.rows] == cohort
    assert [r.image for r in sheet.rows] == [p / f"{p.name}_he.tif" for p in cohort]
    assert not list(root.glob(".samplesheet*"))  # written whole, nothing left beside it


@pytest.mark.parametrize(
    ("n_samples", "patients"),
    [
        (1, [("patient_00", 1)]),
        (3, [("patient_00", 1), ("patient_00", 2), ("patient_01", 1)]),  # an odd last: alone
        (4, [("patient_00", 1), ("patient_00", 2), ("patient_01", 1), ("patient_01", 2)]),
    ],
)
def test_patients_pair_consecutive_sections(
    n_samples: int, patients: list[tuple[str, int]]
) -> None:
    assert [patient_of(i, n_samples=n_samples) for i in range(n_samples)] == patients
    assert patient_of(249, n_samples=250) == ("patient_124", 2)  # as many digits as needed


def test_default_workers_follow_the_thread_budget_and_the_cohort_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tmescope.cpus, "configured_threads", lambda: 3)
    assert _workers(None, n_samples=40, n_spots=4000) == 3  # the budget
    assert _workers(None, n_samples=4, n_spots=1000) == 2  # what 4,000 spots repay
    assert _workers(None, n_samples=2, n_spots=60) == 1  # too small to start a pool
    assert _workers(5, n_samples=2, n_spots=60) == 2  # never more than the samples
    with pytest.raises(InvalidParameterError, match="workers"):
        _workers(0, n_samples=2, n_spots=60)


def test_a_lost_worker_is_one_clear_error(tmp_path: Path) -> None:
    """A script without the main guard: its workers die starting, and the error says why."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from tmescope.datasets import write_synthetic_cohort\n"
        f"write_synthetic_cohort({str(tmp_path / 'out')!r}, n_samples=2, n_spots=10, seed=0, "
        "workers=2)\n"
    )
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tmescope.errors.WorkerLostError: a process writing")
    assert 'if __name__ == "__main__":' in last and "workers=1" in last


def test_public_name_is_lazy() -> None:
    assert tmescope.datasets.write_synthetic_cohort is write_synthetic_cohort
    assert "write_synthetic_cohort" in tmescope.datasets.__all__
    with pytest.raises(AttributeError):
        _ = tmescope.datasets.nope  # type: ignore[attr-defined]


def test_planted_immune_phenotypes_place_the_t_cells(tmp_path: Path) -> None:
    import json

    from tmescope.analysis.immune_phenotype import call_immune_phenotype

    plain = write_synthetic_cohort(tmp_path / "plain", n_samples=3, n_spots=150, seed=3)
    planted = write_synthetic_cohort(
        tmp_path / "planted", n_samples=3, n_spots=150, seed=3,
        phenotypes=["inflamed", "excluded", "desert"], sections_per_patient=1,
    )  # fmt: skip
    rows = read_samplesheet(tmp_path / "planted" / "samplesheet.csv").metadata()
    assert [rows[f"synth_0{i}"]["phenotype"] for i in range(3)] == ["inflamed", "excluded", "desert"]
    assert [rows[f"synth_0{i}"]["patient"] for i in range(3)] == [f"patient_0{i}" for i in range(3)]
    assert rows["synth_01"]["group"] == "excluded"
    assert "phenotype" not in read_samplesheet(tmp_path / "plain" / "samplesheet.csv").metadata_columns
    for kind, before, after in zip(("inflamed", "excluded", "desert"), plain, planted, strict=True):
        positions = "outs/spatial/tissue_positions.csv"
        assert (before / positions).read_bytes() == (after / positions).read_bytes()  # same tissue
        assert (before / "cells.csv").read_bytes() != (after / "cells.csv").read_bytes()
        cells = pd.read_csv(after / "cells.csv")
        call = call_immune_phenotype(
            cells[["x", "y"]].to_numpy(float) * 0.5,
            (cells["cell_type"] == "t_cell").to_numpy(float),
            (cells["cell_type"] == "tumour").to_numpy(float),
        )
        assert call.phenotype == kind, call
        truth = json.loads((after / "ground_truth.json").read_text())
        assert truth["immune_phenotype"]["name"] == kind


def test_unknown_phenotypes_are_refused(tmp_path: Path) -> None:
    never = tmp_path / "never"
    with pytest.raises(InvalidParameterError, match=r"unknown immune phenotype.*'hot'"):
        write_synthetic_cohort(never, n_samples=1, n_spots=20, seed=0, phenotypes=["hot"])
    assert not never.exists()
