"""Building timm architectures offline, shared by the timm-based family files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# Toy ViT of any timm family: tests build every entry at this size on a CPU. 48 keeps
# ``embed_dim * mlp_ratio`` even, which timm's packed SwiGLU (UNI2-h, Virchow) requires.
TINY_VIT: Mapping[str, Any] = {"embed_dim": 48, "depth": 2, "num_heads": 4}


def create_timm_model(
    arch: str, args: Mapping[str, Any], overrides: Mapping[str, Any]
) -> nn.Module:
    """``timm.create_model(arch, **args, **overrides)`` with random weights, never downloaded."""
    import timm

    return timm.create_model(arch, pretrained=False, **{**args, **overrides})
