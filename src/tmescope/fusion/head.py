"""The fusion head: a two-layer GATv2 network from spot embeddings to expression and TME scores.

Each node (a Visium spot, or a tile of a dense grid) enters as its foundation-model embedding
(after the input transform of :mod:`tmescope.fusion.preprocessing`), is projected to
``hidden`` channels and then attends over its graph neighbours twice. Every attention layer
adds its message to the node's own representation (residual), so the head can fall back to a
per-spot MLP where neighbours do not help; self loops let a node weigh itself against its
neighbours inside the softmax too. Nodes with no outgoing edges (grid tiles at predict time)
only receive, which the residual form handles without special cases.

Only imported when training or predicting: importing it loads torch and torch_geometric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args, overload

from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv

from tmescope.errors import InvalidParameterError

SampleNorm = Literal["standardise", "centre", "none"]
N_LAYERS = 2  # two hops cover a spot's ring of 6 neighbours and the 12 beyond (~200 µm)


@dataclass(frozen=True)
class HeadConfig:
    """Architecture and training settings of a fusion head.

    Defaults were chosen by measurement (``benchmarks/fusion.py``): one ensemble
    member fits on 200,000 spots × 1,536 dims in 42–46 s on 2 CPU cores (hidden 128 costs
    2–3× more per step for no gain in quality), and a 5-member ensemble beats an α-tuned
    ridge probe by +0.058 mean Pearson on leave-one-sample-out folds of the synthetic cohort
    (dropout 0.3 beat 0.1 and 0.5 there).

    ``max_steps`` and ``patience`` count optimiser steps (one per training sample, or per piece
    of a large one, see :mod:`tmescope.fusion.train`): training stops after ``max_steps``, or
    once the validation loss, checked after every pass over the training samples, has not
    improved for ``patience`` steps. ``pca_dim`` is the number of principal components the
    standardised embeddings are reduced to before the head (``None``: no reduction); it is
    capped at the embedding width.

    ``sample_norm`` first normalises each sample's embeddings by that sample's own statistics
    (over its scored nodes, spots; all nodes when none are marked), at training and prediction
    alike: ``"standardise"`` (per-feature mean and std), ``"centre"`` (mean only) or ``"none"``.
    It removes slide-level shifts (stain, scanner, section thickness) that a cohort-wide
    standardisation leaves in, and needs no targets of the sample. Its cost: a section made of
    one tissue type loses that type's offset from the cohort, so predictions are then relative
    within the section (per-gene Pearson is unaffected, absolute levels are not).
    """

    hidden: int = 64
    heads: int = 4
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_steps: int = 600
    patience: int = 60
    pca_dim: int | None = 256
    sample_norm: SampleNorm = "standardise"

    def __post_init__(self) -> None:
        for name in ("hidden", "heads", "max_steps", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidParameterError(
                    f"HeadConfig.{name} must be a positive integer, got {value!r}"
                )
        if self.hidden % self.heads:
            raise InvalidParameterError(
                f"HeadConfig.hidden ({self.hidden}) must be a multiple of heads ({self.heads}): "
                "the heads' outputs are concatenated back to hidden channels"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidParameterError(
                f"HeadConfig.dropout must lie in [0, 1), got {self.dropout!r}"
            )
        if not self.lr > 0.0:
            raise InvalidParameterError(f"HeadConfig.lr must be positive, got {self.lr!r}")
        if not self.weight_decay >= 0.0:
            raise InvalidParameterError(
                f"HeadConfig.weight_decay must be zero or positive, got {self.weight_decay!r}"
            )
        if self.pca_dim is not None and (not isinstance(self.pca_dim, int) or self.pca_dim < 1):
            raise InvalidParameterError(
                f"HeadConfig.pca_dim must be a positive integer or None, got {self.pca_dim!r}"
            )
        if self.sample_norm not in get_args(SampleNorm):
            raise InvalidParameterError(
                f"HeadConfig.sample_norm must be one of {get_args(SampleNorm)}, got {self.sample_norm!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HeadConfig:
        """Settings from :meth:`to_dict` output; unknown keys are an error."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidParameterError(
                f"unknown HeadConfig settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**values)


@dataclass(frozen=True)
class HeadTrace:
    """Everything one forward pass can report.

    ``prediction`` is ``(n, t)`` (in the head's standardised target space), ``fused`` is the
    ``(n, hidden)`` representation after the last attention layer. ``attention`` holds one
    ``(edge_index, alpha)`` pair per layer, first layer first: ``edge_index`` ``(2, E')`` is the
    graph's edges (source → target) with one self loop per node added, ``alpha`` ``(E', heads)``
    the softmax weight each target gives each source, per head (a target's incoming weights sum
    to 1 for every head).
    """

    prediction: Tensor  # (n, t)
    fused: Tensor  # (n, hidden)
    attention: tuple[tuple[Tensor, Tensor], ...]  # per layer: (2, E') int64, (E', heads)


class FusionHead(nn.Module):
    """Input projection → 2 × (GATv2 + residual + LayerNorm) → linear read-out."""

    def __init__(
        self, in_dim: int, n_targets: int, *, hidden: int = 64, heads: int = 4, dropout: float = 0.3
    ) -> None:
        super().__init__()
        if in_dim < 1 or n_targets < 1:
            raise InvalidParameterError(
                f"FusionHead needs at least one input dimension and one target, got in_dim={in_dim}, n_targets={n_targets}"
            )
        HeadConfig(hidden=hidden, heads=heads, dropout=dropout)  # validates the three
        self.in_dim = in_dim
        self.n_targets = n_targets
        self.hidden = hidden
        self.heads = heads
        self.project = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)
        )
        # concat=True: each head contributes hidden / heads channels, so the output is hidden wide
        # and the residual needs no projection.
        self.convs = nn.ModuleList(
            GATv2Conv(hidden, hidden // heads, heads=heads, concat=True, add_self_loops=True)
            for _ in range(N_LAYERS)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(N_LAYERS))
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden, n_targets)

    @overload
    def forward(
        self, x: Tensor, edge_index: Tensor, *, return_attention: Literal[False] = ...
    ) -> Tensor: ...

    @overload
    def forward(
        self, x: Tensor, edge_index: Tensor, *, return_attention: Literal[True]
    ) -> HeadTrace: ...

    def forward(
        self, x: Tensor, edge_index: Tensor, *, return_attention: bool = False
    ) -> Tensor | HeadTrace:
        """Predict targets for every node.

        ``x`` is ``(n, in_dim)`` float, ``edge_index`` ``(2, E)`` int64 (source → target, no
        self loops needed). Returns the ``(n, t)`` predictions, or with ``return_attention`` a
        :class:`HeadTrace` that adds the fused representation and both layers' attention.
        """
        h = self.project(x)  # (n, hidden)
        attention: list[tuple[Tensor, Tensor]] = []
        for conv, norm in zip(self.convs, self.norms, strict=True):
            if return_attention:
                message, (looped, alpha) = conv(h, edge_index, return_attention_weights=True)
                attention.append((looped, alpha))  # (2, E'), (E', heads)
            else:
                message = conv(h, edge_index)  # (n, hidden)
            h = norm(h + self.drop(self.act(message)))
        prediction = self.readout(h)  # (n, t)
        if not return_attention:
            return prediction
        return HeadTrace(prediction=prediction, fused=h, attention=tuple(attention))
