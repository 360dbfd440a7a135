"""Training of the fusion head: one head or a deep ensemble, early-stopped, deterministic.

Everything learnt from data is learnt from the training samples only: the input transform
(per-feature standardisation, then a randomized PCA fitted on a row subsample), the per-target
standardisation and the weights. The one statistic taken from the sample being predicted is
its own embeddings' mean and std when ``HeadConfig.sample_norm`` asks for it (never targets,
never another sample). Members are seeded with ``torch.random.fork_rng``, so a fit leaves the
caller's RNG alone; on CPU the same seed gives bit-identical weights (CUDA scatter kernels are
not deterministic). Each optimiser step sees one whole sample graph (full-graph
message passing, no neighbour sampling), or, for a sample of more than ``PIECE_NODES`` nodes,
one compact piece of it with a 2-hop halo (exact for the piece's core nodes, see
:func:`~tmescope.fusion.preprocessing.partition_nodes`): on CPU a step over ~8k nodes costs
1.5–2.7× less per node than one over 25k. An epoch is one pass over all pieces in a seeded
random order. The budget is counted in optimiser steps (``max_steps``, ``patience``), because
the steps a head needs to converge hardly depend on how many nodes each step sees, while the
cost of an epoch grows with the cohort. The validation loss (masked MSE on the validation
samples) is checked after every epoch and the weights of the best check are restored.

When no validation sample is given, 10 % of each training sample's target nodes are held out
of the loss and early stopping watches them instead. Their embeddings still flow through the
graph (only their targets are hidden), and their neighbours' targets are trained on, so this
loss is optimistic: prefer whole held-out samples whenever the cohort has them.

The fitted heads, their predictions and files live in :mod:`tmescope.fusion.ensemble`; their
names are re-exported here.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tmescope.errors import InvalidParameterError, TrainingDataError
from tmescope.fusion.ensemble import (
    Ensemble,
    EnsembleOutput,
    HeadOutput,
    LayerAttention,
    TrainedHead,
    TrainingHistory,
    torch_device,
)
from tmescope.fusion.head import N_LAYERS, FusionHead, HeadConfig
from tmescope.fusion.preprocessing import (
    GraphSample,
    InputTransform,
    fit_transform,
    partition_nodes,
)

__all__ = [
    "Ensemble",
    "EnsembleOutput",
    "GraphSample",
    "HeadOutput",
    "LayerAttention",
    "TrainedHead",
    "TrainingHistory",
    "fit_ensemble",
    "fit_head",
]

log = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.1  # of each training sample's target nodes, when no validation sample is given
MIN_IMPROVEMENT = 1e-4  # relative drop of the validation loss that counts as progress
MAX_GRAD_NORM = 1.0  # clipping keeps the first steps on unscaled full graphs from overshooting
PIECE_NODES = 8192  # core nodes per optimiser step at most (measured on CPU, see module docstring)


@dataclass(frozen=True)
class _Graph:
    """A sample, or a piece of one, as tensors on the training device, targets standardised."""

    x: Tensor  # (n, k)
    edge_index: Tensor  # (2, E) int64
    y: Tensor  # (n, t)
    mask: Tensor  # (n,) bool: nodes in this graph's loss


def fit_head(
    train: Sequence[GraphSample],
    val: Sequence[GraphSample],
    *,
    config: HeadConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    metadata: Mapping[str, Any] | None = None,
) -> TrainedHead:
    """Fit one head on ``train``, early-stopped on ``val`` (see the module docstring)."""
    return fit_ensemble(
        train, val, n_members=1, config=config, seed=seed, device=device, metadata=metadata
    ).members[0]


def fit_ensemble(
    train: Sequence[GraphSample],
    val: Sequence[GraphSample],
    *,
    n_members: int = 5,
    config: HeadConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    metadata: Mapping[str, Any] | None = None,
    spill: Path | None = None,
) -> Ensemble:
    """Fit ``n_members`` heads that differ only in seed (init, dropout, sample order).

    The input transform is fitted once, on ``train``, and shared. Member ``i`` draws its seed
    from ``SeedSequence(seed)``, so member 0 equals :func:`fit_head` with the same seed.
    ``train`` and ``val`` are read in turn, never all at once (they may be sequences that read
    each sample from disk when asked); with ``spill``, a folder, the pieces' inputs and targets
    are kept there and each step reads its own piece, so memory holds one piece rather than the
    whole cohort (the same heads: the same tensors, read back).
    """
    config = config or HeadConfig()
    if not isinstance(n_members, int) or n_members < 1:
        raise InvalidParameterError(f"n_members must be a positive integer, got {n_members!r}")
    where = torch_device(device)
    _check_training(train, val)
    transform = fit_transform(
        train, pca_dim=config.pca_dim, sample_norm=config.sample_norm, seed=seed
    )
    try:
        return _fit_pieces(train, val, transform, n_members=n_members, config=config, seed=seed,
                           where=where, metadata=metadata, spill=spill)  # fmt: skip
    finally:
        if spill is not None:  # the pieces were this fit's own
            for name in ("train", "val"):
                shutil.rmtree(spill / name, ignore_errors=True)


def _fit_pieces(
    train: Sequence[GraphSample],
    val: Sequence[GraphSample],
    transform: InputTransform,
    *,
    n_members: int,
    config: HeadConfig,
    seed: int,
    where: torch.device,
    metadata: Mapping[str, Any] | None,
    spill: Path | None,
) -> Ensemble:
    """:func:`fit_ensemble` once the transform is fitted: cut the samples into pieces (kept in
    ``spill`` when given), hold validation nodes out, fit each member."""
    stored = _Pieces(spill / "train" if spill is not None else None, where)
    for s in train:
        stored.extend(_to_pieces(s, transform, where))
    if val:
        checked = _Pieces(spill / "val" if spill is not None else None, where)
        for s in val:
            checked.extend(_to_pieces(s, transform, where))
        train_pieces, val_pieces = stored.view(), checked.view()
    else:
        log.info(
            "no validation sample: early stopping on %.0f %% of training nodes",
            100 * HOLDOUT_FRACTION,
        )
        train_pieces, val_pieces = _hold_out(stored, np.random.default_rng(seed))
    train_pieces = train_pieces.teaching()  # a piece of tiles only teaches nothing
    if not len(train_pieces):
        raise TrainingDataError(
            "no training node is left with a target: pass more training samples"
        )
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_members)]
    members = []
    for i, member_seed in enumerate(seeds):
        module, history = _fit_module(
            train_pieces, val_pieces, transform, config=config, seed=member_seed
        )
        log.info(
            "member %d/%d: best after %d of %d steps, validation loss %.4f",
            i + 1,
            n_members,
            history.steps[history.best_epoch],
            history.steps[-1],
            history.best_val_loss,
        )
        members.append(
            TrainedHead(
                module,
                transform,
                config=config,
                history=history,
                seed=member_seed,
                metadata=metadata,
            )
        )
    return Ensemble(members, noise_std=_residual_std(members, val_pieces, transform))


def _residual_std(
    members: Sequence[TrainedHead], val: Sequence[_Graph], transform: InputTransform
) -> np.ndarray | None:
    """``(t,)`` spread of the ensemble mean's residuals on the validation nodes, target units."""
    squares, count = 0.0, 0
    for piece in val:
        if not bool(piece.mask.any()):
            continue
        means = [m._run(piece.x, piece.edge_index, attention=False).mean for m in members]
        mask = piece.mask.cpu().numpy()
        truth = transform.unscale_targets(piece.y.cpu().numpy()[mask])  # (v, t)
        residual = np.mean(means, axis=0)[mask] - truth
        squares = squares + (residual.astype(np.float64) ** 2).sum(axis=0)
        count += int(mask.sum())
    return None if count == 0 else np.sqrt(np.asarray(squares) / count).astype(np.float32)


