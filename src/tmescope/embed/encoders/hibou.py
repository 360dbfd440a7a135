"""Hibou-B (HistAI): DINOv2 ViT-B/14 with SwiGLU and 4 register tokens.

Nechaev et al., "Hibou: a family of foundational vision transformers for pathology",
arXiv:2406.05074. The hub model (huggingface.co/histai/hibou-b) needs ``trust_remote_code``:
its code is transformers' DINOv2 with registers added (HistAI/hibou README) and imports
``transformers.onnx``, gone in transformers 5 (lazyslide-models). tmescope never runs remote code: it builds the same architecture with
transformers' own ``Dinov2WithRegistersModel`` (ViT-B/14, SwiGLU, LayerScale, 4 registers,
224-px position grid — the grid the 85.7M published parameters imply) and loads the snapshot's
weights into it strictly. The embedding is the card's ``pooler_output``: the final, normalised
class token (768-d), fp32 as in mahmoodlab/TRIDENT. Tiles: 224 px at 20× (0.5 µm/px), HistAI's
mean/std. Apache-2.0, not gated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmescope.embed.registry import register_encoder

if TYPE_CHECKING:
    from torch import nn


@register_encoder(
    name="hibou-b",
    embed_dim=768,
    input_px=224,
    mpp=0.5,
    mean=(0.7068, 0.5755, 0.722),
    std=(0.195, 0.2316, 0.1816),
    pooling="cls",
    precision="fp32",
    n_params=85_700_000,
    licence="Apache-2.0",
    gated=False,
    hf_repo="histai/hibou-b",
    backend="transformers",
    small={"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4},
)
def hibou_b(**overrides: Any) -> nn.Module:
    """Hibou-B: ViT-B/14 (DINOv2), SwiGLU, 4 registers; class token, 768-d."""
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    config = {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "mlp_ratio": 4,
        "image_size": 224,
        "patch_size": 14,
        "num_register_tokens": 4,
        "use_swiglu_ffn": True,
        "layerscale_value": 1e-5,
        "layer_norm_eps": 1e-6,
    }
    return Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**{**config, **overrides}))
