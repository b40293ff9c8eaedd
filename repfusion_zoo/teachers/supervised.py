"""SupervisedTeacher: a frozen CNN's feature map, for the supervised-KD comparison rows (Tables 4/5).

Same forward signature as `DiffusionTeacher` (``x, t, class_labels=None``); ``t`` and the labels
are ignored (``time_conditioned`` is False). Unlike a diffusion teacher, its input is the
**normalised image** (`to_input`: ``(x - mean) / std`` from the CNN's own data config,
`repfusion_zoo.normalize.InputNormalize.of`), not [-1, 1]: ``expects`` says which (``"normalized"``
here, ``"minus_one_one"`` for `DiffusionTeacher`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..hub import load_safetensors, load_state_dict_strict
from ..normalize import InputNormalize
from ..zoo import create_model

__all__ = ["SupervisedTeacher"]


def _build(model: nn.Module | str, weights: str | Path | None) -> nn.Module:
    if isinstance(model, str):
        model = create_model(model)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"SupervisedTeacher takes an nn.Module or a model name, got {type(model).__name__}")
    if weights is not None:
        load_state_dict_strict(model, load_safetensors(weights), str(weights))
    return model


class SupervisedTeacher(nn.Module):
    """A frozen CNN (e.g. ``resnet18_cifar``, ``wrn28_2``, ``wrn28_10``) run to one feature map.

    Args:
        model: an ``nn.Module`` or any name `repfusion_zoo.create_model` takes (zoo / timm name,
            ``hf-hub:`` id, local folder).
        layer: ``None`` = ``forward_features`` (the last map, e.g. R18-CIFAR ``[B, 512, 4, 4]``);
            an int = that entry of ``model.feature_info`` (negative from the end), via timm's
            ``forward_intermediates``.
        weights: a ``.safetensors`` file loaded strictly into the model (the trained teacher).

    Forward: ``x [B, C, H, W]`` normalised like the student's input, ``t`` ignored -> ``[B, C', h, w]``.
    """

    expects = "normalized"
    time_conditioned = False
    #: only t = 0 is meaningful (t is ignored): pair it with a fixed time step
    num_train_timesteps = 1
    timesteps = None

    def __init__(self, model: nn.Module | str, layer: int | None = None, weights: str | Path | None = None) -> None:
        super().__init__()
        self.model = _build(model, weights)
        infos = list(getattr(self.model, "feature_info", []) or [])
        if layer is not None:
            if not hasattr(self.model, "forward_intermediates") or not infos:
                raise ConfigError(f"layer={layer} needs a timm model with feature_info and forward_intermediates")
            if not -len(infos) <= layer < len(infos):
                raise ConfigError(f"layer {layer} out of range: the model has {len(infos)} feature maps {[i['module'] for i in infos]}")
            layer %= len(infos)
        self.layer = layer
        self._info = infos[layer if layer is not None else -1] if infos else None
        self.input_normalize = InputNormalize.of(self.model, self.in_channels)
        self.model.requires_grad_(False)
        super().train(False)

    @property
    def in_channels(self) -> int:
        return int(self.model.pretrained_cfg.get("input_size", (3,))[0])

    @property
    def sample_size(self) -> tuple[int, int]:
        return tuple(self.model.pretrained_cfg.get("input_size", (3, 224, 224))[1:])

    @property
    def feature_channels(self) -> int:
        if self.layer is None:
            return int(self.model.num_features)
        return int(self._info["num_chs"])

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C', h, w) at the model's ``pretrained_cfg`` input size."""
        if self._info is None:
            raise ConfigError("feature_shape needs a model with timm feature_info")
        reduction = int(self._info["reduction"])
        h, w = self.sample_size
        return (self.feature_channels, h // reduction, w // reduction)

    def train(self, mode: bool = True) -> SupervisedTeacher:
        """Always eval: the teacher is frozen (batch-norm statistics fixed)."""
        return super().train(False)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] dataset images -> ``(x - mean) / std`` with the CNN's data config."""
        return self.input_normalize(images)

    @torch.no_grad()
    def feature(self, images: torch.Tensor, t: torch.Tensor | None = None, *, labels: Any = None,
                index: torch.Tensor | None = None, flip: torch.Tensor | None = None) -> torch.Tensor:
        """The feature RepFusion distils: ``forward(images)`` (``t``, labels, index and flip play no part)."""
        return self(images)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, H, W]`` (normalised) -> ``[B, C', h, w]``; ``t`` and ``class_labels`` are ignored."""
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputError(
                f"supervised teacher takes [B, {self.in_channels}, H, W] normalised images, got {tuple(getattr(x, 'shape', ()))}"
            )
        if self.layer is None:
            return self.model.forward_features(x)
        return self.model.forward_intermediates(x, indices=[self.layer], intermediates_only=True)[0]
