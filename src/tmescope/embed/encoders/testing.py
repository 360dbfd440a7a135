"""Untrained test encoders: small timm ViTs with seeded random weights, fast on a CPU.

They need no download: every process builds identical weights from the seed, so tests, demos
and CI run the whole embedding path (and the store's fingerprint checks) offline. Their
embeddings mean nothing biologically. Both take 224-px tiles at 0.5 µm/px with ImageNet
mean/std, like the real models. 32-px patches (49 tokens) keep them fast: the standard
ViT-Ti/16 embeds only ~44 patches/s on 2 CPU cores, ViT-Ti/32 ~280.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmescope.embed.encoders._timm import create_timm_model
from tmescope.embed.registry import register_encoder

if TYPE_CHECKING:
    from torch import nn


@register_encoder(
    name="test-vit-tiny",
    embed_dim=192,
    input_px=224,
    mpp=0.5,
    pooling="cls",
    precision="fp32",
    n_params=5_938_560,
    licence="none (random weights)",
    seed=0,
)
def test_vit_tiny(**overrides: Any) -> nn.Module:
    """Test ViT-Ti/32 (192 wide, 12 blocks), seeded random weights; class token, 192-d."""
    args = {"img_size": 224, "patch_size": 32, "num_classes": 0}
    return create_timm_model("vit_tiny_patch16_224", args, overrides)


@register_encoder(
    name="test-vit-small",
    embed_dim=768,
    input_px=224,
    mpp=0.5,
    pooling="cls+mean",
    precision="fp32",
    n_params=22_497_024,
    licence="none (random weights)",
    seed=0,
)
def test_vit_small(**overrides: Any) -> nn.Module:
    """Test ViT-S/32 with 4 registers, seeded random weights; class + mean token, 768-d."""
    args = {"img_size": 224, "patch_size": 32, "reg_tokens": 4, "num_classes": 0}
    return create_timm_model("vit_small_patch16_224", args, overrides)
