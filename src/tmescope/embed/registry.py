"""The encoder registry: one entry per model, added by decorator, looked up by name.

Each model family is one file under ``tmescope/embed/encoders/``. There, a builder function that
makes the architecture locally (timm or transformers, random weights, never a download) carries
``@register_encoder(...)`` with everything else the model needs: embedding size, input pixels,
target µm/px, normalisation, pooling, precision, licence and where its weights live. Adding a
model is adding one file (the registry imports every module of that package on first lookup).
The idea is timm's ``register_model`` with lazyslide-models' per-family metadata.

Importing this module loads neither torch nor any model library: listing and describing the
encoders is cheap; :func:`create_encoder` imports them when it builds one.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from tmescope.errors import UnknownEncoderError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tmescope.embed.encoder import Encoder

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EncoderSpec",
    "create_encoder",
    "describe_encoders",
    "encoder_fingerprint",
    "get_encoder_spec",
    "list_encoders",
    "register_encoder",
]

logger = logging.getLogger(__name__)

Pooling = Literal["cls", "cls+mean", "mean"]
Precision = Literal["bf16", "fp16", "fp32"]
Backend = Literal["timm", "transformers"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Looked for, in this order, in a Hugging Face snapshot or a folder given as weights.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

Builder = TypeVar("Builder", bound=Callable[..., "nn.Module"])


@dataclass(frozen=True)
class EncoderSpec:
    """Everything one model needs, from architecture to licence.

    ``build`` makes the full architecture with random weights (no download); ``build_small``
    the same family at a toy width and depth, so tests run every entry on a CPU. Pooling:
    ``cls`` (final class token), ``cls+mean`` (class token concatenated with the mean of the
    patch tokens, register tokens skipped) or ``mean`` (mean of patch tokens or of a CNN's
    feature map). ``seed`` marks an untrained test encoder, built identically in every process
    without weights. ``unused_keys`` are checkpoint key prefixes the encoder does not use
    (a classifier head, a pooler) and drops before strict loading.
    """

    name: str
    build: Callable[[], nn.Module]
    build_small: Callable[[], nn.Module]
    embed_dim: int
    input_px: int
    mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pooling: Pooling
    precision: Precision
    n_params: int
    licence: str
    gated: bool
    hf_repo: str | None
    backend: Backend = "timm"
    seed: int | None = None
    weight_files: tuple[str, ...] = WEIGHT_FILES
    unused_keys: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        for field, allowed in (
            ("pooling", Pooling),
            ("precision", Precision),
            ("backend", Backend),
        ):
            if getattr(self, field) not in get_args(allowed):
                raise ValueError(
                    f"encoder {self.name!r}: {field} must be one of {get_args(allowed)}, "
                    f"found {getattr(self, field)!r}"
                )
        if self.embed_dim <= 0 or self.input_px <= 0 or self.mpp <= 0:
            raise ValueError(
                f"encoder {self.name!r}: embed_dim, input_px and mpp must be positive, found "
                f"{self.embed_dim}, {self.input_px}, {self.mpp}"
            )

    @property
    def needs_weights(self) -> bool:
        """Whether a weights file is required (every real model; test encoders are seeded)."""
        return self.seed is None


_REGISTRY: dict[str, EncoderSpec] = {}
_discovered = False


def register_encoder(
    *,
    name: str,
    embed_dim: int,
    input_px: int,
    mpp: float,
    pooling: Pooling,
    precision: Precision,
    n_params: int,
    licence: str,
    gated: bool = False,
    hf_repo: str | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    backend: Backend = "timm",
    small: Mapping[str, Any] | None = None,
    seed: int | None = None,
    weight_files: tuple[str, ...] = WEIGHT_FILES,
    unused_keys: tuple[str, ...] = (),
) -> Callable[[Builder], Builder]:
    """Register the decorated builder ``fn(**overrides) -> nn.Module`` as encoder ``name``.

    ``small`` holds the overrides (width, depth, heads) of the toy build used by tests; without
    it the full build is small already. The builder's first docstring line describes the entry.
    """

    def decorate(fn: Builder) -> Builder:
        if name != _canonical(name):
            raise ValueError(f"encoder name {name!r} must be lower case with hyphens")
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is registered twice")
        _REGISTRY[name] = EncoderSpec(
            name=name,
            build=fn,
            build_small=functools.partial(fn, **small) if small else fn,
            embed_dim=embed_dim,
            input_px=input_px,
            mpp=mpp,
            mean=mean,
            std=std,
            pooling=pooling,
            precision=precision,
            n_params=n_params,
            licence=licence,
            gated=gated,
            hf_repo=hf_repo,
            backend=backend,
            seed=seed,
            weight_files=weight_files,
            unused_keys=unused_keys,
            description=(inspect.getdoc(fn) or "").split("\n")[0],
        )
        return fn

    return decorate


def list_encoders() -> list[str]:
    """Names of every registered encoder, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The spec registered as ``name`` (case and ``_``/``-`` do not matter).

    An unknown name raises :class:`UnknownEncoderError` naming the closest known ones.
    """
    _discover()
    key = _canonical(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownEncoderError(
        f"unknown encoder {name!r}: {hint}known encoders: {', '.join(sorted(_REGISTRY))} "
        "(`tmescope encoders` describes them)"
    )


def create_encoder(
    name: str | EncoderSpec,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Encoder:
    """Build encoder ``name`` with its weights, frozen, in eval mode, on ``device``.

    Weights come from ``weights`` (a ``.safetensors`` file, a PyTorch checkpoint read with
    ``weights_only=True``, or a folder holding one), else from a snapshot of the model's
    Hugging Face repository already in the local cache (never the network); test encoders
    without either are built from their seed. The architecture is built locally and the state
    dict loaded strictly: a file that does not fit raises :class:`~tmescope.errors.WeightsError`;
    a real model with no weights raises :class:`~tmescope.errors.WeightsNotFoundError`
    (:class:`~tmescope.errors.GatedModelError` for gated ones) saying how to get them.
    """
    from tmescope.embed.encoder import Encoder
    from tmescope.embed.weights import build_seeded, load_weights, locate_weights

    spec = name if isinstance(name, EncoderSpec) else get_encoder_spec(name)
    path = locate_weights(spec, weights)
    if path is None:
        backbone, weights_id = build_seeded(spec.build, seed=spec.seed), f"seed:{spec.seed}"
    else:
        backbone, weights_id = load_weights(spec, path)
        logger.info("encoder %s: weights %s (%s)", spec.name, path, weights_id)
    return Encoder(backbone, spec=spec, weights_id=weights_id).to(device)


def encoder_fingerprint(encoder: Encoder) -> dict[str, Any]:
    """What makes two encoders' embeddings comparable (JSON-serialisable).

    The store refuses to mix embeddings whose fingerprints differ.
    """
    spec = encoder.spec
    return {
        "model": spec.name,
        "weights": encoder.weights_id,
        "input_px": spec.input_px,
        "mpp": spec.mpp,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "pooling": spec.pooling,
        "embed_dim": spec.embed_dim,
    }


def describe_encoders() -> list[dict[str, Any]]:
    """One JSON-serialisable row per encoder, for ``tmescope encoders [--json]``.

    ``weights_found`` says whether a Hugging Face snapshot is in the local cache (no network);
    it is ``None`` for test encoders, which need no weights.
    """
    from tmescope.embed.hf_cache import find_cached_file

    rows = []
    for name in list_encoders():
        spec = _REGISTRY[name]
        found: bool | None = None
        if spec.needs_weights:
            found = spec.hf_repo is not None and (
                find_cached_file(spec.hf_repo, spec.weight_files) is not None
            )
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "dim": spec.embed_dim,
                "input_px": spec.input_px,
                "mpp": spec.mpp,
                "pooling": spec.pooling,
                "precision": spec.precision,
                "params": spec.n_params,
                "licence": spec.licence,
                "gated": spec.gated,
                "hf_repo": spec.hf_repo,
                "weights_found": found,
            }
        )
    return rows


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _discover() -> None:
    """Import every family module of ``tmescope.embed.encoders`` once (each registers itself)."""
    global _discovered
    if _discovered:
        return
    from tmescope.embed import encoders

    for module in pkgutil.iter_modules(encoders.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{encoders.__name__}.{module.name}")
    _discovered = True
