"""A sub-spot head, weakly supervised by the spots: bin features in, cell-population shares out.

Each bin enters as its stored sub-spot feature with the means of its context rings (see
:mod:`tmescope.fusion.bin_geometry`), standardised by its own sample's statistics (which removes
slide-level stain and scanner shifts and needs no measurement). A two-layer MLP maps it to
logits over the populations; their softmax is the bin's composition. No bin has a label: the
loss compares each spot's *aggregate* with the spot's measured composition (cross-entropy of the
spot's shares against the aggregate, i.e. KL up to a constant). This is iStar's weak
supervision, for compositions rather than counts.

A spot measures shares of the *cells* under its disc, and bins hold different numbers of cells
(none over glass or lumen, a dozen in a tumour nest), so the aggregate is a weighted mean: each
bin weighs its share of the disc's area times its cell density, which the head predicts as one
more output (a log density, learnt from the spots alone: no bin's count is known). With
``cell_weighted=False`` every bin has density one: the aggregate is the area-weighted mean of
the bins' compositions, and the head has no density output (models trained before it existed).

Training uses only the bins inside spot discs, for a fixed budget of Adam steps: no early
stopping, so no spot outside the training samples is ever looked at. Each step sees a minibatch
of at most ``batch_spots`` spots drawn from the whole cohort (:func:`fit_bin_heads_streamed`, with
rows read from :mod:`tmescope.fusion.bin_rows`), so a step's cost and memory do not grow with the
cohort; a cohort with fewer spots than that trains on all of them at every step, as
:func:`fit_bin_heads` does on rows held in memory. An ensemble of members that differ only in
seed gives the spread used as uncertainty.

Only imported when training or predicting: importing it loads torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from tmescope.errors import InvalidParameterError

if TYPE_CHECKING:
    from tmescope.fusion.bin_rows import Batch, RowSource


@dataclass(frozen=True)
class BinHeadConfig:
    """Architecture and training of the sub-spot head (Adam steps per member, each on at most
    ``batch_spots`` spots: all of them when the cohort has fewer)."""

    hidden: int = 128
    dropout: float = 0.2
    lr: float = 3e-3
    weight_decay: float = 1e-4
    steps: int = 300
    n_members: int = 3
    batch_spots: int = 8192
    cell_weighted: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.cell_weighted, bool):
            raise InvalidParameterError(
                f"BinHeadConfig.cell_weighted must be True or False, got {self.cell_weighted!r}"
            )
        for name in ("hidden", "steps", "n_members", "batch_spots"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(
                    f"BinHeadConfig.{name} must be a positive integer, got {value!r}"
                )
        if not 0.0 <= self.dropout < 1.0 or not self.lr > 0 or not self.weight_decay >= 0:
            raise InvalidParameterError(
                "BinHeadConfig needs 0 <= dropout < 1, lr > 0 and weight_decay >= 0, got "
                f"{self.dropout!r}, {self.lr!r}, {self.weight_decay!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def head(self, d_in: int, n_populations: int) -> BinHead:
        """An untrained head of this architecture."""
        return BinHead(
            d_in, n_populations, hidden=self.hidden, dropout=self.dropout,
            cell_weighted=self.cell_weighted,
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class WeakSample:
    """One training sample: its disc bins' inputs and what its spots measured.

    ``x`` ``(m, d)`` are the inputs of the bins inside some spot's disc (already standardised
    per sample), ``discs`` ``(n_spots, m)`` the (area-weighted) mean-over-disc operator on
    them, ``shares``
    ``(n_spots, n_populations)`` each spot's measured composition (rows sum to 1; rows of NaN,
    spots without an estimate, are left out of the loss).
    """

    x: np.ndarray
    discs: sp.csr_matrix
    shares: np.ndarray

    def __post_init__(self) -> None:
        m, n_spots = self.x.shape[0], self.shares.shape[0]
        if self.discs.shape != (n_spots, m):
            raise InvalidParameterError(
                f"discs must be (n_spots, n_bins) = ({n_spots}, {m}), got {self.discs.shape}"
            )


class BinHead(nn.Module):
    """``(n, d)`` bin inputs → ``(n, P [+ 1])`` outputs: population logits, then the log cell
    density when the head is ``cell_weighted``."""

    def __init__(
        self, d_in: int, n_populations: int, *, hidden: int, dropout: float, cell_weighted: bool
    ) -> None:
        super().__init__()
        self.n_populations = n_populations
        self.cell_weighted = cell_weighted
        n_out = n_populations + int(cell_weighted)
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, n_out),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def standardise_per_sample(x: np.ndarray) -> np.ndarray:
    """Each feature centred and scaled by this sample's own mean and standard deviation."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0, keepdims=True)
    std = x.std(axis=0, keepdims=True)
    return ((x - mean) / np.where(std > 1e-6, std, 1.0)).astype(np.float32)