def _fit_module(
    train: Sequence[_Graph],
    val: Sequence[_Graph],
    transform: InputTransform,
    *,
    config: HeadConfig,
    seed: int,
) -> tuple[FusionHead, TrainingHistory]:
    """Train one head with AdamW on masked MSE; return it with the best epoch's weights.

    ``train`` and ``val`` are pieces (whole small samples or halo'd parts of large ones).
    """
    where = train[0].x.device
    rng = np.random.default_rng(seed)
    cuda = (
        [where.index if where.index is not None else torch.cuda.current_device()]
        if where.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda):  # seeds this fit without touching the caller's RNG
        torch.manual_seed(seed)
        module = FusionHead(
            transform.out_dim,
            int(transform.y_mean.shape[0]),
            hidden=config.hidden,
            heads=config.heads,
            dropout=config.dropout,
        ).to(where)
        optimiser = torch.optim.AdamW(
            module.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        best_loss, best_epoch, best_state = float("inf"), 0, _copy_state(module)
        train_losses: list[float] = []
        val_losses: list[float] = []
        steps: list[int] = []
        step = 0
        while step < config.max_steps:
            module.train()
            losses = []
            for i in rng.permutation(len(train))[: config.max_steps - step]:
                piece = train[i]
                optimiser.zero_grad(set_to_none=True)
                prediction = module(piece.x, piece.edge_index)  # (n, t)
                loss = torch.nn.functional.mse_loss(prediction[piece.mask], piece.y[piece.mask])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), MAX_GRAD_NORM)
                optimiser.step()
                losses.append(loss.item())
            step += len(losses)
            train_losses.append(float(np.mean(losses)))
            val_losses.append(_masked_mse(module, val))
            steps.append(step)
            log.debug(
                "step %d: train %.4f, validation %.4f", step, train_losses[-1], val_losses[-1]
            )
            if val_losses[-1] < best_loss * (1.0 - MIN_IMPROVEMENT):
                best_loss, best_epoch, best_state = (
                    val_losses[-1],
                    len(val_losses) - 1,
                    _copy_state(module),
                )
            elif step - steps[best_epoch] >= config.patience:
                break
    module.load_state_dict(best_state)
    history = TrainingHistory(tuple(train_losses), tuple(val_losses), tuple(steps), best_epoch)
    return module.eval(), history


