"""BiSeNetV1 (Yu et al., ECCV 2018) on a zoo/timm backbone, following mmseg's BiSeNetV1.

Context path: the backbone's stride-16 and stride-32 maps (`features_only`), attention
refinement modules (ARM) on both, a global-context vector added at stride 32, upsampled and
refined to stride 8. Spatial path: 4 convs to stride 8. Feature fusion module (FFM) joins the
two; an FCN head gives the logits, two auxiliary FCN heads (on the stride-8 and stride-16
context maps) give auxiliary logits in training mode. All logits are upsampled to the input size.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..normalize import InputNormalize
from .backbone import conv_bn_relu, create_feature_backbone, feature_index


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class AttentionRefinement(nn.Module):
    """ARM: conv3x3, then channel attention from the pooled map. `[B, Cin, h, w] -> [B, Cout, h, w]`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels, 3)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * self.attention(x)


class ContextPath(nn.Module):
    """Backbone stride-16/32 maps -> context maps at stride 8 and 16 (`[B, C, H/8, W/8]`, `[B, C, H/16, W/16]`)."""

    def __init__(self, backbone: nn.Module, context_channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.index16 = feature_index(backbone, 16)
        self.index32 = feature_index(backbone, 32)
        channels = backbone.feature_info.channels()
        c16, c32 = channels[self.index16], channels[self.index32]
        self.arm16 = AttentionRefinement(c16, context_channels)
        self.arm32 = AttentionRefinement(c32, context_channels)
        self.global_context = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_relu(c32, context_channels, 1))
        self.refine32 = conv_bn_relu(context_channels, context_channels, 3)
        self.refine16 = conv_bn_relu(context_channels, context_channels, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        x16, x32 = features[self.index16], features[self.index32]
        up32 = self.refine32(_resize(self.arm32(x32) + self.global_context(x32), x16.shape[-2:]))
        size8 = (x16.shape[-2] * 2, x16.shape[-1] * 2)
        up16 = self.refine16(_resize(self.arm16(x16) + up32, size8))
        return up16, up32


class SpatialPath(nn.Module):
    """Image -> stride-8 detail map: conv7x7/2, conv3x3/2, conv3x3/2, conv1x1. `[B, 3, H, W] -> [B, C, H/8, W/8]`."""

    def __init__(self, channels: Sequence[int] = (64, 64, 64, 128)) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.layers = nn.Sequential(
            conv_bn_relu(3, c1, 7, 2), conv_bn_relu(c1, c2, 3, 2), conv_bn_relu(c2, c3, 3, 2), conv_bn_relu(c3, c4, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class FeatureFusion(nn.Module):
    """FFM: concat, conv1x1, channel attention, residual. `[B, Cs, h, w] + [B, Cc, h, w] -> [B, Cout, h, w]`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels, 1)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_relu(out_channels, out_channels, 1), nn.Sigmoid())

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.conv(torch.cat([spatial, context], dim=1))
        return x + x * self.attention(x)


class FCNHead(nn.Module):
    """One conv3x3 + dropout + conv1x1 classifier. `[B, Cin, h, w] -> [B, num_classes, h, w]`."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(x)))


class BiSeNetV1(nn.Module):
    """BiSeNetV1 for `num_classes` labels on a `features_only` backbone; input images in [0, 1].

    forward(images `[B, 3, H, W]`) -> logits `[B, num_classes, H, W]` in eval mode, and
    (logits, aux16, aux32) — each `[B, num_classes, H, W]` — in training mode.
    mmseg's R18 setting: context 128, spatial (64, 64, 64, 128), fusion 256, aux 64;
    R50: 512, (256, 256, 256, 512), 1024, 256.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 19,
        context_channels: int = 128,
        spatial_channels: Sequence[int] = (64, 64, 64, 128),
        fusion_channels: int = 256,
        aux_channels: int = 64,
    ) -> None:
        super().__init__()
        self.normalize = InputNormalize.of(backbone)
        self.context_path = ContextPath(backbone, context_channels)
        self.spatial_path = SpatialPath(spatial_channels)
        self.fusion = FeatureFusion(spatial_channels[-1] + context_channels, fusion_channels)
        self.head = FCNHead(fusion_channels, fusion_channels, num_classes)
        self.aux_head16 = FCNHead(context_channels, aux_channels, num_classes)
        self.aux_head32 = FCNHead(context_channels, aux_channels, num_classes)
        self.num_classes = num_classes

    @property
    def backbone(self) -> nn.Module:
        return self.context_path.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = images.shape[-2:]
        x = self.normalize(images)
        context8, context16 = self.context_path(x)
        spatial = self.spatial_path(x)
        if spatial.shape[-2:] != context8.shape[-2:]:
            context8 = _resize(context8, spatial.shape[-2:])
        logits = _resize(self.head(self.fusion(spatial, context8)), size)
        if not self.training:
            return logits
        return logits, _resize(self.aux_head16(context8), size), _resize(self.aux_head32(context16), size)


#: mmseg's BiSeNetV1 widths for a ResNet-18-like (512-channel) and ResNet-50-like (2048) backbone
BISENET_WIDTHS = {
    "r18": dict(context_channels=128, spatial_channels=(64, 64, 64, 128), fusion_channels=256, aux_channels=64),
    "r50": dict(context_channels=512, spatial_channels=(256, 256, 256, 512), fusion_channels=1024, aux_channels=256),
}


def build_bisenet(
    backbone: str, pretrained: bool = False, num_classes: int = 19, widths: str = "auto", **backbone_kwargs: Any
) -> BiSeNetV1:
    """BiSeNetV1 around a zoo/timm backbone name; `widths` "r18", "r50" or "auto" (by the stride-32 channels)."""
    if widths != "auto" and widths not in BISENET_WIDTHS:
        choices = ", ".join(repr(name) for name in ("auto", *BISENET_WIDTHS))
        raise ConfigError(f"unknown BiSeNetV1 widths (bisenet_widths) {widths!r}; use one of {choices}")
    features = create_feature_backbone(backbone, pretrained, **backbone_kwargs)
    if widths == "auto":
        widths = "r50" if features.feature_info.channels()[feature_index(features, 32)] >= 1024 else "r18"
    return BiSeNetV1(features, num_classes=num_classes, **BISENET_WIDTHS[widths])
