"""Top-down heatmap heads for landmarks: SimpleBaseline deconvolutions and HRNetV2's fused output.

- SimpleBaseline (Xiao et al. 2018): the backbone's last map (stride 32) -> 3 x (deconv 4x4/2,
  256 ch, BN, ReLU) -> conv1x1 to K heatmaps at stride 4 (64 px for a 256 px input).
- HRNetV2 (Wang et al. 2019): timm `hrnet_w18` with `features_only` and `feature_location=""`
  gives the four raw branches (strides 4, 8, 16, 32); they are upsampled to stride 4 and
  concatenated (the "fused high-resolution output", 270 ch for W18), then conv1x1 + BN + ReLU
  and conv1x1 to K heatmaps (mmpose's WFLW HRNetV2 head).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..normalize import InputNormalize
from .backbone import conv_bn_relu, create_feature_backbone


class SimpleBaselineHead(nn.Module):
    """`[B, C, h, w]` -> `[B, K, h * 2**num_deconv, w * 2**num_deconv]`."""

    def __init__(self, in_channels: int, num_points: int, channels: int = 256, num_deconv: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels, num_points, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.final(self.deconv(features[-1]))


class HRNetV2Head(nn.Module):
    """Branches `[B, C_i, h / 2**i, w / 2**i]` -> upsample + concat -> conv1x1s -> `[B, K, h, w]`."""

    def __init__(self, in_channels: Sequence[int], num_points: int) -> None:
        super().__init__()
        total = int(sum(in_channels))
        self.fuse = conv_bn_relu(total, total, 1)
        self.final = nn.Conv2d(total, num_points, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        fused = torch.cat(
            [features[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]],
            dim=1,
        )
        return self.final(self.fuse(fused))


class TopDownHeatmapNet(nn.Module):
    """Backbone + heatmap head; forward(images `[B, 3, H, W]` in [0, 1]) -> heatmaps `[B, K, H/4, W/4]`."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.normalize = InputNormalize.of(backbone)
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.normalize(images)))


def _is_hrnet(name: str) -> bool:
    return "hrnet" in name.lower()


def build_heatmap_model(
    backbone: str, pretrained: bool = False, num_points: int = 98, head: str = "auto", **backbone_kwargs: Any
) -> TopDownHeatmapNet:
    """SimpleBaseline ("simple") or HRNetV2 ("hrnetv2") heatmap model; "auto" picks HRNetV2 for HRNets."""
    if head == "auto":
        head = "hrnetv2" if _is_hrnet(backbone) else "simple"
    if head == "hrnetv2":
        kwargs = {"feature_location": "", "out_indices": (1, 2, 3, 4), **backbone_kwargs}
        features = create_feature_backbone(backbone, pretrained, **kwargs)
        return TopDownHeatmapNet(features, HRNetV2Head(features.feature_info.channels(), num_points))
    if head == "simple":
        features = create_feature_backbone(backbone, pretrained, out_indices=(-1,), **backbone_kwargs)
        return TopDownHeatmapNet(features, SimpleBaselineHead(features.feature_info.channels()[-1], num_points))
    raise ConfigError(f"unknown heatmap head {head!r}; use 'simple', 'hrnetv2' or 'auto'")
