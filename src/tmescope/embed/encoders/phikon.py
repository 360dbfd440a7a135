"""Phikon and Phikon-v2 (Owkin): transformers ViTs, embedded with the class token.

Filiot et al., "Scaling self-supervised learning for histopathology with masked image
modeling", medRxiv 2023 (doi:10.1101/2023.07.21.23292757): iBOT ViT-B/16 on 40M TCGA tiles.
Filiot et al., "Phikon-v2, a large and public feature extractor for biomarker prediction",
arXiv:2409.09173: DINOv2 ViT-L/16 on 460M tiles. Both load in transformers (``ViTModel`` without
its pooler; ``Dinov2Model``); the configs below are those architectures at the published sizes
(huggingface.co/owkin/phikon, /phikon-v2), the embedding is the final class token
(``last_hidden_state[:, 0]``) in fp32, as in the cards and mahmoodlab/TRIDENT. Tiles: 224 px at
20× (0.5 µm/px), ImageNet mean/std. Owkin non-commercial licence; not gated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmescope.embed.registry import register_encoder

if TYPE_CHECKING:
    from torch import nn

# Toy width and depth for tests (transformers config names).
_TINY = {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4}


@register_encoder(
    name="phikon",
    embed_dim=768,
    input_px=224,
    mpp=0.5,
    pooling="cls",
    precision="fp32",
    n_params=85_800_000,
    licence="Owkin non-commercial licence",
    gated=False,
    hf_repo="owkin/phikon",
    backend="transformers",
    small={**_TINY, "intermediate_size": 192},
    # ViTModel checkpoints may carry the pooler Phikon is used without (add_pooling_layer=False).
    unused_keys=("pooler.",),
)
def phikon(**overrides: Any) -> nn.Module:
    """Phikon: ViT-B/16 (iBOT), 40M TCGA tiles; class token, 768-d."""
    from transformers import ViTConfig, ViTModel

    config = {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "image_size": 224,
        "patch_size": 16,
        "qkv_bias": True,
        "layer_norm_eps": 1e-12,
    }
    return ViTModel(ViTConfig(**{**config, **overrides}), add_pooling_layer=False)


@register_encoder(
    name="phikon-v2",
    embed_dim=1024,
    input_px=224,
    mpp=0.5,
    pooling="cls",
    precision="fp32",
    n_params=303_400_000,
    licence="Owkin non-commercial licence",
    gated=False,
    hf_repo="owkin/phikon-v2",
    backend="transformers",
    small=_TINY,
)
def phikon_v2(**overrides: Any) -> nn.Module:
    """Phikon-v2: ViT-L/16 (DINOv2), 460M tiles; class token, 1024-d."""
    from transformers import Dinov2Config, Dinov2Model

    config = {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "mlp_ratio": 4,
        "image_size": 224,
        "patch_size": 16,
        "layerscale_value": 1e-5,
        "layer_norm_eps": 1e-6,
        "use_swiglu_ffn": False,
    }
    return Dinov2Model(Dinov2Config(**{**config, **overrides}))
