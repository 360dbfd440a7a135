"""Cell-type proportions by NNLS against a synthetic single-cell reference."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tmescope.errors import (
    InputNotFoundError,
    InvalidParameterError,
    ReferenceDataError,
)
from tmescope.fusion.reference import (
    ReferenceProfiles,
    build_reference_profiles,
    cell_shares,
    deconvolve_nnls,
    deconvolve_poisson,
    load_reference,
)

N_GENES = 120
TYPES = ("fibroblast", "t_cell", "tumour")


def true_profiles(seed: int = 0) -> np.ndarray:
    """``(3, N_GENES)`` shares of each type's RNA: a shared background plus its own markers."""
    rng = np.random.default_rng(seed)
    profiles = rng.gamma(1.0, 1.0, (3, N_GENES)) * 0.2 + rng.gamma(1.0, 1.0, N_GENES)
    for t in range(3):
        profiles[t, t * 20 : t * 20 + 20] += 10.0  # each type's own 20 markers
    return profiles / profiles.sum(axis=1, keepdims=True)


def reference_adata(*, cells_per_type: int = 60, seed: int = 1) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    profiles = true_profiles()
    labels = np.repeat(TYPES, cells_per_type)
    depth = rng.integers(1500, 6000, labels.size)[:, None]
    shares = profiles[np.repeat(np.arange(3), cells_per_type)]
    counts = rng.poisson(depth * shares).astype(np.float32)
    order = rng.permutation(labels.size)  # mix the types up, as real references are
    obs = pd.DataFrame({"cell_type": labels[order], "batch": "b1"})
    obs.index = obs.index.astype(str)
    genes = pd.DataFrame(index=[f"GENE{g:03d}" for g in range(N_GENES)])
    return ad.AnnData(X=sp.csr_matrix(counts[order]), obs=obs, var=genes)


def test_profiles_are_per_type_means_of_normalised_cells() -> None:
    adata = reference_adata()
    reference = build_reference_profiles(adata, label_key="cell_type")
    assert reference.cell_types == TYPES and reference.n_cells == (60, 60, 60)
    assert reference.profiles.shape == (3, N_GENES) and reference.profiles.dtype == np.float32
    np.testing.assert_allclose(reference.profiles.sum(axis=1), 1e4, rtol=1e-4)
    # Close to the truth the cells were drawn from.
    np.testing.assert_allclose(reference.profiles / 1e4, true_profiles(), atol=2e-3)
    t_cells = adata.obs["cell_type"].to_numpy() == "t_cell"
    dense = adata.X.toarray()[t_cells]
    expected = (dense / dense.sum(axis=1, keepdims=True) * 1e4).mean(axis=0)
    np.testing.assert_allclose(reference.profiles[1], expected, rtol=1e-4)


