"""Fine-tuning with the distillation loss kept as a regulariser: the task loss plus ``weight`` x the
feature-distillation loss between the model's last feature map and a frozen teacher's feature at
one time step t, on the same (augmented) training batch.

`FeatureRegularized` wraps the task's model; its ``forward`` is the model's (one forward: a hook on
the backbone's last feature stage captures the map), and while training it also computes the
regulariser inside that forward (so DDP sees every parameter it trains: the model's and the
connector's) and keeps it in ``regularizer_loss`` for the step to add. In eval mode it is the
model alone. The teacher runs online (the fine-tuning crops move the image, which a feature cache
of identity and mirrored views does not hold).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["FeatureRegularized", "last_feature_module"]


def last_feature_module(backbone: nn.Module) -> nn.Module:
    """The module whose output is the backbone's last feature map ``[B, C, h, w]`` (timm's ``feature_info``)."""
    info = getattr(backbone, "feature_info", None)
    if not info:
        raise ConfigError(f"{type(backbone).__name__} has no feature_info (a timm model's list of feature stages); "
                          "the distillation regulariser needs one to find its last feature map")
    last = info[-1]
    name = last["module"] if isinstance(last, dict) else info.module_name(-1)
    return backbone.get_submodule(name)


class FeatureRegularized(nn.Module):
    """``model`` (the task's) and, while training, ``weight * loss(feature, teacher.feature(x, t))``.

    Args:
        model: the task's model; ``model(images)`` its forward on ``[B, C, H, W]`` images in [0, 1].
        backbone: the backbone inside ``model`` whose last feature map is distilled.
        teacher: a frozen teacher (`repfusion_zoo.teachers`): ``to_input`` and ``feature``.
        loss: a distillation loss (`repfusion_zoo.losses.build_distill_loss`) from the backbone's
            channels to the teacher's, its connector trained with the model.
        t: the time step of the teacher's feature.
        weight: the regulariser's weight against the task loss.
    """

    def __init__(self, model: nn.Module, backbone: nn.Module, teacher: nn.Module, loss: nn.Module, t: int,
                 weight: float) -> None:
        super().__init__()
        if not 0 <= int(t) < teacher.num_train_timesteps:
            raise ConfigError(f"the regulariser's t={t} lies outside the teacher's 0..{teacher.num_train_timesteps - 1}")
        self.model = model
        self.teacher = teacher
        self.loss = loss
        self.t = int(t)
        self.weight = float(weight)
        self.regularizer_loss: torch.Tensor | None = None
        self._feature: torch.Tensor | None = None
        last_feature_module(backbone).register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self._feature = output

    def train(self, mode: bool = True) -> FeatureRegularized:
        """Train mode for the model and the loss's connector; the teacher stays frozen in eval mode."""
        super().train(mode)
        self.teacher.train(False)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, C, H, W]`` in [0, 1] -> the model's output; while training, ``regularizer_loss`` (a scalar)."""
        out = self.model(images)
        if self.training:
            steps = torch.full((images.shape[0],), self.t, dtype=torch.long, device=images.device)
            with torch.no_grad():
                target = self.teacher.feature(self.teacher.to_input(images), steps)
            self.regularizer_loss = self.weight * self.loss(self._feature, target.float())
        self._feature = None
        return out
