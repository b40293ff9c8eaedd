"""ResNets with the CIFAR stem (3x3 stride-1 conv, no max-pool), built on timm's ResNet.

Same modules and state-dict keys as timm's ``resnet18`` / ``resnet50`` (``conv1`` is 3x3 here),
so everything timm does with a ResNet (features_only, forward_intermediates, reset_classifier,
grad checkpointing) works. At 32 px the last map is 4x4 (reduction 8); at 64 px (Tiny-ImageNet) 8x8.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ..errors import ConfigError
from ..weights import shipped_cfgs
from .registration import cifar_cfg, register_new_model

__all__ = ["CifarResNet"]

# timm's ResNet counts strides from 4 (stride-2 stem conv + stride-2 max-pool); ours from 1.
_TIMM_STEM_REDUCTION = 4


class CifarResNet(ResNet):
    """timm's ResNet with a 3x3 stride-1 stem conv and no max-pool.

    Args:
        block: timm's ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        output_stride: reduction of the last map: 8 (default), 4 or 2 (later stages dilated).
        **kwargs: any other argument of ``timm.models.resnet.ResNet`` (num_classes, in_chans, ...).

    Shapes: ``forward_features`` ``[B, C, H, W] -> [B, F, H / output_stride, W / output_stride]``.
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], *, output_stride: int = 8, **kwargs: Any):
        if output_stride not in (2, 4, 8):
            raise ConfigError(f"CifarResNet output_stride must be 2, 4 or 8 (got {output_stride}).")
        if kwargs.get("stem_type"):
            raise ConfigError("CifarResNet has a fixed 3x3 stride-1 stem; drop the stem_type argument.")
        super().__init__(block, layers, output_stride=output_stride * _TIMM_STEM_REDUCTION, **kwargs)
        factory = {"device": kwargs.get("device"), "dtype": kwargs.get("dtype")}
        in_chans = kwargs.get("in_chans", 3)
        stem_chs = self.bn1.num_features
        self.conv1 = nn.Conv2d(in_chans, stem_chs, kernel_size=3, stride=1, padding=1, bias=False, **factory)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        self.feature_info[0]["reduction"] = 1
        for info in self.feature_info[1:]:
            info["reduction"] //= _TIMM_STEM_REDUCTION


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return cifar_cfg(first_conv="conv1", classifier="fc", **kwargs)


default_cfgs = generate_default_cfgs({
    "resnet18_cifar": _cfg(description="ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."),
    "resnet50_cifar": _cfg(description="ResNet-50 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."),
    # the weights shipped in the package (repfusion_zoo/weights): the first is the default tag
    **{name: _cfg(**cfg) for name, cfg in shipped_cfgs("resnet18_cifar_025").items()},
})
QUARTER_CHANNELS = (16, 32, 64, 128)


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    return build_model_with_cfg(CifarResNet, variant, pretrained, **kwargs)


@register_new_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18, CIFAR stem (3x3 stride-1 conv, no max-pool); 32 px -> 4x4 x 512."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2))
    return _create_cifar_resnet("resnet18_cifar", pretrained, **dict(model_args, **kwargs))


@register_new_model
def resnet18_cifar_025(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18, CIFAR stem, stages at a quarter of the channels (16-32-64-128; the stem keeps timm's
    64): the CPU experiments' student, 0.71 M parameters; 32 px -> 4x4 x 128."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2), channels=QUARTER_CHANNELS)
    return _create_cifar_resnet("resnet18_cifar_025", pretrained, **dict(model_args, **kwargs))


@register_new_model
def resnet50_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-50, CIFAR stem (3x3 stride-1 conv, no max-pool); 32 px -> 4x4 x 2048."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3))
    return _create_cifar_resnet("resnet50_cifar", pretrained, **dict(model_args, **kwargs))
