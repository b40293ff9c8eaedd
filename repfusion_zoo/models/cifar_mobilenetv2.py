"""MobileNetV2 with CIFAR strides, built with timm's EfficientNet builder.

The usual CIFAR MobileNetV2 (as in kuangliu/pytorch-cifar): the stem conv has stride 1 and the
first inverted-residual stage (24 channels) stride 1 instead of 2, so a 32 px input ends at 4x4
(reduction 8) instead of 1x1. Blocks, widths and the 1280-channel head are timm's ``mobilenetv2_100``
(same module names and state-dict keys; ReLU6, BatchNorm).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch.nn as nn
from timm.layers import create_conv2d
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._efficientnet_builder import decode_arch_def, resolve_act_layer, resolve_bn_args, round_channels
from timm.models.efficientnet import EfficientNet

from ..errors import ConfigError
from .registration import cifar_cfg, register_new_model

__all__ = ["CifarMobileNetV2"]

# timm's builder counts strides from 2 (its stride-2 stem); ours from 1.
_TIMM_STEM_REDUCTION = 2

_CIFAR_ARCH_DEF = [
    ["ds_r1_k3_s1_c16"],
    ["ir_r2_k3_s1_e6_c24"],  # stride 2 in ImageNet MobileNetV2
    ["ir_r3_k3_s2_e6_c32"],
    ["ir_r4_k3_s2_e6_c64"],
    ["ir_r3_k3_s1_e6_c96"],
    ["ir_r3_k3_s2_e6_c160"],
    ["ir_r1_k3_s1_e6_c320"],
]


class CifarMobileNetV2(EfficientNet):
    """timm's EfficientNet with a stride-1 stem conv.

    Args:
        output_stride: reduction of the last map: 8 (default), 4 or 2 (later blocks dilated).
        **kwargs: any other argument of ``timm.models.efficientnet.EfficientNet``.

    Shapes: ``forward_features`` ``[B, C, H, W] -> [B, 1280, H / output_stride, W / output_stride]``.
    """

    def __init__(self, *, output_stride: int = 8, **kwargs: Any):
        if output_stride not in (2, 4, 8):
            raise ConfigError(f"CifarMobileNetV2 output_stride must be 2, 4 or 8 (got {output_stride}).")
        super().__init__(output_stride=output_stride * _TIMM_STEM_REDUCTION, **kwargs)
        factory = {"device": kwargs.get("device"), "dtype": kwargs.get("dtype")}
        stem = self.conv_stem
        self.conv_stem = create_conv2d(
            stem.in_channels, stem.out_channels, stem.kernel_size[0], stride=1,
            padding=kwargs.get("pad_type", ""), **factory,
        )
        nn.init.kaiming_normal_(self.conv_stem.weight, mode="fan_out", nonlinearity="relu")
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // _TIMM_STEM_REDUCTION)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return cifar_cfg(first_conv="conv_stem", classifier="classifier", paper_ids="arXiv:1801.04381", **kwargs)


default_cfgs = generate_default_cfgs({
    "mobilenetv2_cifar": _cfg(description="MobileNetV2 1.0 with CIFAR strides (stride-1 stem and 24-ch stage)."),
})


def _create_cifar_mobilenetv2(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarMobileNetV2:
    channel_multiplier = kwargs.pop("channel_multiplier", 1.0)
    round_chs_fn = partial(round_channels, multiplier=channel_multiplier)
    model_args = dict(
        block_args=decode_arch_def(_CIFAR_ARCH_DEF, depth_multiplier=kwargs.pop("depth_multiplier", 1.0)),
        num_features=max(1280, round_chs_fn(1280)),
        stem_size=32,
        round_chs_fn=round_chs_fn,
        norm_layer=kwargs.pop("norm_layer", None) or partial(nn.BatchNorm2d, **resolve_bn_args(kwargs)),
        act_layer=resolve_act_layer(kwargs, "relu6"),
    )
    feature_cfg = dict(flatten_sequential=True, out_indices=(0, 1, 2, 3))
    return build_model_with_cfg(
        CifarMobileNetV2, variant, pretrained, feature_cfg=feature_cfg, **dict(model_args, **kwargs)
    )


@register_new_model
def mobilenetv2_cifar(pretrained: bool = False, **kwargs: Any) -> CifarMobileNetV2:
    """MobileNetV2 1.0, CIFAR strides; 32 px -> 4x4 x 1280 (features 24/32/96/320 ch at 1/2/4/8)."""
    return _create_cifar_mobilenetv2("mobilenetv2_cifar", pretrained, **kwargs)
