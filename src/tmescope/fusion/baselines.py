"""Per-spot baselines a spatial head must beat: the HEST ridge probe, a tuned ridge, an MLP.

Each baseline has ``fit(X, Y, *, groups=None) -> self`` and ``predict(X) -> (n, g) float32``
on embeddings ``X`` (n, d) and targets ``Y`` (n, g). Every preprocessing step (standardisation,
PCA, target scaling) is fitted inside ``fit`` on the rows given, so nothing is learned from the
rows later passed to ``predict``. ``groups`` (n,) names each spot's sample (or patient): the
tuned probe cross-validates and the MLP early-stops over whole groups.

The smoothed-embedding ridge of the HEST notes (§2.4: tell gains of attention from gains of
plain neighbour averaging) is no class of its own: it is :class:`TunedRidgeProbe` fitted on
``fusion.graph.neighbour_mean(X, graph)`` of each sample's own spot graph (test samples too:
averaging uses embeddings only, no expression), so one definition of "neighbours" serves the
head and its baseline.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

import numpy as np
from scipy.linalg import eigh
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from tmescope.errors import InvalidParameterError, TrainingDataError
from tmescope.fusion.folds import inner_validation_split

if TYPE_CHECKING:
    from torch import nn

__all__ = ["PCA_DIMS", "ExpressionBaseline", "HestRidgeProbe", "SpotMLP", "TunedRidgeProbe"]

logger = logging.getLogger(__name__)

PCA_DIMS = 256
# Penalties tried by TunedRidgeProbe, in units of the mean variance of the PCA features: the
# optimal ridge penalty is noise variance / weight variance, which scales with feature variance
# (not with the number of spots). HEST's CV optimum (~5000, PR #140) is ~10³ in these units.
RELATIVE_ALPHAS = np.logspace(-3, 6, 19)
_CHUNK = 16384  # rows per block in passes over embeddings


class ExpressionBaseline(Protocol):
    """What training and evaluation code needs of a baseline."""

    def fit(self, X: np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None) -> Self: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


class HestRidgeProbe:
    """The HEST-Benchmark probe as published (mahmoodlab/HEST ``benchmark.py``, ``trainer.py``).

    ``StandardScaler → PCA(min(256, n, d), random_state=seed)`` → features cast to float32
    (HEST wraps them in ``torch.Tensor``) → ``Ridge(solver="lsqr", fit_intercept=False,
    alpha=100 / (k·g), max_iter=1000, random_state=seed)`` with k PCA dims and g targets; HEST's
    ``--seed`` defaults to 1 (it matters: sklearn's PCA picks a randomized solver for 1536-dim
    embeddings). It has **no intercept** although the targets (log1p expression) are not
    centred; that and its tiny penalty (α ≈ 0.008, orders of magnitude under the CV optimum)
    are reproduced on purpose, so that scores compare with the HEST leaderboard. Use
    :class:`TunedRidgeProbe` as the fair bar.
    """

    def __init__(self, *, seed: int = 1) -> None:
        self.seed = seed

    def fit(self, X: np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None) -> Self:
        """Fit on (n, d) embeddings and (n, g) targets; ``groups`` is ignored (no inner CV)."""
        X, Y, _ = _check_training_data(X, Y, groups)
        self.n_features_in_ = X.shape[1]
        n_components = min(PCA_DIMS, *X.shape)
        self.pipeline_ = Pipeline(
            [
                ("scaler", StandardScaler()),
                ("pca", PCA(n_components=n_components, random_state=self.seed)),
            ]
        )
        Z = self.pipeline_.fit_transform(X).astype(np.float32)  # (n, k)
        self.alpha_ = 100.0 / (n_components * Y.shape[1])
        self.ridge_ = Ridge(
            alpha=self.alpha_,
            solver="lsqr",
            fit_intercept=False,
            max_iter=1000,
            random_state=self.seed,
        ).fit(Z, Y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, g) float32 predictions for (n, d) embeddings."""
        X = _check_features(self, X)
        Z = self.pipeline_.transform(X).astype(np.float32)
        return np.asarray(self.ridge_.predict(Z), dtype=np.float32)


