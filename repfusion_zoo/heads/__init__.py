"""Downstream heads around `features_only` zoo/timm backbones: BiSeNetV1 and top-down heatmap heads."""
from __future__ import annotations

from .backbone import create_feature_backbone, feature_index
from .bisenet import BISENET_WIDTHS, BiSeNetV1, build_bisenet
from .heatmap import HRNetV2Head, SimpleBaselineHead, TopDownHeatmapNet, build_heatmap_model

__all__ = [
    "BISENET_WIDTHS",
    "BiSeNetV1",
    "HRNetV2Head",
    "SimpleBaselineHead",
    "TopDownHeatmapNet",
    "build_bisenet",
    "build_heatmap_model",
    "create_feature_backbone",
    "feature_index",
]
