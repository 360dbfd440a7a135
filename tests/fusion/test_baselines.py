"""Baselines: the HEST probe as published, a CV-tuned ridge, an MLP; none learns from test rows."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from tmescope.errors import InvalidParameterError, TrainingDataError
from tmescope.fusion.baselines import (
    ExpressionBaseline,
    HestRidgeProbe,
    SpotMLP,
    TunedRidgeProbe,
    _fit_scaled_pca,
    _validation_rows,
)
from tmescope.fusion.metrics import mean_pearson, pearson_per_gene


def _cohort(
    seed: int = 0, *, n: int = 1200, d: int = 300, g: int = 6, noise: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings (n, d) with a decaying spectrum and offsets, log1p-like targets, 4 groups."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, d)) * 0.98 ** np.arange(d)  # distinct PCA eigenvalues
    X = latent @ np.linalg.qr(rng.normal(size=(d, d)))[0] * rng.uniform(0.5, 3, d) + 10
    signal = latent[:, : min(d, 20)]
    Y = 2.0 + signal @ rng.normal(size=(signal.shape[1], g)) * 0.3 + noise * rng.normal(size=(n, g))
    return X.astype(np.float32), Y.astype(np.float32), np.repeat(np.arange(4), n // 4)


@pytest.fixture(autouse=True)
def one_blas_thread() -> Iterator[None]:
    """Other jobs share this machine's cores: multi-threaded BLAS then waits in barriers."""
    with threadpool_limits(1):
        yield


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny MLP steps on 2 shared, busy cores spend most of their time in thread barriers."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_hest_probe_is_the_published_pipeline() -> None:
    # 400 dims: sklearn's PCA takes its seeded randomized solver, as on real embeddings
    X, Y, _ = _cohort(d=400)
    probe = HestRidgeProbe().fit(X[:900], Y[:900])
    pipeline = make_pipeline(StandardScaler(), PCA(n_components=256, random_state=1))
    Z = pipeline.fit_transform(X[:900]).astype(np.float32)
    alpha = 100 / (256 * 6)
    ridge = Ridge(
        alpha=alpha, solver="lsqr", fit_intercept=False, max_iter=1000, random_state=1
    ).fit(Z, Y[:900])
    expected = ridge.predict(pipeline.transform(X[900:]).astype(np.float32))
    predicted = probe.predict(X[900:])
    assert predicted.dtype == np.float32 and predicted.shape == (300, 6)
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-5)
    assert probe.alpha_ == pytest.approx(alpha)
    assert np.all(probe.ridge_.intercept_ == 0)  # no intercept, as published


def test_hest_probe_caps_components_at_the_data() -> None:
    X, Y, _ = _cohort(n=120, d=40)
    probe = HestRidgeProbe().fit(X, Y)
    assert probe.pipeline_[-1].n_components_ == 40
    assert probe.alpha_ == pytest.approx(100 / (40 * 6))


def test_scaled_pca_equals_sklearn() -> None:
    X, _, _ = _cohort(n=1500)
    projection, Z = _fit_scaled_pca(X)
    expected = make_pipeline(StandardScaler(), PCA(256, svd_solver="full")).fit(
        X.astype(np.float64)
    )
    reference = expected.transform(X.astype(np.float64))
    np.testing.assert_allclose(Z, reference, atol=2e-3 * np.abs(reference).max())
    np.testing.assert_allclose(projection.transform(X[:10]), Z[:10], atol=1e-5)


@pytest.mark.parametrize("grouped", [True, False])
def test_tuned_probe_picks_the_alpha_gridsearchcv_picks(grouped: bool) -> None:
    X, Y, groups = _cohort()
    probe = TunedRidgeProbe().fit(X, Y, groups=groups if grouped else None)
    Z = probe.projection_.transform(X).astype(np.float64)
    search = GridSearchCV(
        Ridge(), {"alpha": probe.alphas_}, cv=GroupKFold(4) if grouped else KFold(5)
    ).fit(Z, Y.astype(np.float64), groups=groups if grouped else None)
    np.testing.assert_allclose(probe.cv_scores_, search.cv_results_["mean_test_score"], atol=1e-9)
    assert probe.alpha_ == search.best_params_["alpha"]


def test_tuned_probe_is_sklearn_ridge_at_its_alpha() -> None:
    X, Y, groups = _cohort()
    probe = TunedRidgeProbe().fit(X[:900], Y[:900], groups=groups[:900])
    ridge = Ridge(alpha=probe.alpha_).fit(probe.projection_.transform(X[:900]), Y[:900])
    expected = ridge.predict(probe.projection_.transform(X[900:]))
    np.testing.assert_allclose(probe.predict(X[900:]), expected, rtol=1e-5, atol=1e-5)
    assert probe.alpha_ in probe.alphas_


def test_tuned_probe_penalises_noisy_targets_more() -> None:
    X, clean, groups = _cohort(noise=0.05)
    _, noisy, _ = _cohort(noise=3.0)
    clean_alpha = TunedRidgeProbe().fit(X, clean, groups=groups).alpha_
    noisy_alpha = TunedRidgeProbe().fit(X, noisy, groups=groups).alpha_
    assert noisy_alpha > 10 * clean_alpha