class TunedRidgeProbe:
    """``StandardScaler → PCA-256 → Ridge`` with the penalty chosen by inner cross-validation.

    The penalty is the one of ``alphas × mean PCA feature variance`` with the best mean R²
    (averaged over genes, then folds, as ``GridSearchCV(Ridge())`` scores it). Folds are
    ``GroupKFold`` over ``groups`` (whole training samples) when there are at least 2 groups,
    else ``KFold(5)`` over spots, which favours small penalties on spatially correlated spots.
    Unlike the HEST probe it fits an intercept: the targets are not centred. The scores of all
    penalties come from per-fold sums of squares (one pass over the data), so 200,000 spots
    cost little more than one ridge fit. The final model is sklearn's ``Ridge(alpha_)``.
    """

    def __init__(self, *, alphas: np.ndarray = RELATIVE_ALPHAS, n_splits: int = 5) -> None:
        self.alphas = np.asarray(alphas, dtype=np.float64)
        if self.alphas.ndim != 1 or not self.alphas.size or not (self.alphas > 0).all():
            raise InvalidParameterError(
                f"alphas must be a non-empty 1-D array of positive penalties (relative to the "
                f"feature variance, e.g. np.logspace(-3, 6, 19)); found {alphas!r}"
            )
        if n_splits < 2:
            raise InvalidParameterError(f"n_splits must be at least 2; found {n_splits}")
        self.n_splits = n_splits

    def fit(self, X: np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None) -> Self:
        """Fit on (n, d) embeddings and (n, g) targets; ``groups`` (n,) are the spots' samples."""
        X, Y, groups = _check_training_data(X, Y, groups)
        self.n_features_in_ = X.shape[1]
        self.projection_, Z = _fit_scaled_pca(X)
        fold_of_row = self._assign_folds(Z, groups)
        scale = float(np.einsum("ij,ij->", Z, Z, dtype=np.float64)) / Z.size
        self.alphas_ = self.alphas * max(scale, np.finfo(np.float64).tiny)
        self.cv_scores_ = _ridge_cv_r2(Z, Y, fold_of_row, self.alphas_)
        best = int(np.nanargmax(self.cv_scores_))
        if best in (0, len(self.alphas_) - 1):
            logger.info(
                "ridge penalty %.3g lies at the edge of the grid searched", self.alphas_[best]
            )
        self.alpha_ = float(self.alphas_[best])
        self.ridge_ = Ridge(alpha=self.alpha_, fit_intercept=True).fit(Z, Y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, g) float32 predictions for (n, d) embeddings."""
        X = _check_features(self, X)
        Z = self.projection_.transform(X)
        return np.asarray(self.ridge_.predict(Z), dtype=np.float32)

    def _assign_folds(self, Z: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """(n,) index of the inner fold that validates each row."""
        n_groups = 0 if groups is None else len(np.unique(groups))
        splitter: GroupKFold | KFold
        if n_groups >= 2:
            splitter = GroupKFold(n_splits=min(self.n_splits, n_groups))
        else:
            splitter = KFold(n_splits=min(self.n_splits, len(Z)))
            logger.info(
                "tuning the ridge penalty over spots: give groups to hold out whole samples"
            )
        fold_of_row = np.empty(len(Z), dtype=np.int64)
        for fold, (_, val) in enumerate(splitter.split(Z, groups=groups)):
            fold_of_row[val] = fold
        return fold_of_row


class SpotMLP:
    """An MLP on each spot alone: standardise → PCA-256 → [256, GELU, dropout] × 2 → g outputs.

    Trained with AdamW on the MSE of standardised targets in mini-batches, early-stopped on a
    validation split of the training rows: whole groups when ``groups`` has at least 2, else
    10 % of spots. CPU, deterministic for a ``seed`` (the global torch RNG is left as it was).
    """

    def __init__(
        self,
        *,
        hidden: int = 256,
        dropout: float = 0.1,
        lr: float = 1e-3,
        max_epochs: int = 100,
        patience: int = 10,
        batch_size: int = 1024,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, X: np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None) -> Self:
        """Fit on (n, d) embeddings and (n, g) targets; ``groups`` (n,) are the spots' samples."""
        import torch

        X, Y, groups = _check_training_data(X, Y, groups)
        self.n_features_in_ = X.shape[1]
        self.projection_, Z = _fit_scaled_pca(X)
        self.y_mean_ = Y.mean(axis=0)
        std = Y.std(axis=0)
        self.y_std_ = np.where(std > 0, std, 1.0).astype(np.float32)  # a constant gene stays put
        val = _validation_rows(groups, len(Z), seed=self.seed)
        z = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))  # (n, k)
        y = torch.from_numpy((Y - self.y_mean_) / self.y_std_)  # (n, g)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model_ = _build_mlp(z.shape[1], y.shape[1], self.hidden, self.dropout)
            self._train(z[~val], y[~val], z[val], y[val])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, g) float32 predictions for (n, d) embeddings."""
        import torch

        X = _check_features(self, X)
        Z = self.projection_.transform(X)
        self.model_.eval()
        with torch.no_grad():
            out = torch.cat([self.model_(b) for b in torch.from_numpy(Z).split(65536)])
        return (out.numpy() * self.y_std_ + self.y_mean_).astype(np.float32)

    def _train(self, z: Any, y: Any, z_val: Any, y_val: Any) -> None:
        """AdamW over shuffled mini-batches; keeps the weights of the best validation epoch."""
        import torch

        optimiser = torch.optim.AdamW(self.model_.parameters(), lr=self.lr)
        best_loss, best_state, stale = float("inf"), copy.deepcopy(self.model_.state_dict()), 0
        for epoch in range(self.max_epochs):
            self.model_.train()
            for batch in torch.randperm(len(z)).split(self.batch_size):
                optimiser.zero_grad()
                loss = torch.nn.functional.mse_loss(self.model_(z[batch]), y[batch])
                loss.backward()
                optimiser.step()
            self.model_.eval()
            with torch.no_grad():
                val_loss = float(torch.nn.functional.mse_loss(self.model_(z_val), y_val))
            if val_loss < best_loss:
                best_loss, best_state, stale = val_loss, copy.deepcopy(self.model_.state_dict()), 0
                self.best_epoch_ = epoch
            else:
                stale += 1
                if stale >= self.patience:
                    break
        self.model_.load_state_dict(best_state)
        self.val_loss_ = best_loss
        logger.info("SpotMLP: best validation MSE %.4f at epoch %d", best_loss, self.best_epoch_)


def _ridge_cv_r2(
    Z: np.ndarray, Y: np.ndarray, fold_of_row: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """(n_alphas,) mean R² over genes and folds of ``Ridge(alpha, fit_intercept=True)``.

    Each fold's training sums (n, Σx, Σy, XᵀX, XᵀY) are the totals minus the validation
    fold's; one eigendecomposition of the centred XᵀX per fold then solves every penalty, and
    the validation squared error follows from the validation fold's sums without predicting.
    """
    y_shift = Y.mean(axis=0, dtype=np.float64)  # uncentred sums of centred Y lose no precision
    stats = [
        _sums(Z[fold_of_row == f], Y[fold_of_row == f] - y_shift) for f in np.unique(fold_of_row)
    ]
    total = [sum(s[i] for s in stats) for i in range(6)]
    scores = np.zeros(len(alphas))
    for n_v, sx_v, sy_v, sxx_v, sxy_v, syy_v, constant in stats:
        n_t, sx_t, sy_t, sxx_t, sxy_t = (
            total[i] - s for i, s in enumerate((n_v, sx_v, sy_v, sxx_v, sxy_v))
        )
        mx, my = sx_t / n_t, sy_t / n_t
        eigval, eigvec = _eigh(sxx_t - n_t * np.outer(mx, mx))
        projected = eigvec.T @ (sxy_t - n_t * np.outer(mx, my))  # (k, g)
        sst = syy_v - sy_v**2 / n_v
        for a, alpha in enumerate(alphas):
            W = eigvec @ (projected / (np.clip(eigval, 0, None) + alpha)[:, None])  # (k, g)
            b = my - mx @ W  # (g,)
            sse = (
                syy_v
                - 2 * ((W * sxy_v).sum(0) + b * sy_v)
                + (W * (sxx_v @ W)).sum(0)
                + 2 * b * (sx_v @ W)
                + n_v * b**2
            )
            # sklearn's r2_score scores a gene constant in the validation fold as 0
            r2 = np.where(constant, 0.0, 1.0 - sse / np.where(constant, 1.0, sst))
            scores[a] += r2.mean() / len(stats)
    return scores


def _sums(Z: np.ndarray, Y: np.ndarray) -> tuple[Any, ...]:
    """Sufficient statistics of one fold in float64, and which genes are constant in it."""
    z, y = Z.astype(np.float64), Y.astype(np.float64)
    constant = Y.max(axis=0) == Y.min(axis=0)
    return len(z), z.sum(0), y.sum(0), z.T @ z, z.T @ y, (y**2).sum(0), constant


@dataclass(frozen=True)
class _ScaledPCA:
    """A fitted ``StandardScaler → PCA``: ``transform(X) = ((X − mean) / scale) @ components.T``."""

    mean: np.ndarray  # (d,) float64
    scale: np.ndarray  # (d,) float64, 1 where a dimension is constant (as StandardScaler)
    components: np.ndarray  # (k, d) float64, by decreasing variance

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, d) → (n, k) float32, in row chunks so no standardised copy of X is made."""
        mean = self.mean.astype(np.float32)
        weights = (self.components / self.scale).T.astype(np.float32)  # (d, k)
        out = np.empty((len(X), len(self.components)), dtype=np.float32)
        for start in range(0, len(X), _CHUNK):
            out[start : start + _CHUNK] = (X[start : start + _CHUNK] - mean) @ weights
        return out


