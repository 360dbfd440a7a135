"""H-optimus-0 and H-optimus-1 (Bioptimus): ViT-g/14 with 4 register tokens, DINOv2-style.

Architecture arguments follow the model cards (huggingface.co/bioptimus/H-optimus-0, /H-optimus-1)
and mahmoodlab/TRIDENT's offline path (timm ``vit_giant_patch14_reg4_dinov2`` at 224 px); the
cards embed with the class token (1536-d) under fp16 autocast, tiles of 224 px at 0.5 µm/px,
normalised with Bioptimus' own mean/std. H-optimus-0 is Apache-2.0 and not gated; H-optimus-1
is gated, non-commercial (CC-BY-NC-ND-4.0 per lazyslide-models' registry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmescope.embed.encoders._timm import TINY_VIT, create_timm_model
from tmescope.embed.registry import register_encoder

if TYPE_CHECKING:
    from torch import nn

H_OPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
H_OPTIMUS_STD = (0.211883, 0.230117, 0.177517)


def _h_optimus(overrides: dict[str, Any]) -> nn.Module:
    args = {
        "img_size": 224,
        "num_classes": 0,
        "global_pool": "token",
        "init_values": 1e-5,
        "dynamic_img_size": True,
    }
    return create_timm_model("vit_giant_patch14_reg4_dinov2", args, overrides)


@register_encoder(
    name="h-optimus-0",
    embed_dim=1536,
    input_px=224,
    mpp=0.5,
    mean=H_OPTIMUS_MEAN,
    std=H_OPTIMUS_STD,
    pooling="cls",
    precision="fp16",
    n_params=1_134_800_000,
    licence="Apache-2.0",
    gated=False,
    hf_repo="bioptimus/H-optimus-0",
    small=TINY_VIT,
)
def h_optimus_0(**overrides: Any) -> nn.Module:
    """H-optimus-0: ViT-g/14, 4 registers, 500k+ slides; class token, 1536-d."""
    return _h_optimus(overrides)


@register_encoder(
    name="h-optimus-1",
    embed_dim=1536,
    input_px=224,
    mpp=0.5,
    mean=H_OPTIMUS_MEAN,
    std=H_OPTIMUS_STD,
    pooling="cls",
    precision="fp16",
    n_params=1_134_800_000,
    licence="CC-BY-NC-ND-4.0",
    gated=True,
    hf_repo="bioptimus/H-optimus-1",
    small=TINY_VIT,
)
def h_optimus_1(**overrides: Any) -> nn.Module:
    """H-optimus-1: ViT-g/14, 4 registers, 1M+ slides; class token, 1536-d."""
    return _h_optimus(overrides)
