"""UNI and UNI2-h (Mahmood Lab): self-supervised (DINOv2) ViTs for pathology.

Chen et al., "Towards a general-purpose foundation model for computational pathology",
Nat Med 2024 (doi:10.1038/s41591-024-02857-3). Architecture arguments are the ones the model
cards (huggingface.co/MahmoodLab/UNI, /UNI2-h) and mahmoodlab/TRIDENT pass to timm for the
offline path; precision is TRIDENT's. Both repositories are gated (CC-BY-NC-ND-4.0: accept
the terms with an institutional e-mail). Tiles: 20× (0.5 µm/px), 224 px, ImageNet mean/std.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmescope.embed.encoders._timm import TINY_VIT, create_timm_model
from tmescope.embed.registry import register_encoder

if TYPE_CHECKING:
    from torch import nn


@register_encoder(
    name="uni",
    embed_dim=1024,
    input_px=224,
    mpp=0.5,
    pooling="cls",
    precision="fp16",
    n_params=303_400_000,
    licence="CC-BY-NC-ND-4.0",
    gated=True,
    hf_repo="MahmoodLab/UNI",
    small=TINY_VIT,
)
def uni(**overrides: Any) -> nn.Module:
    """UNI: ViT-L/16 with LayerScale, DINOv2 on 100k H&E slides; class token, 1024-d."""
    args = {
        "img_size": 224,
        "patch_size": 16,
        "init_values": 1e-5,
        "num_classes": 0,
        "dynamic_img_size": True,
    }
    return create_timm_model("vit_large_patch16_224", args, overrides)


@register_encoder(
    name="uni2-h",
    embed_dim=1536,
    input_px=224,
    mpp=0.5,
    pooling="cls",
    precision="bf16",
    n_params=681_400_000,
    licence="CC-BY-NC-ND-4.0",
    gated=True,
    hf_repo="MahmoodLab/UNI2-h",
    small=TINY_VIT,
)
def uni2_h(**overrides: Any) -> nn.Module:
    """UNI2-h: ViT-H/14, SwiGLU, 8 register tokens, 200M+ tiles; class token, 1536-d."""
    import timm
    import torch

    args = {
        "img_size": 224,
        "patch_size": 14,
        "depth": 24,
        "num_heads": 24,
        "init_values": 1e-5,
        "embed_dim": 1536,
        "mlp_ratio": 2.66667 * 2,
        "num_classes": 0,
        "no_embed_class": True,
        "mlp_layer": timm.layers.SwiGLUPacked,
        "act_layer": torch.nn.SiLU,
        "reg_tokens": 8,
        "dynamic_img_size": True,
    }
    return create_timm_model("vit_giant_patch14_224", args, overrides)