def _masked_mse(module: FusionHead, graphs: Sequence[_Graph]) -> float:
    """Mean squared error over all masked nodes and targets of ``graphs`` (pooled, not per graph)."""
    module.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for graph in graphs:
            if not bool(graph.mask.any()):
                continue
            error = module(graph.x, graph.edge_index)[graph.mask] - graph.y[graph.mask]  # (m, t)
            total += float(error.square().sum())
            count += error.numel()
    return total / count


def _copy_state(module: FusionHead) -> dict[str, Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _to_pieces(
    sample: GraphSample, transform: InputTransform, device: torch.device
) -> list[_Graph]:
    """The sample as tensors, cut into halo'd pieces of at most ``PIECE_NODES`` core nodes.

    A piece's mask holds its core nodes that have targets: halo nodes feed messages only, so
    every target node is scored in exactly one piece.
    """
    x = transform.apply(sample, device)  # (n, k)
    if not bool(torch.isfinite(x).all()):
        raise TrainingDataError(f"sample {sample.sample_id!r}: x holds NaN or infinite values")
    targets = sample.targets
    y = np.zeros((sample.x.shape[0], transform.y_mean.shape[0]), np.float32)
    if sample.y is not None:
        y[targets] = transform.scale_targets(sample.y[targets])
    edges = sample.edge_index.astype(np.int64)
    n = sample.x.shape[0]
    pieces = []
    for nodes, core in partition_nodes(edges, n, max_core=PIECE_NODES, hops=N_LAYERS):
        if nodes.shape[0] == n:  # the whole sample in one piece: no copies
            local = edges
        else:
            index = np.full(n, -1)
            index[nodes] = np.arange(nodes.shape[0])
            mapped = index[edges]  # (2, E), -1 where an end lies outside the piece
            local = mapped[:, (mapped >= 0).all(axis=0)]
        pieces.append(
            _Graph(
                x=x if nodes.shape[0] == n else x[torch.from_numpy(nodes).to(device)],
                edge_index=torch.from_numpy(local).to(device),
                y=torch.from_numpy(y[nodes]).to(device),
                mask=torch.from_numpy(targets[nodes] & core).to(device),
            )
        )
    return pieces


def _hold_out(pieces: _Pieces, rng: np.random.Generator) -> tuple[_PieceView, _PieceView]:
    """Split each piece's target nodes: 90 % stay in the loss, 10 % become the validation mask."""
    fits, checks = [], []
    for mask in pieces.masks:
        held = torch.from_numpy(rng.random(mask.shape[0]) < HOLDOUT_FRACTION).to(mask.device)
        fits.append(mask & ~held)
        checks.append(mask & held)
    if not any(bool(m.any()) for m in checks):
        raise TrainingDataError(
            "too few target nodes to hold 10 % out for early stopping: pass validation samples"
        )
    every = list(range(len(pieces)))
    return _PieceView(pieces, every, fits), _PieceView(pieces, every, checks)


class _Pieces:
    """A fit's pieces: their masks in memory, their inputs, edges and targets in memory or, with
    a folder, each in a file read back when a step reaches it (one piece in memory at a time)."""

    def __init__(self, folder: Path | None, device: torch.device) -> None:
        self.folder = folder
        self.device = device
        self.masks: list[Tensor] = []
        self._kept: list[_Graph] = []
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.masks)

    def extend(self, pieces: Sequence[_Graph]) -> None:
        from safetensors.torch import save_file

        for piece in pieces:
            if self.folder is None:
                self._kept.append(piece)
            else:
                tensors = {"x": piece.x, "edge_index": piece.edge_index, "y": piece.y}
                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                    self.folder / f"{len(self.masks)}.safetensors",
                )
            self.masks.append(piece.mask)

    def get(self, index: int, mask: Tensor) -> _Graph:
        if self.folder is None:
            kept = self._kept[index]
            return _Graph(kept.x, kept.edge_index, kept.y, mask)
        from safetensors.torch import load_file

        tensors = load_file(self.folder / f"{index}.safetensors", device=str(self.device))
        return _Graph(tensors["x"], tensors["edge_index"], tensors["y"], mask)

    def view(self) -> _PieceView:
        return _PieceView(self, list(range(len(self))), list(self.masks))


