"""The one input normalisation of the package: [0, 1] images -> ``(x - mean) / std`` with a model's
own data config (`timm.data.resolve_model_data_config`: its ``pretrained_cfg`` mean / std, timm's
ImageNet defaults where it has none).

Every model that takes dataset images goes through `InputNormalize.of(model)`: the distillation
student, the classification model, the dense heads' backbones and a supervised teacher. A
diffusion teacher is the exception by design: it takes ``x * 2 - 1`` (DDPMs expect [-1, 1]).
"""
from __future__ import annotations

from typing import Sequence

import torch
from timm.data import resolve_model_data_config
from torch import nn

__all__ = ["InputNormalize", "data_config_stats", "minus_one_one"]


def minus_one_one(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> [-1, 1], what a diffusion model takes (never ImageNet normalisation)."""
    return images * 2.0 - 1.0


def data_config_stats(model: nn.Module, in_chans: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s mean and std as ``[1, C, 1, 1]`` float32 tensors; with ``in_chans`` given and
    another channel count in the config (grey input to an RGB config), their averages repeated."""
    cfg = resolve_model_data_config(model)
    mean = torch.tensor(list(cfg["mean"]), dtype=torch.float32)
    std = torch.tensor(list(cfg["std"]), dtype=torch.float32)
    if in_chans is not None and mean.numel() != in_chans:
        mean, std = mean.mean().repeat(in_chans), std.mean().repeat(in_chans)
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


class InputNormalize(nn.Module):
    """``[B, C, H, W]`` images in [0, 1] -> ``(x - mean) / std``; mean / std are non-persistent buffers
    (they follow ``.to()``, stay out of state dicts)."""

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1), persistent=False)

    @classmethod
    def of(cls, model: nn.Module, in_chans: int | None = None) -> InputNormalize:
        """The normalisation ``model`` was built for (`data_config_stats`)."""
        return cls(*data_config_stats(model, in_chans))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