def test_tuned_probe_beats_the_untuned_hest_probe_on_noisy_data() -> None:
    X, Y, groups = _cohort(n=800, noise=2.0)
    train, test = slice(0, 600), slice(600, None)
    tuned = TunedRidgeProbe().fit(X[train], Y[train], groups=groups[train]).predict(X[test])
    hest = HestRidgeProbe().fit(X[train], Y[train]).predict(X[test])
    assert mean_pearson(pearson_per_gene(Y[test], tuned)) > mean_pearson(
        pearson_per_gene(Y[test], hest)
    )


def test_tuned_probe_refuses_bad_grids() -> None:
    with pytest.raises(InvalidParameterError, match="positive penalties"):
        TunedRidgeProbe(alphas=np.array([1.0, -1.0]))
    with pytest.raises(InvalidParameterError, match="n_splits must be at least 2"):
        TunedRidgeProbe(n_splits=1)


def _quick_mlp() -> SpotMLP:
    return SpotMLP(max_epochs=3, hidden=32, seed=0)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("make", [HestRidgeProbe, TunedRidgeProbe, _quick_mlp])
def test_prediction_learns_nothing_from_test_rows(make: type[ExpressionBaseline]) -> None:
    X, Y, groups = _cohort(n=800, d=60)
    train, test = slice(0, 600), slice(600, None)
    model = make().fit(X[train], Y[train], groups=groups[train])
    fitted = pickle.dumps(model)
    alone = model.predict(X[test])
    # a row's prediction does not depend on the other rows predicted with it
    shuffled = np.random.default_rng(0).permutation(200)
    together = model.predict(np.concatenate([X[test][shuffled], X[train]]))[:200]
    np.testing.assert_allclose(together, alone[shuffled], rtol=1e-5, atol=1e-5)
    assert pickle.dumps(model) == fitted  # predicting changed no fitted state
    refit = make().fit(X[train], Y[train], groups=groups[train])
    np.testing.assert_array_equal(refit.predict(X[test]), alone)


@pytest.mark.usefixtures("one_torch_thread")
def test_mlp_learns_a_nonlinear_function() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 16)).astype(np.float32)
    Y = np.stack([np.sin(2 * X[:, 0]) + X[:, 1] ** 2, np.tanh(X[:, 2] * X[:, 3])], axis=1)
    Y = (Y + 0.1 * rng.normal(size=Y.shape)).astype(np.float32)
    groups = np.repeat(np.arange(5), 600)
    mlp = SpotMLP(max_epochs=60, seed=0).fit(X[:3000], Y[:3000], groups=groups)
    r = pearson_per_gene(Y[3000:], mlp.predict(X[3000:]))
    assert (r > 0.8).all(), r
    # a linear probe cannot: x1² and tanh(x2·x3) are uncorrelated with every input
    ridge = TunedRidgeProbe().fit(X[:3000], Y[:3000], groups=groups)
    assert (pearson_per_gene(Y[3000:], ridge.predict(X[3000:])) < 0.3).all()


@pytest.mark.usefixtures("one_torch_thread")
def test_mlp_is_deterministic_for_a_seed_and_leaves_torch_rng_alone() -> None:
    import torch

    X, Y, groups = _cohort(n=600, d=40)
    state = torch.get_rng_state()
    first = SpotMLP(max_epochs=3, seed=7).fit(X, Y, groups=groups).predict(X)
    second = SpotMLP(max_epochs=3, seed=7).fit(X, Y, groups=groups).predict(X)
    other = SpotMLP(max_epochs=3, seed=8).fit(X, Y, groups=groups).predict(X)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)
    assert torch.equal(torch.get_rng_state(), state)


def test_validation_rows_hold_out_whole_groups() -> None:
    groups = np.repeat(np.array(["a", "b", "c", "d", "e"]), 10)
    val = _validation_rows(groups, 50, seed=0)
    held = set(groups[val])
    assert len(held) == 1 and val.sum() == 10  # all spots of one of five groups
    assert not held & set(groups[~val])
    spots = _validation_rows(None, 50, seed=0)
    assert spots.sum() == 5
    assert _validation_rows(np.zeros(50), 50, seed=0).sum() == 5  # one group: spots


@pytest.mark.parametrize("model", [HestRidgeProbe(), TunedRidgeProbe(), SpotMLP()])
def test_bad_training_data_is_refused(model: ExpressionBaseline) -> None:
    X, Y, _ = _cohort(n=40, d=8)
    with pytest.raises(TrainingDataError, match=r"one row per spot.*\(40, 8\) and \(39, 6\)"):
        model.fit(X, Y[:39])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(TrainingDataError, match="embeddings hold NaN"):
        model.fit(bad, Y)
    with pytest.raises(TrainingDataError, match=r"groups must name the sample of each spot"):
        model.fit(X, Y, groups=np.zeros(10))
    with pytest.raises(NotFittedError, match="call fit first"):
        model.predict(X)


def test_predicting_other_embeddings_is_refused() -> None:
    X, Y, _ = _cohort(n=40, d=8)
    probe = TunedRidgeProbe().fit(X, Y)
    with pytest.raises(
        TrainingDataError, match=r"fitted on embeddings of 8 dims; found shape \(40, 9\)"
    ):
        probe.predict(np.zeros((40, 9), dtype=np.float32))


def test_importing_baselines_loads_no_torch() -> None:
    code = "import sys, tmescope.fusion.baselines; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
