"""Count matrices: 10x HDF5 (with and without root attributes, legacy v2) and Matrix Market."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from factories import barcode, gene_table, random_counts, write_counts
from tmescope.errors import CountsFormatError
from tmescope.io.counts import describe_disagreement, read_10x_h5, read_10x_mtx

N_SPOTS, N_GENES = 15, 9
ALL_FORMATS = ["h5", "h5_no_attrs", "h5_legacy", "mtx_gz", "mtx", "mtx_genes_tsv"]


def written(
    tmp_path: Path, fmt: str, counts: sp.csr_matrix | None = None, **genes: list[str]
) -> Path:
    counts = random_counts(N_SPOTS, N_GENES, seed=1) if counts is None else counts
    gene_ids, gene_names = gene_table(counts.shape[1])
    args = {
        "barcodes": [barcode(i) for i in range(counts.shape[0])],
        "gene_ids": gene_ids,
        "gene_names": gene_names,
    } | genes
    return write_counts(tmp_path, counts, fmt=fmt, **args)


def read(path: Path):
    return read_10x_h5(path) if path.suffix == ".h5" else read_10x_mtx(path)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_every_format_reads_the_same_matrix(tmp_path: Path, fmt: str) -> None:
    counts = random_counts(N_SPOTS, N_GENES, seed=1)
    adata = read(written(tmp_path, fmt, counts))
    gene_ids, gene_names = gene_table(N_GENES)
    assert adata.shape == (N_SPOTS, N_GENES)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), counts.toarray())
    assert adata.obs_names.tolist() == [barcode(i) for i in range(N_SPOTS)]
    assert adata.var_names.tolist() == gene_names
    assert adata.var["gene_ids"].tolist() == gene_ids
    assert set(adata.var["feature_types"]) == {"Gene Expression"}


def test_mtx_folder_layouts(tmp_path: Path) -> None:
    assert sorted(p.name for p in written(tmp_path / "a", "mtx_gz").iterdir()) == [
        "barcodes.tsv.gz",
        "features.tsv.gz",
        "matrix.mtx.gz",
    ]
    assert sorted(p.name for p in written(tmp_path / "b", "mtx").iterdir()) == [
        "barcodes.tsv",
        "features.tsv",
        "matrix.mtx",
    ]
    # Cell Ranger 2 wrote genes.tsv (id, name) uncompressed
    assert sorted(p.name for p in written(tmp_path / "c", "mtx_genes_tsv").iterdir()) == [
        "barcodes.tsv",
        "genes.tsv",
        "matrix.mtx",
    ]


def test_h5_root_attributes_become_metadata(tmp_path: Path) -> None:
    meta = read_10x_h5(written(tmp_path, "h5")).uns["10x_metadata"]
    assert meta == {
        "software_version": "spaceranger-synthetic",
        "chemistry_description": "Visium Spatial Gene Expression",
        "library_ids": ["lib1"],
        "filetype": "matrix",
    }


@pytest.mark.parametrize("fmt", ["h5_no_attrs", "h5_legacy"])
def test_h5_without_root_attributes(tmp_path: Path, fmt: str) -> None:
    """Files rewritten by other tools (or Cell Ranger 2) have no root attributes: still a matrix."""
    path = written(tmp_path, fmt)
    with h5py.File(path) as f:
        assert not f.attrs.keys()
    assert read_10x_h5(path).uns["10x_metadata"] == {}


def test_legacy_h5_keeps_its_genome(tmp_path: Path) -> None:
    adata = read_10x_h5(written(tmp_path, "h5_legacy"))
    assert set(adata.var["genome"]) == {"GRCh38"}


def test_legacy_h5_with_two_genomes_is_refused(tmp_path: Path) -> None:
    path = written(tmp_path, "h5_legacy")
    with h5py.File(path, "a") as f:
        f.copy("GRCh38", "mm10")
    with pytest.raises(CountsFormatError, match="2 genome groups"):
        read_10x_h5(path)


def test_non_gene_features_are_dropped(tmp_path: Path) -> None:
    path = written(tmp_path, "h5")
    with h5py.File(path, "a") as f:
        types = f["matrix/features/feature_type"]
        kinds = [b"Gene Expression"] * (N_GENES - 2) + [
            b"Antibody Capture",
            b"CRISPR Guide Capture",
        ]
        types[...] = np.array(kinds, dtype=types.dtype)
    adata = read_10x_h5(path)
    assert adata.n_vars == N_GENES - 2
    assert adata.var_names.tolist() == gene_table(N_GENES)[1][: N_GENES - 2]


@pytest.mark.filterwarnings("error:Variable names are not unique:UserWarning")
def test_duplicate_gene_symbols_are_made_unique(tmp_path: Path) -> None:
    ids, _ = gene_table(3)
    path = written(
        tmp_path, "mtx_gz", random_counts(4, 3), gene_names=["TP53", "TP53", "MYC"], gene_ids=ids
    )
    adata = read_10x_mtx(path)
    assert adata.var_names.is_unique
    assert adata.var["gene_symbols"].tolist() == ["TP53", "TP53", "MYC"]


def test_a_spot_with_no_counts_is_kept(tmp_path: Path) -> None:
    counts = random_counts(5, 4).tolil()
    counts[2, :] = 0
    for fmt in ("h5", "mtx"):
        adata = read(written(tmp_path / fmt, fmt, counts.tocsr()))
        assert adata.n_obs == 5 and adata.X[2].nnz == 0


# --------------------------------------------------------------------------------------------
# Two matrices of one sample


def test_describe_disagreement(tmp_path: Path) -> None:
    counts = random_counts(N_SPOTS, N_GENES, seed=1)
    h5 = read_10x_h5(written(tmp_path, "h5", counts))
    assert describe_disagreement(h5, read_10x_mtx(written(tmp_path, "mtx_gz", counts))) is None

    other = counts.copy()
    other.data[0] += 1
    assert (
        describe_disagreement(h5, read_10x_mtx(written(tmp_path / "c", "mtx", other)))
        == "counts differ"
    )
    fewer = read_10x_mtx(written(tmp_path / "s", "mtx", counts[:-1]))
    assert "shapes differ" in describe_disagreement(h5, fewer)
    renamed = read_10x_mtx(
        written(tmp_path / "b", "mtx", counts, barcodes=[f"X{i}" for i in range(N_SPOTS)])
    )
    assert describe_disagreement(h5, renamed) == "barcodes differ"
    ids = [f"ENSMUSG{i}" for i in range(N_GENES)]
    regened = read_10x_mtx(written(tmp_path / "g", "mtx", counts, gene_ids=ids))
    assert describe_disagreement(h5, regened) == "features differ"


# --------------------------------------------------------------------------------------------
# Broken matrices (more in test_bad_input.py)


@pytest.mark.parametrize(
    ("dataset", "value", "problem"),
    [
        ("matrix/shape", np.array([N_GENES, N_SPOTS + 1], np.int32), "barcodes for shape"),
        ("matrix/shape", np.array([N_GENES + 1, N_SPOTS], np.int32), "features for shape"),
        ("matrix/indptr", np.zeros(N_SPOTS + 1, np.int64), "do not fit together"),
        ("matrix/shape", np.array([N_GENES, N_SPOTS, 1], np.int32), r"shape is \[9, 15, 1\]"),
        ("matrix/shape", np.int32(N_GENES), r"shape is \[9\]; expected two numbers"),
    ],
)
def test_inconsistent_h5(tmp_path: Path, dataset: str, value: np.ndarray, problem: str) -> None:
    path = written(tmp_path, "h5")
    with h5py.File(path, "a") as f:
        del f[dataset]
        f[dataset] = value
    with pytest.raises(CountsFormatError, match=problem) as info:
        read_10x_h5(path)
    assert isinstance(info.value, ValueError)


def test_h5_feature_index_out_of_range(tmp_path: Path) -> None:
    path = written(tmp_path, "h5")
    with h5py.File(path, "a") as f:
        indices = f["matrix/indices"]
        indices[0] = N_GENES + 5
    with pytest.raises(CountsFormatError, match="out of range"):
        read_10x_h5(path)


@pytest.mark.parametrize("missing", ["barcodes.tsv.gz", "features.tsv.gz", "matrix.mtx.gz"])
def test_mtx_folder_missing_a_file(tmp_path: Path, missing: str) -> None:
    folder = written(tmp_path, "mtx_gz")
    (folder / missing).unlink()
    with pytest.raises(CountsFormatError, match=missing.split(".")[0]) as info:
        read_10x_mtx(folder)
    assert isinstance(info.value, ValueError)


def test_mtx_with_wrong_barcode_count(tmp_path: Path) -> None:
    folder = written(tmp_path, "mtx")
    lines = (folder / "barcodes.tsv").read_text().splitlines()
    (folder / "barcodes.tsv").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(CountsFormatError, match=f"{N_SPOTS - 2} barcodes"):
        read_10x_mtx(folder)


def test_truncated_gzip_matrix(tmp_path: Path) -> None:
    folder = written(tmp_path, "mtx_gz", random_counts(200, 50, density=0.9))
    data = (folder / "matrix.mtx.gz").read_bytes()
    (folder / "matrix.mtx.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CountsFormatError, match="could not read the Matrix Market folder"):
        read_10x_mtx(folder)


def test_features_with_one_column(tmp_path: Path) -> None:
    folder = written(tmp_path, "mtx")
    ids = [line.split("\t")[0] for line in (folder / "features.tsv").read_text().splitlines()]
    (folder / "features.tsv").write_text("\n".join(ids) + "\n")
    with pytest.raises(CountsFormatError, match="1 column"):
        read_10x_mtx(folder)
