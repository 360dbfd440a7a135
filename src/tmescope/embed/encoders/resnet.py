"""ResNet-50 trained on ImageNet: the usual non-pathology baseline.

He et al., "Deep residual learning for image recognition", CVPR 2016. Built by timm without its
classifier; the embedding is the global mean of the last feature map (2048-d), fp32. The
weights are torchvision's ImageNet-1k ones as timm publishes them (huggingface.co/timm/
resnet50.tv_in1k, BSD-3-Clause, not gated); torchvision's own ``resnet50-*.pth`` files load too
(same key names). Their 1000-class head (``fc.*``) is dropped, which is also why the parameter
count is 23.5M, not the 25.6M usually quoted with the head. Tiles: 224 px at 20× (0.5 µm/px),
ImageNet mean/std, as pathology benchmarks run it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tmescope.embed.encoders._timm import create_timm_model
from tmescope.embed.registry import register_encoder

if TYPE_CHECKING:
    from torch import nn


@register_encoder(
    name="resnet50-imagenet",
    embed_dim=2048,
    input_px=224,
    mpp=0.5,
    pooling="mean",
    precision="fp32",
    n_params=23_500_000,
    licence="BSD-3-Clause (torchvision weights)",
    gated=False,
    hf_repo="timm/resnet50.tv_in1k",
    unused_keys=("fc.",),
)
def resnet50_imagenet(**overrides: Any) -> nn.Module:
    """ResNet-50, ImageNet-1k (torchvision weights); mean of the last feature map, 2048-d."""
    return create_timm_model("resnet50", {"num_classes": 0}, overrides)
