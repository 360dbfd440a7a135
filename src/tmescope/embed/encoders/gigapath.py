"""Prov-GigaPath tile encoder (Providence / Microsoft): ViT-g with 16-px patches, DINOv2.

Xu et al., "A whole-slide foundation model for digital pathology from real-world data",
Nature 2024 (doi:10.1038/s41586-024-07441-w). Architecture arguments are the hub config's
(huggingface.co/prov-gigapath/prov-gigapath), as mahmoodlab/TRIDENT passes them offline: timm's
DINOv2 ViT-g (packed SwiGLU, LayerScale) with ``patch_size=16`` and ``mlp_ratio=5.33334``.
Class token, 1536-d, fp16 autocast (TRIDENT). Tiles: 256 px at 20× (0.5 µm/px), centre-cropped
to 224 px; ImageNet mean/std. Gated; Apache-2.0 with the Prov-GigaPath licence's conditions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmescope.embed.encoders._timm import TINY_VIT, create_timm_model
from tmescope.embed.registry import register_encoder

if TYPE_CHECKING:
    from torch import nn


@register_encoder(
    name="prov-gigapath",
    embed_dim=1536,
    input_px=224,
    mpp=0.5,
    pooling="cls",
    precision="fp16",
    n_params=1_135_000_000,
    licence="Apache-2.0 with the Prov-GigaPath licence's conditions (research use)",
    gated=True,
    hf_repo="prov-gigapath/prov-gigapath",
    small=TINY_VIT,
)
def prov_gigapath(**overrides: Any) -> nn.Module:
    """Prov-GigaPath: ViT-g/16, SwiGLU, 1.3B tiles of 171k slides; class token, 1536-d."""
    args = {
        "img_size": 224,
        "in_chans": 3,
        "patch_size": 16,
        "embed_dim": 1536,
        "depth": 40,
        "num_heads": 24,
        "mlp_ratio": 5.33334,
        "num_classes": 0,
        "dynamic_img_size": True,
    }
    return create_timm_model("vit_giant_patch14_dinov2", args, overrides)