def weak_loss(outputs: Tensor, discs: Tensor, shares: Tensor) -> Tensor:
    """Mean over spots of the cross-entropy of each spot's shares against the weighted mean
    composition of the bins in its disc (``discs`` a sparse ``(n_spots, m)`` mean operator;
    ``outputs`` with a density column weigh each bin by it too)."""
    n_populations = shares.shape[1]
    composition = torch.softmax(outputs[:, :n_populations], dim=1)
    if outputs.shape[1] > n_populations:  # cell-weighted: densities scaled to at most one
        density = torch.exp(outputs[:, n_populations] - outputs[:, n_populations].max().detach())
        summed = torch.sparse.mm(discs, density[:, None] * composition)
        aggregate = summed / torch.sparse.mm(discs, density[:, None]).clamp_min(1e-30)
    else:
        aggregate = torch.sparse.mm(discs, composition)  # (n_spots, P)
    return -(shares * torch.log(aggregate.clamp_min(1e-8))).sum(dim=1).mean()


def fit_bin_heads(
    samples: Sequence[WeakSample], *, config: BinHeadConfig | None = None, seed: int = 0
) -> list[BinHead]:
    """Fit ``config.n_members`` heads on training samples held in memory, every step on all of
    their spots (each member seeded from ``seed``; any disc operator, overlapping or not)."""
    config = config or BinHeadConfig()
    if not samples:
        raise InvalidParameterError("fit_bin_heads needs at least one training sample")
    d_in, n_populations = samples[0].x.shape[1], samples[0].shares.shape[1]
    if any(s.x.shape[1] != d_in or s.shares.shape[1] != n_populations for s in samples):
        raise InvalidParameterError("every training sample needs the same inputs and populations")
    batches = [_tensors(s) for s in samples]
    if not any(len(b[2]) for b in batches):
        raise InvalidParameterError("no spot with a composition and bins in its disc to learn from")
    heads = []
    for member_seed in member_seeds(seed, config.n_members):
        with torch.random.fork_rng():
            torch.manual_seed(int(member_seed))
            head = config.head(d_in, n_populations)
            optimiser = torch.optim.AdamW(
                head.parameters(), lr=config.lr, weight_decay=config.weight_decay
            )
            head.train()
            for _ in range(config.steps):
                optimiser.zero_grad()
                loss = sum(weak_loss(head(x), d, q) for x, d, q in batches if len(q))
                loss.backward()  # type: ignore[union-attr]
                optimiser.step()
        head.eval()
        heads.append(head)
    return heads


