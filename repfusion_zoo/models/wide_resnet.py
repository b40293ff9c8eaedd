"""Wide ResNet WRN-d-k (Zagoruyko & Komodakis, arXiv:1605.07146) from timm's pre-activation parts.

Stem: one 3x3 stride-1 conv to 16 channels. Three stages of (d - 4) / 6 pre-activation basic
blocks (timm's ``PreActBasic``: BN-ReLU-conv3x3-BN-ReLU-conv3x3, with a 1x1 conv shortcut on the
pre-activated input where the shape changes), widths 16k, 32k, 64k, strides 1, 2, 2. Then a final
BN-ReLU, global average pooling and the classifier. At 32 px the last map is 8x8 (reduction 4).
The blocks carry no dropout (the usual setting of the distillation baselines).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d, ClassifierHead, create_conv2d
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import named_apply
from timm.models.resnetv2 import PreActBasic, ResNetStage

from ..errors import ConfigError
from .registration import cifar_cfg, register_new_model

__all__ = ["WideResNet"]


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` with the timm model interface.

    Args:
        depth: total depth, ``6n + 4`` (28 -> 4 blocks a stage).
        widen_factor: k; stage widths are 16k, 32k, 64k.
        num_classes: classifier outputs; 0 for no classifier (pooled features).
        in_chans: input channels.
        global_pool: timm pooling type ('avg', 'max', ..., '' for none).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth over the blocks.

    Shapes: ``forward_features`` ``[B, C, H, W] -> [B, 64k, H / 4, W / 4]``.
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 2,
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"WideResNet depth must be 6n + 4 with n >= 1 (got {depth}); e.g. 28.")
        dd = {k: v for k, v in {"device": device, "dtype": dtype}.items() if v is not None}
        blocks_per_stage = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        norm_layer = partial(BatchNormAct2d, act_layer=act_layer)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.stem = create_conv2d(in_chans, 16, 3, stride=1, **dd)
        self.feature_info = [dict(num_chs=16, reduction=1, module="stem")]
        block_dprs = torch.linspace(0, drop_path_rate, 3 * blocks_per_stage).tolist()  # rising block by block
        stage_dprs = [block_dprs[i * blocks_per_stage:(i + 1) * blocks_per_stage] for i in range(3)]
        self.stages = nn.Sequential()
        prev_chs, reduction = 16, 1
        for index, (width, stride, dprs) in enumerate(zip(widths, (1, 2, 2), stage_dprs)):
            reduction *= stride
            self.stages.add_module(str(index), ResNetStage(
                prev_chs, width, stride=stride, dilation=1, depth=blocks_per_stage, block_fn=PreActBasic,
                bottle_ratio=1.0, conv_layer=create_conv2d, norm_layer=norm_layer, act_layer=act_layer,
                block_dpr=dprs, **dd,
            ))
            prev_chs = width
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f"stages.{index}"))

        self.num_features = prev_chs
        self.norm = norm_layer(prev_chs, **dd)
        self.head = ClassifierHead(prev_chs, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        self.head_hidden_size = self.head.num_features
        named_apply(_init_weights, self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise lr decay: the stem, then stages or blocks."""
        blocks = r"^stages\.(\d+)" if coarse else [(r"^stages\.(\d+)\.blocks\.(\d+)", None), (r"^norm", (99999,))]
        return dict(stem=r"^stem", blocks=blocks)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier of ``num_classes`` outputs (0: none, the head returns pooled features)."""
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool, in_features=self.num_features)
        self.head_hidden_size = self.head.num_features

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The maps of ``feature_info`` (stem, then each stage) selected by ``indices``.

        ``norm`` applies the final BN-ReLU to the last stage's map.
        """
        if output_fmt != "NCHW":
            raise ConfigError(f"WideResNet intermediates are NCHW only (got output_fmt={output_fmt!r}).")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        last = len(self.stages)
        stages = self.stages[:max_index] if stop_early else self.stages
        for feat_idx, stage in enumerate(stages, start=1):
            x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(self.norm(x) if norm and feat_idx == last else x)
        if intermediates_only:
            return intermediates
        if len(stages) == last:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last wanted intermediate (and the head)."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(self.stages)
        self.stages = self.stages[:max_index]
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, 64k, H / 4, W / 4]`` (after the final BN-ReLU)."""
        return self.norm(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, 64k, h, w] -> [B, num_classes]`` (or the pooled ``[B, 64k]`` with ``pre_logits``)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module, name: str = "") -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.Linear):
        nn.init.zeros_(module.bias)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return cifar_cfg(first_conv="stem", classifier="head.fc", pool_size=(8, 8), paper_ids="arXiv:1605.07146", **kwargs)


default_cfgs = generate_default_cfgs({
    "wrn28_2": _cfg(description="Wide ResNet 28-2 (pre-activation basic blocks)."),
    "wrn28_10": _cfg(description="Wide ResNet 28-10 (pre-activation basic blocks)."),
})


def _create_wide_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> WideResNet:
    feature_cfg = dict(flatten_sequential=True, out_indices=(0, 1, 2, 3))
    return build_model_with_cfg(WideResNet, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


@register_new_model
def wrn28_2(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-28-2 (1.5 M parameters); 32 px -> 8x8 x 128."""
    return _create_wide_resnet("wrn28_2", pretrained, **dict(dict(depth=28, widen_factor=2), **kwargs))


@register_new_model
def wrn28_10(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-28-10 (36.5 M parameters); 32 px -> 8x8 x 640."""
    return _create_wide_resnet("wrn28_10", pretrained, **dict(dict(depth=28, widen_factor=10), **kwargs))
