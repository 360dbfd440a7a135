"""The encoder module: normalised patches in, one pooled embedding per patch out.

The backbone is the architecture exactly as its checkpoint expects it (so a state dict loads
into it strictly); this wrapper reads its final-layer tokens and pools them the way the model's
authors do: the class token, or the class token with the mean of the patch tokens (register
tokens skipped, Virchow-style), or the mean of a CNN's feature map.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tmescope.errors import InvalidParameterError

if TYPE_CHECKING:
    from tmescope.embed.registry import EncoderSpec, Pooling, Precision

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Encoder(nn.Module):
    """A frozen encoder: ``(B, 3, input_px, input_px)`` normalised patches → ``(B, dim)``.

    Made by :func:`~tmescope.embed.registry.create_encoder`; ``spec`` says what it needs
    (µm/px, mean/std, precision) and ``weights_id`` which weights it holds (``sha256:<hex>`` of
    the file, or ``seed:<n>`` for a seeded test encoder). Wrap a randomly initialised
    ``spec.build()`` with ``weights_id="random"`` to time a model without its weights.
    """

    def __init__(self, backbone: nn.Module, *, spec: EncoderSpec, weights_id: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.weights_id = weights_id
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled float32 embeddings ``(B, dim)`` of a normalised batch ``(B, 3, px, px)``."""
        tokens, n_prefix = self.tokens(x)
        return pool_tokens(tokens, pooling=self.spec.pooling, n_prefix=n_prefix).float()

    def forward_with_grid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled embeddings ``(B, dim)`` and the patch tokens as a grid ``(B, g, g, D)``.

        One forward pass gives both: the grid's row ``i`` and column ``j`` is the token over
        the patch's ``i``-th band from the top and ``j``-th from the left.
        """
        tokens, n_prefix = self.tokens(x)
        pooled = pool_tokens(tokens, pooling=self.spec.pooling, n_prefix=n_prefix).float()
        return pooled, patch_token_grid(tokens, n_prefix=n_prefix)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Final-layer tokens ``(B, N, D)`` and how many lead them (class + register tokens)."""
        px = self.spec.input_px
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (px, px):
            raise InvalidParameterError(
                f"encoder {self.spec.name!r} takes a batch of shape (B, 3, {px}, {px}), found "
                f"{tuple(x.shape)}: extract patches at {self.spec.input_px} px"
            )
        backbone: Any = self.backbone  # a timm or transformers model, beyond nn.Module's typing
        if self.spec.backend == "transformers":
            hidden = backbone(pixel_values=x).last_hidden_state  # (B, N, D)
            registers = getattr(backbone.config, "num_register_tokens", 0) or 0
            return hidden, 1 + int(registers)
        features = backbone.forward_features(x)
        if features.ndim == 4:  # a CNN's feature map (B, C, h, w) read as h·w tokens (B, h·w, C)
            return features.flatten(2).transpose(1, 2), 0
        return features, int(backbone.num_prefix_tokens)

    def autocast(
        self, precision: Precision | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Autocast to ``precision`` (default: the spec's) on the device the weights are on."""
        precision = precision or self.spec.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        device_type = next(self.parameters()).device.type
        return torch.autocast(device_type=device_type, dtype=_DTYPES[precision])


def patch_token_grid(tokens: torch.Tensor, *, n_prefix: int) -> torch.Tensor:
    """The patch tokens of ``(B, N, D)`` tokens as a square grid ``(B, g, g, D)``."""
    patches = tokens[:, n_prefix:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1] or side == 0:
        raise ValueError(
            f"{patches.shape[1]} patch tokens do not form a square grid: the encoder's tokens "
            "cannot be placed on its patch"
        )
    return patches.reshape(patches.shape[0], side, side, patches.shape[2])


def token_grid_shape(encoder: Encoder) -> tuple[int, int]:
    """``(g, D)``: tokens along each side of the encoder's patch, and their width.

    Found by one forward pass of a blank patch, and kept on the encoder.
    """
    known = getattr(encoder, "_token_grid_shape", None)
    if known is None:
        px = encoder.spec.input_px
        device = next(encoder.parameters()).device
        with torch.inference_mode():
            tokens, n_prefix = encoder.tokens(torch.zeros(1, 3, px, px, device=device))
        grid = patch_token_grid(tokens, n_prefix=n_prefix)
        known = (int(grid.shape[1]), int(grid.shape[3]))
        encoder._token_grid_shape = known  # type: ignore[assignment]
    return known


def pool_tokens(tokens: torch.Tensor, *, pooling: Pooling, n_prefix: int) -> torch.Tensor:
    """Pool tokens ``(B, N, D)`` whose first ``n_prefix`` are class/register tokens.

    ``cls`` → ``(B, D)``; ``mean`` (of the patch tokens) → ``(B, D)``; ``cls+mean`` → ``(B, 2D)``.
    """
    if pooling != "mean" and n_prefix < 1:
        raise ValueError(f"pooling {pooling!r} needs a class token; these tokens have none")
    patches = tokens[:, n_prefix:]  # (B, N - n_prefix, D)
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "mean":
        return patches.mean(dim=1)
    if pooling == "cls+mean":
        return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=-1)
    raise ValueError(f"unknown pooling {pooling!r}: expected 'cls', 'mean' or 'cls+mean'")