def _fit_scaled_pca(X: np.ndarray) -> tuple[_ScaledPCA, np.ndarray]:
    """Standardise → PCA(min(256, n, d)) fitted on ``X`` (n, d), and the training features (n, k).

    The same model as sklearn's ``StandardScaler → PCA`` (same component signs), computed from
    the d×d covariance of row chunks: one pass over X and no standardised copy of it. On
    200,000 × 1536 float32 the sklearn pipeline peaked at 4.1 GB against 1.8 GB here, and its
    default (randomized) solver took minutes where this takes seconds.
    """
    n, d = X.shape
    mean = X.mean(axis=0, dtype=np.float64)
    centred_mean = mean.astype(np.float32)
    gram = np.zeros((d, d))
    for start in range(0, n, _CHUNK):
        # centring first keeps float32 products free of cancellation when means dwarf spreads
        chunk = X[start : start + _CHUNK] - centred_mean
        gram += (chunk.T @ chunk).astype(np.float64)
    std = np.sqrt(np.clip(np.diag(gram), 0, None) / n)
    scale = np.where(std > 0, std, 1.0)
    k = min(PCA_DIMS, n, d)
    _, vectors = _eigh(gram / np.outer(scale, scale), subset_by_index=[d - k, d - 1])
    components = vectors[:, ::-1].T  # (k, d), largest variance first
    # sklearn's sign convention: the largest entry of each component is positive
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    projection = _ScaledPCA(mean=mean, scale=scale, components=components * signs[:, None])
    return projection, projection.transform(X)