def member_seeds(seed: int, n_members: int) -> list[int]:
    """The seed of each member of an ensemble fitted with ``seed``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n_members)]


def fit_bin_heads_streamed(
    source: RowSource,
    *,
    config: BinHeadConfig | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[BinHead]:
    """Fit ``config.n_members`` heads on minibatches of ``source``'s spots (see the module
    docstring); with fewer spots than ``config.batch_spots``, every step sees all of them and
    the heads equal :func:`fit_bin_heads`'s on the same rows (up to float rounding).
    ``progress(steps done, steps in all)`` is called as the members train."""
    config = config or BinHeadConfig()
    seeds = member_seeds(seed, config.n_members)
    heads = []
    for i, member_seed in enumerate(seeds):
        done = i * config.steps

        def report(step: int, total: int, done: int = done) -> None:
            if progress is not None:
                progress(done + step, total * len(seeds))

        heads.append(fit_bin_head(source, config=config, seed=member_seed, progress=report))
    return heads


def fit_bin_head(
    source: RowSource,
    *,
    config: BinHeadConfig,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> BinHead:
    """One member: ``config.steps`` Adam steps on minibatches of ``source``'s spots.

    Batches walk through seeded permutations of every spot of the cohort; a step's loss is the
    batch's weighted cross-entropy scaled to the whole cohort, an unbiased estimate of the
    full-batch loss (the sum over samples of each sample's mean over its spots).
    """
    counts = source.spots_per_sample
    total = int(counts.sum())
    if total == 0:
        raise InvalidParameterError("no spot with a composition and bins in its disc to learn from")
    size = min(config.batch_spots, total)
    sample_of = np.repeat(np.arange(len(counts)), counts)
    spot_of = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    whole = size == total
    # A cohort smaller than a batch: its rows are read once and seen whole at every step.
    every = (
        _batch_tensors(source.batch(_picks(np.arange(total), sample_of, spot_of, len(counts))))
        if whole
        else None
    )
    rng = np.random.default_rng(seed)
    order, cursor = np.arange(0), total
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        head = config.head(source.dim, source.n_populations)
        optimiser = torch.optim.AdamW(
            head.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        head.train()
        for step in range(config.steps):
            if every is not None:
                batch = every
            else:
                if cursor + size > total:  # a new pass over the cohort's spots
                    order, cursor = rng.permutation(total), 0
                chosen = np.sort(order[cursor : cursor + size])
                cursor += size
                batch = _batch_tensors(
                    source.batch(_picks(chosen, sample_of, spot_of, len(counts)))
                )
            optimiser.zero_grad()
            loss = batch_loss(head(batch[0]), *batch[1:]) * (total / size)
            loss.backward()
            optimiser.step()
            if progress is not None and ((step + 1) % 25 == 0 or step + 1 == config.steps):
                progress(step + 1, config.steps)
    head.eval()
    return head


def batch_loss(
    outputs: Tensor, owner: Tensor, area: Tensor, shares: Tensor, weights: Tensor
) -> Tensor:
    """Weighted cross-entropy of each batch spot's shares against its bins' aggregate
    (:func:`spot_aggregate`): ``outputs`` ``(r, P [+ 1])``, ``owner`` ``(r,)`` batch spot of
    each bin, ``area`` ``(r,)`` its weight in the disc, ``shares`` ``(b, P)``, ``weights``
    ``(b,)``."""
    aggregate = spot_aggregate(
        outputs, owner, area, n_spots=shares.shape[0], n_populations=shares.shape[1]
    )
    return -((shares * torch.log(aggregate.clamp_min(1e-8))).sum(dim=1) * weights).sum()


def spot_aggregate(
    outputs: Tensor, owner: Tensor, area: Tensor, *, n_spots: int, n_populations: int
) -> Tensor:
    """``(n_spots, P)`` each spot's composition as its bins give it: their compositions
    averaged with weights ``area`` × density (the exponential of output ``P``; one when the
    outputs have no such column, which leaves the area-weighted mean)."""
    composition = torch.softmax(outputs[:, :n_populations], dim=1)
    log_weight = torch.log(area.clamp_min(1e-12))
    if n_populations < outputs.shape[1]:
        log_weight = log_weight + outputs[:, n_populations]
    # A softmax within each spot: shifted by the spot's largest log weight, so none overflows.
    top = torch.full((n_spots,), -torch.inf, dtype=log_weight.dtype)
    top = top.scatter_reduce(0, owner, log_weight.detach(), reduce="amax")
    weight = torch.exp(log_weight - top[owner])
    total = torch.zeros(n_spots, dtype=weight.dtype).index_add_(0, owner, weight)
    summed = torch.zeros(n_spots, n_populations, dtype=weight.dtype)
    summed = summed.index_add_(0, owner, weight[:, None] * composition)
    return summed / total[:, None]


def _picks(
    chosen: np.ndarray, sample_of: np.ndarray, spot_of: np.ndarray, n_samples: int
) -> list[np.ndarray]:
    """Cohort-wide spot numbers (ascending) → each sample's ascending spot indices."""
    samples = sample_of[chosen]
    return [spot_of[chosen[samples == i]] for i in range(n_samples)]


def _batch_tensors(batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(batch.x, dtype=np.float32)),
        torch.from_numpy(batch.owner),
        torch.from_numpy(np.ascontiguousarray(batch.area, dtype=np.float32)),
        torch.from_numpy(batch.shares),
        torch.from_numpy(batch.weights),
    )


def predict_shares(heads: Sequence[BinHead], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over members of each bin's composition, ``(n, P)`` each."""
    from tmescope.fusion.calibration import tempered_shares

    return tempered_shares(member_logits(heads, x))


def member_logits(heads: Sequence[BinHead], x: np.ndarray) -> list[np.ndarray]:
    """Every member's population logits for the bins ``x``, ``(n, P)`` each."""
    logits, _ = member_outputs(heads, x)
    return logits


def member_outputs(
    heads: Sequence[BinHead], x: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Every member's population logits for the bins ``x`` (``(n, P)`` each), and the bins'
    relative cell density (``(n,)``, the members' geometric mean, scaled to a mean of one over
    the bins), ``None`` when the heads are not cell-weighted."""
    inputs = torch.from_numpy(np.asarray(x, dtype=np.float32))
    with torch.inference_mode():
        outputs = [h(inputs).numpy() for h in heads]
    n_populations = heads[0].n_populations
    logits = [o[:, :n_populations] for o in outputs]
    if not heads[0].cell_weighted or not len(inputs):
        return logits, None
    log_density = np.mean([o[:, n_populations].astype(np.float64) for o in outputs], axis=0)
    # Floored far below any density that matters, so that no weight underflows to zero.
    density = np.exp(np.maximum(log_density - log_density.max(), -30.0))
    return logits, (density / density.mean()).astype(np.float32)


def _tensors(sample: WeakSample) -> tuple[Tensor, Tensor, Tensor]:
    known = np.isfinite(sample.shares).all(axis=1) & (np.diff(sample.discs.indptr) > 0)
    discs = sample.discs[known].tocoo()
    operator = torch.sparse_coo_tensor(
        torch.from_numpy(np.vstack([discs.row, discs.col]).astype(np.int64)),
        torch.from_numpy(discs.data.astype(np.float32)),
        size=discs.shape,
        check_invariants=True,
    ).coalesce()
    return (
        torch.from_numpy(np.asarray(sample.x, dtype=np.float32)),
        operator,
        torch.from_numpy(sample.shares[known].astype(np.float32)),
    )
