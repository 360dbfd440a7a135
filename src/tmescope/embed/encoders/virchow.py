"""Virchow and Virchow2 (Paige): ViT-H/14 with SwiGLU, pooled as class token + mean token.

Vorontsov et al., "A foundation model for clinical-grade computational pathology and rare
cancers detection", Nat Med 2024 (doi:10.1038/s41591-024-03141-0); Zimmermann et al.,
"Virchow2: scaling self-supervised mixed magnification models in pathology", arXiv:2408.00738.
Architecture arguments follow the model cards (huggingface.co/paige-ai/Virchow, /Virchow2) and
mahmoodlab/TRIDENT's offline path; the cards' embedding concatenates the class token with the
mean of the patch tokens (2560-d), skipping Virchow2's 4 register tokens, and runs under fp16
autocast. Both are gated. Tiles: 224 px at 20× (0.5 µm/px), ImageNet mean/std.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmescope.embed.encoders._timm import TINY_VIT, create_timm_model
from tmescope.embed.registry import register_encoder

if TYPE_CHECKING:
    from torch import nn


def _virchow(reg_tokens: int, overrides: dict[str, Any]) -> nn.Module:
    import timm
    import torch

    args = {
        "img_size": 224,
        "init_values": 1e-5,
        "num_classes": 0,
        "reg_tokens": reg_tokens,
        "mlp_ratio": 5.3375,
        "global_pool": "",
        "dynamic_img_size": True,
        "mlp_layer": timm.layers.SwiGLUPacked,
        "act_layer": torch.nn.SiLU,
    }
    return create_timm_model("vit_huge_patch14_224", args, overrides)


@register_encoder(
    name="virchow",
    embed_dim=2560,
    input_px=224,
    mpp=0.5,
    pooling="cls+mean",
    precision="fp16",
    n_params=631_200_000,
    licence="Apache-2.0 with Paige's access terms (non-commercial research)",
    gated=True,
    hf_repo="paige-ai/Virchow",
    small=TINY_VIT,
)
def virchow(**overrides: Any) -> nn.Module:
    """Virchow: ViT-H/14, SwiGLU, 1.5M slides; class token + mean of patch tokens, 2560-d."""
    return _virchow(0, overrides)


@register_encoder(
    name="virchow2",
    embed_dim=2560,
    input_px=224,
    mpp=0.5,
    pooling="cls+mean",
    precision="fp16",
    n_params=631_200_000,
    licence="CC-BY-NC-ND-4.0",
    gated=True,
    hf_repo="paige-ai/Virchow2",
    small=TINY_VIT,
)
def virchow2(**overrides: Any) -> nn.Module:
    """Virchow2: ViT-H/14, SwiGLU, 4 registers, mixed magnification; class + mean, 2560-d."""
    return _virchow(4, overrides)