def _eigh(matrix: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.linalg.eigh`` on one BLAS thread.

    Its tridiagonal reduction is memory-bound BLAS-2 work that threads barely speed up; on
    cores shared with other jobs their barriers made a 1536² eigh take 14 s instead of 0.3 s.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        values, vectors = eigh(matrix, **kwargs)
    return values, vectors


def _validation_rows(groups: np.ndarray | None, n: int, *, seed: int) -> np.ndarray:
    """(n,) bool mask of the early-stopping rows: whole groups if ≥ 2, else 10 % of spots."""
    if groups is not None and len(np.unique(groups)) >= 2:
        names = np.asarray(groups).astype(str)
        _, val_ids = inner_validation_split(np.unique(names).tolist(), fraction=0.2, seed=seed)
        return np.isin(names, val_ids)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, size=max(1, n // 10), replace=False)] = True
    return mask


def _build_mlp(n_in: int, n_out: int, hidden: int, dropout: float) -> nn.Module:
    """(n, n_in) → (n, n_out): two hidden GELU layers with dropout."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_out),
    )


def _check_training_data(
    X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``X`` (n, d) and ``Y`` (n, g) as finite float32, ``groups`` as an (n,) array."""
    X = np.asarray(X, dtype=np.float32)
    Y = np.asarray(Y, dtype=np.float32)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise TrainingDataError(
            f"expected embeddings (spots, dim) and targets (spots, genes) with one row per spot; "
            f"found shapes {X.shape} and {Y.shape}: pass the rows of the same spots"
        )
    if len(X) < 2 or Y.shape[1] == 0:
        raise TrainingDataError(
            f"a baseline needs at least 2 spots and 1 target; found {len(X)} spots and "
            f"{Y.shape[1]} targets: train on more data"
        )
    for name, values in (("embeddings", X), ("targets", Y)):
        # in row chunks: a whole-array mask of 200,000 × 1536 spots would take 300 MB
        chunks = np.array_split(values, max(1, len(values) // _CHUNK))
        if not all(np.isfinite(chunk).all() for chunk in chunks):
            raise TrainingDataError(
                f"the training {name} hold NaN or infinite values: drop or fix those spots"
            )
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(X),):
            raise TrainingDataError(
                f"groups must name the sample of each spot, shape ({len(X)},); found {groups.shape}"
            )
    return X, Y, groups


def _check_features(model: Any, X: np.ndarray) -> np.ndarray:
    """``X`` as float32 (n, d) with the ``d`` the fitted ``model`` saw."""
    if not hasattr(model, "n_features_in_"):
        raise NotFittedError(f"{type(model).__name__} is not fitted yet: call fit first")
    X = np.asarray(X, dtype=np.float32)
    expected = model.n_features_in_
    if X.ndim != 2 or X.shape[1] != expected:
        raise TrainingDataError(
            f"{type(model).__name__} was fitted on embeddings of {expected} dims; found shape "
            f"{X.shape}: predict with embeddings of the same encoder"
        )
    return X
