"""Matrix Market folders written by R, as found in the wild: ``matrix.mtx.gz``,
``barcodes.tsv.gz`` and ``features.tsv.gz`` that are plain text despite their names, labels in
double quotes, counts as ``real``. They read as the same AnnData as the run's HDF5 matrix, and a
Space Ranger folder holding only such a matrix reads whole, through the CLI too."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from factories import write_visium
from tmescope.io.counts import describe_disagreement, read_10x_h5, read_10x_mtx
from tmescope.io.counts_mtx import GZIP_MAGIC
from tmescope.io.layout import locate_spaceranger_files


def write_r_mtx(
    folder: Path,
    counts: sp.spmatrix,
    *,
    barcodes: Sequence[str],
    gene_ids: Sequence[str],
    gene_names: Sequence[str],
) -> Path:
    """What ``Matrix::writeMM`` and ``write.table(quote = TRUE)`` leave, named as 10x names
    gzipped files (``counts``: barcodes × genes)."""
    folder.mkdir(parents=True, exist_ok=True)
    coo = sp.coo_matrix(sp.csr_matrix(counts).T)  # features × barcodes on disk
    lines = [
        "%%MatrixMarket matrix coordinate real general",
        f"{coo.shape[0]} {coo.shape[1]} {coo.nnz}",
        *(f"{r + 1} {c + 1} {v:g}" for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)),
    ]
    (folder / "matrix.mtx.gz").write_text("\n".join(lines) + "\n")
    (folder / "barcodes.tsv.gz").write_text("".join(f'"{b}"\n' for b in barcodes))
    (folder / "features.tsv.gz").write_text(
        "".join(
            f'"{i}"\t"{n}"\t"Gene Expression"\n' for i, n in zip(gene_ids, gene_names, strict=True)
        )
    )
    return folder


def write_r_mtx_like(folder: Path, adata: ad.AnnData) -> Path:
    return write_r_mtx(
        folder,
        adata.X,
        barcodes=adata.obs_names.tolist(),
        gene_ids=adata.var["gene_ids"].tolist(),
        gene_names=adata.var["gene_symbols"].tolist(),
    )


def assert_same_anndata(a: ad.AnnData, b: ad.AnnData) -> None:
    assert describe_disagreement(a, b) is None
    assert a.var_names.tolist() == b.var_names.tolist()
    assert a.var["gene_symbols"].tolist() == b.var["gene_symbols"].tolist()
    assert a.X.dtype == b.X.dtype == np.float32


def test_the_files_are_plain_text_named_gz(tmp_path: Path) -> None:
    """The fixture is what we claim: no gzip magic, quotes around the labels."""
    folder = write_r_mtx(
        tmp_path, sp.csr_matrix(np.eye(2)), barcodes=["A-1", "C-1"], gene_ids=["G1", "G2"],
        gene_names=["g1", "g2"],
    )  # fmt: skip
    for name in ("matrix.mtx.gz", "barcodes.tsv.gz", "features.tsv.gz"):
        assert not (folder / name).read_bytes().startswith(GZIP_MAGIC)
    assert (folder / "barcodes.tsv.gz").read_text().startswith('"A-1"')


def test_synthetic_r_written_folder_reads_as_the_h5(tmp_path: Path) -> None:
    run = write_visium(tmp_path, matrix=("h5",), n_genes=15, seed=3)
    from_h5 = read_10x_h5(run.outs / "filtered_feature_bc_matrix.h5")
    from_r = read_10x_mtx(write_r_mtx_like(tmp_path / "r_mtx", from_h5))
    assert_same_anndata(from_h5, from_r)
    assert from_r.obs_names.tolist() == run.barcodes  # quotes stripped


@pytest.mark.realdata
def test_heart_r_written_folder_reads_as_its_h5(heart_dir: Path, tmp_path: Path) -> None:
    from_h5 = read_10x_h5(heart_dir / "filtered_feature_bc_matrix.h5")
    from_r = read_10x_mtx(write_r_mtx_like(tmp_path / "filtered_feature_bc_matrix", from_h5))
    assert from_r.shape == (100, 100)
    assert_same_anndata(from_h5, from_r)


@pytest.mark.realdata
def test_heart_folder_with_only_the_r_written_matrix(heart_dir: Path, tmp_path: Path) -> None:
    """spatial/ copied, no HDF5 beside: the layout finds the Matrix Market folder and
    ``tmescope info --json`` reports the heart's 100 spots and 100 genes."""
    folder = tmp_path / "heart_r"
    shutil.copytree(heart_dir / "spatial", folder / "spatial")
    write_r_mtx_like(
        folder / "filtered_feature_bc_matrix",
        read_10x_h5(heart_dir / "filtered_feature_bc_matrix.h5"),
    )
    layout = locate_spaceranger_files(folder)
    assert layout.h5 is None
    assert layout.mtx_dir == folder / "filtered_feature_bc_matrix"
    result = subprocess.run(
        [sys.executable, "-m", "tmescope", "info", str(folder), "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["n_spots"], summary["n_genes"]) == (100, 100)


def test_an_r_written_all_zero_matrix_reads_as_no_counts(tmp_path: Path) -> None:
    """R's writeMM writes an all-zero matrix as 'coordinate pattern symmetric' with no entries
    (as in a real R-written Visium HD subset): a valid, empty count matrix, read as zeros with a
    warning; a pattern matrix that has entries is still refused (it holds no counts)."""
    from tmescope.errors import CountsFormatError, TmescopeWarning

    folder = write_r_mtx(
        tmp_path / "zero", sp.csr_matrix((3, 2)), barcodes=["A-1", "B-1", "C-1"],
        gene_ids=["G1", "G2"], gene_names=["g1", "g2"],
    )  # fmt: skip
    (folder / "matrix.mtx.gz").write_text("%%MatrixMarket matrix coordinate pattern symmetric\n2 3 0\n")
    with pytest.warns(TmescopeWarning, match="no entries"):
        adata = read_10x_mtx(folder)
    assert adata.shape == (3, 2) and adata.X.nnz == 0 and adata.X.dtype == np.float32
    assert adata.obs_names.tolist() == ["A-1", "B-1", "C-1"]
    (folder / "matrix.mtx.gz").write_text(
        "%%MatrixMarket matrix coordinate pattern general\n2 3 1\n1 2\n"
    )
    with pytest.raises(CountsFormatError, match="pattern general' matrix with 1 entries"):
        read_10x_mtx(folder)
    (folder / "matrix.mtx.gz").write_text(
        "%%MatrixMarket matrix coordinate integer general\n2 3 0\n1 2 4\n"
    )
    with pytest.raises(CountsFormatError, match="declares 0 counts but holds entries"):
        read_10x_mtx(folder)