class _PieceView(Sequence[_Graph]):
    """Some pieces of a :class:`_Pieces`, each with a mask of its own (the nodes in the loss)."""

    def __init__(self, pieces: _Pieces, indices: Sequence[int], masks: Sequence[Tensor]) -> None:
        self.pieces = pieces
        self.indices = list(indices)
        self.masks = list(masks)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> _Graph:  # type: ignore[override]
        return self.pieces.get(self.indices[i], self.masks[i])

    def __iter__(self) -> Iterator[_Graph]:
        return (self[i] for i in range(len(self)))

    def teaching(self) -> _PieceView:
        """The pieces with at least one node in the loss."""
        kept = [(i, m) for i, m in zip(self.indices, self.masks, strict=True) if bool(m.any())]
        return _PieceView(self.pieces, [i for i, _ in kept], [m for _, m in kept])


def _check_training(train: Sequence[GraphSample], val: Sequence[GraphSample]) -> None:
    if not train:
        raise TrainingDataError("no training sample given: fit_head needs at least one")
    d = train[0].x.shape[1]
    t = None
    for s in [*train, *val]:
        if s.y is None or not s.targets.any():
            raise TrainingDataError(
                f"sample {s.sample_id!r} has no targets: training and validation samples need y"
            )
        if s.x.shape[1] != d:
            raise TrainingDataError(
                f"sample {s.sample_id!r} has {s.x.shape[1]}-dim embeddings, the first has {d}"
            )
        t = s.y.shape[1] if t is None else t
        if s.y.shape[1] != t:
            raise TrainingDataError(
                f"sample {s.sample_id!r} has {s.y.shape[1]} targets, the first has {t}"
            )
        if not np.isfinite(s.y[s.targets]).all():
            raise TrainingDataError(
                f"sample {s.sample_id!r}: y holds NaN or infinite values at target nodes"
            )
