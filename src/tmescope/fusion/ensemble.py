"""Fitted fusion heads: one head, an ensemble of them, their predictions and their files.

A model directory holds ``head.json`` (format version, config, shapes, standardisation
statistics, training history, caller metadata), ``transform.safetensors`` (the PCA projection,
when used) and one ``member_<i>.safetensors`` per ensemble member; no pickle anywhere.
``head.json`` is written last, so a directory without it is an incomplete one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from tmescope.errors import InvalidParameterError, ModelMismatchError
from tmescope.fusion.head import FusionHead, HeadConfig
from tmescope.fusion.preprocessing import GraphSample, InputTransform

FORMAT = "tmescope-fusion-head"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainingHistory:
    """Per-epoch mean training loss, validation loss and optimiser steps taken so far.

    ``best_epoch`` (0-based) is the epoch whose weights were restored.
    """

    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    steps: tuple[int, ...]
    best_epoch: int

    @property
    def best_val_loss(self) -> float:
        return self.val_loss[self.best_epoch]


@dataclass(frozen=True)
class LayerAttention:
    """One GATv2 layer's attention: ``edge_index`` ``(2, E')`` incl. self loops, ``alpha`` ``(E', heads)``."""

    edge_index: np.ndarray
    alpha: np.ndarray


@dataclass(frozen=True)
class HeadOutput:
    """A head's prediction for every node, in the targets' units.

    ``mean`` ``(n, t)``, ``fused`` ``(n, hidden)`` (the representation after the last attention
    layer), ``attention`` one :class:`LayerAttention` per layer.
    """

    mean: np.ndarray
    fused: np.ndarray
    attention: tuple[LayerAttention, ...]


@dataclass(frozen=True)
class EnsembleOutput:
    """An ensemble's prediction: ``mean``/``std`` ``(n, t)``; ``std`` combines the members'
    spread (ddof 0) with the ensemble's residual noise measured on held-out training nodes,
    ``fused`` ``(n, hidden × members)`` the members' representations side by side (members are
    not aligned, so averaging them would mix unrelated axes; concatenated, a distance is the
    sum of the members' distances), ``attention`` of member 0 only, for the same reason.
    """

    mean: np.ndarray
    std: np.ndarray
    fused: np.ndarray
    attention: tuple[LayerAttention, ...]


class TrainedHead:
    """One fitted head with the input transform it was trained behind."""

    def __init__(
        self,
        module: FusionHead,
        transform: InputTransform,
        *,
        config: HeadConfig,
        history: TrainingHistory,
        seed: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.module = module.eval()
        self.transform = transform
        self.config = config
        self.history = history
        self.seed = seed
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def predict(self, sample: GraphSample) -> HeadOutput:
        """Predict every node of ``sample`` (targets in it are ignored)."""
        _check_width(sample, self.transform)
        return self._run(self.transform.apply(sample, self.device), _edges(sample, self.device))

    def _run(self, x: Tensor, edge_index: Tensor, *, attention: bool = True) -> HeadOutput:
        """Forward ``(n, k)`` transformed inputs; attention left empty when not asked for."""
        with torch.no_grad():
            trace = self.module(x, edge_index, return_attention=True)
        return HeadOutput(
            mean=self.transform.unscale_targets(trace.prediction.cpu().numpy()),
            fused=trace.fused.cpu().numpy(),
            attention=tuple(
                LayerAttention(edge_index=e.cpu().numpy(), alpha=a.cpu().numpy())
                for e, a in trace.attention
            )
            if attention
            else (),
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the head to ``directory`` (created if needed); returns it."""
        return _write(Path(directory), [self], self.metadata)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str = "cpu") -> TrainedHead:
        """Read a head written by :meth:`save` (or a one-member ensemble)."""
        members = _read(Path(directory), torch_device(device))
        if len(members) != 1:
            raise ModelMismatchError(
                f"{directory} holds an ensemble of {len(members)} heads, not one: read it with Ensemble.load"
            )
        return members[0]


class Ensemble:
    """Heads trained alike from different seeds behind one shared input transform."""

    def __init__(
        self, members: Sequence[TrainedHead], *, noise_std: np.ndarray | None = None
    ) -> None:
        if not members:
            raise InvalidParameterError("an ensemble needs at least one member")
        self.members = tuple(members)
        # (t,) residual spread of the ensemble mean on held-out training nodes, target units:
        # the members' disagreement alone (epistemic) would leave the noise of the data out.
        self.noise_std = noise_std

    @property
    def metadata(self) -> dict[str, Any]:
        return self.members[0].metadata

    def predict(self, sample: GraphSample) -> EnsembleOutput:
        """Mean and spread of the members' predictions for every node of ``sample``."""
        first = self.members[0]
        _check_width(sample, first.transform)
        edges = _edges(sample, first.device)
        inputs: dict[int, Tensor] = {}  # members fitted together share one transform: apply it once
        outputs = []
        for i, member in enumerate(self.members):
            key = id(member.transform)
            if key not in inputs:
                inputs[key] = member.transform.apply(sample, member.device)
            outputs.append(member._run(inputs[key], edges.to(member.device), attention=i == 0))
        means = np.stack([o.mean for o in outputs])  # (m, n, t)
        variance = means.var(axis=0)
        if self.noise_std is not None:
            variance = variance + self.noise_std.astype(np.float32) ** 2
        return EnsembleOutput(
            mean=means.mean(axis=0),
            std=np.sqrt(variance),
            fused=np.concatenate([o.fused for o in outputs], axis=1),  # (n, hidden × m)
            attention=outputs[0].attention,
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write all members to ``directory`` (created if needed); returns it."""
        return _write(Path(directory), list(self.members), self.metadata, noise_std=self.noise_std)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str = "cpu") -> Ensemble:
        """Read an ensemble (or a single head) written by ``save``."""
        directory = Path(directory)
        members = _read(directory, torch_device(device))
        noise = json.loads((directory / "head.json").read_text()).get("noise_std")
        return cls(members, noise_std=None if noise is None else np.asarray(noise, np.float32))


def _edges(sample: GraphSample, device: torch.device) -> Tensor:
    return torch.from_numpy(sample.edge_index.astype(np.int64)).to(device)  # (2, E)


def _check_width(sample: GraphSample, transform: InputTransform) -> None:
    if sample.x.shape[1] != transform.in_dim:
        raise ModelMismatchError(
            f"sample {sample.sample_id!r} has {sample.x.shape[1]}-dim embeddings but the head was trained on "
            f"{transform.in_dim}-dim ones: predict with embeddings of the same encoder"
        )


def torch_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:<i>"`` as a device, with CUDA checked to be there."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InvalidParameterError(f"device must be 'cpu' or 'cuda[:i]', got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"device {name!r} asked for but CUDA is not available: use device='cpu'"
        )
    if device.type not in ("cpu", "cuda"):
        raise InvalidParameterError(f"device must be 'cpu' or 'cuda[:i]', got {name!r}")
    return device


def _write(
    directory: Path,
    members: Sequence[TrainedHead],
    metadata: Mapping[str, Any],
    *,
    noise_std: np.ndarray | None = None,
) -> Path:
    """Write ``members`` (sharing one transform and config) as the module docstring lays out."""
    first = members[0]
    transform = first.transform
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": first.config.to_dict(),
        "in_dim": transform.in_dim,
        "n_targets": int(transform.y_mean.shape[0]),
        "transform": {
            name: getattr(transform, name).tolist()
            for name in ("x_mean", "x_scale", "y_mean", "y_std")
        },
        "pca": transform.components is not None,
        "sample_norm": transform.sample_norm,
        "members": [
            {
                "seed": m.seed,
                "best_epoch": m.history.best_epoch,
                "train_loss": list(m.history.train_loss),
                "val_loss": list(m.history.val_loss),
                "steps": list(m.history.steps),
            }
            for m in members
        ],
        "metadata": dict(metadata),
        "noise_std": None if noise_std is None else [float(v) for v in noise_std],
    }
    try:  # before touching the directory: a failed save leaves the previous model whole
        text = json.dumps(header, indent=1)
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(
            f"model metadata must be plain JSON (str, numbers, lists, dicts): {err}"
        ) from err
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "head.json").unlink(missing_ok=True)  # overwriting: incomplete until rewritten
    if transform.components is not None:
        save_file(
            {"components": torch.from_numpy(transform.components)},
            directory / "transform.safetensors",
        )
    for i, member in enumerate(members):
        state = {k: v.detach().cpu().contiguous() for k, v in member.module.state_dict().items()}
        save_file(state, directory / f"member_{i}.safetensors")
    (directory / "head.json").write_text(text)  # last: see the module docstring
    return directory


def _read(directory: Path, device: torch.device) -> list[TrainedHead]:
    """The heads of a directory written by :func:`_write`, on ``device``."""
    try:
        header = json.loads((directory / "head.json").read_text())
        if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
            raise ModelMismatchError(
                f"{directory} holds {header.get('format')!r} version {header.get('version')!r}, "
                f"this tmescope reads {FORMAT!r} version {FORMAT_VERSION}"
            )
        config = HeadConfig.from_dict(header["config"])
        stats = {k: np.asarray(v, np.float32) for k, v in header["transform"].items()}
        components = None
        if header["pca"]:
            components = load_file(directory / "transform.safetensors")["components"].numpy()
        transform = InputTransform(
            components=components, sample_norm=header["sample_norm"], **stats
        )
        members = []
        for i, record in enumerate(header["members"]):
            module = FusionHead(
                transform.out_dim,
                header["n_targets"],
                hidden=config.hidden,
                heads=config.heads,
                dropout=config.dropout,
            )
            module.load_state_dict(load_file(directory / f"member_{i}.safetensors"))
            history = TrainingHistory(
                tuple(record["train_loss"]),
                tuple(record["val_loss"]),
                tuple(record["steps"]),
                record["best_epoch"],
            )
            members.append(
                TrainedHead(
                    module.to(device),
                    transform,
                    config=config,
                    history=history,
                    seed=record["seed"],
                    metadata=header["metadata"],
                )
            )
    except ModelMismatchError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise ModelMismatchError(
            f"{directory} is not a readable fusion head directory ({type(err).__name__}: {err}); "
            "write it with TrainedHead.save or Ensemble.save"
        ) from err
    return members