def mixtures(reference: ReferenceProfiles, *, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Poisson spots drawn from known RNA shares of the true profiles, and those shares."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(3), n)
    mean = weights @ true_profiles() * rng.integers(4000, 10000, n)[:, None]
    return rng.poisson(mean).astype(np.int64), weights


def test_rna_shares_become_cell_shares_with_each_types_counts_per_cell() -> None:
    adata = reference_adata()
    reference = build_reference_profiles(adata, label_key="cell_type")
    library = np.asarray(adata.X.sum(axis=1)).ravel()
    labels = adata.obs["cell_type"].to_numpy()
    expected = [library[labels == t].mean() for t in TYPES]
    np.testing.assert_allclose(reference.counts_per_cell, expected, rtol=1e-6)
    # A spot of one tumour cell (3,000 counts) and three T cells (1,000 each): half its RNA is
    # tumour, a quarter of its cells are.
    shares = cell_shares(np.array([[0.0, 0.5, 0.5], [np.nan] * 3]), [2000.0, 1000.0, 3000.0])
    np.testing.assert_allclose(shares[0], [0.0, 0.75, 0.25])
    assert np.isnan(shares[1]).all()
    with pytest.raises(InvalidParameterError, match="counts_per_cell"):
        cell_shares(np.ones((1, 3)) / 3, [1.0, 0.0, 2.0])


def test_known_mixtures_are_recovered() -> None:
    reference = build_reference_profiles(reference_adata(), label_key="cell_type")
    counts, weights = mixtures(reference, n=40, seed=2)
    genes = [f"gene{g:03d}" for g in range(N_GENES)]  # lower case: matched regardless
    proportions, types = deconvolve_nnls(sp.csr_matrix(counts), genes, reference)
    assert types == TYPES
    assert proportions.shape == (40, 3) and proportions.dtype == np.float32
    np.testing.assert_allclose(proportions.sum(axis=1), 1.0, rtol=1e-5)
    assert (proportions >= 0).all()
    assert np.abs(proportions - weights).max() < 0.05


def test_poisson_likelihood_recovers_mixtures_closer_than_least_squares() -> None:
    reference = build_reference_profiles(reference_adata(), label_key="cell_type")
    # Shallow spots (300-800 counts): where weighting each count by its noise matters.
    rng = np.random.default_rng(5)
    weights = rng.dirichlet(np.ones(3), 200)
    counts = rng.poisson(weights @ true_profiles() * rng.integers(300, 800, 200)[:, None])
    counts[0] = 0  # a spot with nothing on the shared genes
    genes = [f"GENE{g:03d}" for g in range(N_GENES)]
    poisson, types = deconvolve_poisson(sp.csr_matrix(counts), genes, reference)
    nnls_fit, _ = deconvolve_nnls(sp.csr_matrix(counts), genes, reference)
    assert types == TYPES and poisson.shape == (200, 3) and np.isnan(poisson[0]).all()
    np.testing.assert_allclose(poisson[1:].sum(axis=1), 1.0, rtol=1e-5)
    error = np.abs(poisson[1:] - weights[1:]).mean()
    assert error < 0.05 and error < np.abs(nnls_fit[1:] - weights[1:]).mean()
    with pytest.raises(ReferenceDataError, match="share 10 genes"):
        deconvolve_poisson(counts[:, :10], genes[:10], reference)


def test_gene_sensitivities_absorb_a_platform_shift() -> None:
    """Spots whose genes are captured with other efficiencies than the reference's (a lognormal
    factor per gene, the same in every spot): the shares stay close with the factors estimated,
    and closer than without them."""
    reference = build_reference_profiles(reference_adata(), label_key="cell_type")
    rng = np.random.default_rng(8)
    weights = rng.dirichlet(np.ones(3), 300)
    shifted = true_profiles() * rng.lognormal(0.0, 0.6, N_GENES)
    shifted /= shifted.sum(axis=1, keepdims=True)
    counts = rng.poisson(weights @ shifted * 2000)
    genes = [f"GENE{g:03d}" for g in range(N_GENES)]
    fitted, _ = deconvolve_poisson(sp.csr_matrix(counts), genes, reference)
    plain, _ = deconvolve_poisson(sp.csr_matrix(counts), genes, reference, gene_sensitivity=False)
    error, plain_error = np.abs(fitted - weights).mean(), np.abs(plain - weights).mean()
    assert error < 0.05 and error < 0.8 * plain_error


def test_spot_gene_order_and_extra_genes_do_not_matter() -> None:
    reference = build_reference_profiles(reference_adata(), label_key="cell_type")
    counts, weights = mixtures(reference, n=10, seed=3)
    perm = np.random.default_rng(0).permutation(N_GENES)
    extra = np.random.default_rng(1).poisson(50, (10, 5))
    shuffled = np.hstack([counts[:, perm], extra])
    genes = [f"GENE{g:03d}" for g in perm] + [f"OTHER{i}" for i in range(5)]
    proportions, _ = deconvolve_nnls(shuffled, genes, reference)
    straight, _ = deconvolve_nnls(counts, [f"GENE{g:03d}" for g in range(N_GENES)], reference)
    np.testing.assert_allclose(proportions, straight, atol=1e-5)
    assert np.abs(proportions - weights).max() < 0.05


def test_empty_spots_get_nan_rows() -> None:
    reference = build_reference_profiles(reference_adata(), label_key="cell_type")
    counts, _ = mixtures(reference, n=4, seed=4)
    counts[2] = 0
    proportions, _ = deconvolve_nnls(counts, [f"GENE{g:03d}" for g in range(N_GENES)], reference)
    assert np.isnan(proportions[2]).all()
    assert np.isfinite(np.delete(proportions, 2, axis=0)).all()


def test_too_few_shared_genes_is_an_error() -> None:
    reference = build_reference_profiles(reference_adata(), label_key="cell_type")
    genes = [f"ENSG{g:011d}" for g in range(N_GENES - 30)] + [f"GENE{g:03d}" for g in range(30)]
    counts = np.ones((3, N_GENES))
    with pytest.raises(ReferenceDataError, match=r"share 30 genes.*look like ENSG00000000000"):
        deconvolve_nnls(counts, genes, reference)
    proportions, _ = deconvolve_nnls(counts, genes, reference, min_shared_genes=30)
    assert proportions.shape == (3, 3)
    with pytest.raises(InvalidParameterError, match=r"\(n_spots, 119\)"):
        deconvolve_nnls(counts, genes[:-1], reference)


def test_missing_label_key_lists_the_keys_there() -> None:
    with pytest.raises(
        ReferenceDataError, match=r"no cell-type column 'celltype'.*cell_type, batch"
    ):
        build_reference_profiles(reference_adata(), label_key="celltype")


def test_types_with_too_few_cells_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    adata = reference_adata(cells_per_type=12)
    adata.obs.loc[adata.obs.index[:3], "cell_type"] = "rare"
    with caplog.at_level(logging.WARNING, logger="tmescope.fusion.reference"):
        reference = build_reference_profiles(adata, label_key="cell_type")
    assert "rare" not in reference.cell_types and "'rare': 3" in caplog.text
    with pytest.raises(ReferenceDataError, match="need at least 2 cell types with >= 40 cells"):
        build_reference_profiles(adata, label_key="cell_type", min_cells=40)


def test_non_count_matrices_are_refused_and_layers_used() -> None:
    adata = reference_adata()
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    with pytest.raises(ReferenceDataError, match=r"raw counts.*layer="):
        build_reference_profiles(adata, label_key="cell_type")
    reference = build_reference_profiles(adata, label_key="cell_type", layer="counts")
    assert reference.cell_types == TYPES
    with pytest.raises(ReferenceDataError, match=r"no layer 'raw'.*counts"):
        build_reference_profiles(adata, label_key="cell_type", layer="raw")


def test_load_reference_reads_h5ad_and_reports_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "ref.h5ad"
    reference_adata().write_h5ad(path)
    reference = load_reference(path, label_key="cell_type")
    assert reference.cell_types == TYPES and len(reference.genes) == N_GENES
    with pytest.raises(InputNotFoundError, match="does not exist"):
        load_reference(tmp_path / "none.h5ad", label_key="cell_type")
    junk = tmp_path / "junk.h5ad"
    junk.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ReferenceDataError, match=r"cannot read .*junk\.h5ad"):
        load_reference(junk, label_key="cell_type")


def test_reduced_problem_gives_the_full_least_squares_solution() -> None:
    """The QR shortcut must match NNLS on all shared genes, spot by spot."""
    from scipy.optimize import nnls

    reference = build_reference_profiles(reference_adata(), label_key="cell_type")
    counts, _ = mixtures(reference, n=6, seed=5)
    counts[:, 40:60] = 0  # tumour markers gone: the fit must sit on the boundary x_tumour = 0
    proportions, _ = deconvolve_nnls(counts, [f"GENE{g:03d}" for g in range(N_GENES)], reference)
    basis = (reference.profiles / reference.profiles.sum(axis=1, keepdims=True)).T
    for i in range(6):
        full, _ = nnls(basis.astype(np.float64), counts[i] / counts[i].sum())
        np.testing.assert_allclose(proportions[i], full / full.sum(), atol=1e-5)
