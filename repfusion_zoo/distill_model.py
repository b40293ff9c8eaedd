"""The student and RepFusion in one module, so one DDP wrapper holds everything a distillation step
trains (the student, the policy, decoder g and the loss's connector; the teacher stays outside,
see `repfusion_zoo.distill`). Images in [0, 1] ``[B, C, H, W]``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .distill import RepFusion, RepFusionOutput
from .normalize import InputNormalize

__all__ = ["DistillModel"]


class DistillModel(nn.Module):
    """``student`` (its ``forward_features`` on the normalised images, `InputNormalize.of(student)`)
    and ``repfusion`` (on the teacher's view of the same images).

    ``forward(images, labels, progress, index, flip) -> RepFusionOutput``: the named losses (with
    ``total``), the time step each sample was distilled at and the policy's mean entropy.
    """

    def __init__(self, student: nn.Module, repfusion: RepFusion, in_chans: int) -> None:
        super().__init__()
        self.student = student
        self.repfusion = repfusion
        self.normalize = InputNormalize.of(student, in_chans)

    def forward(self, images: torch.Tensor, labels: Any, progress: float, index: torch.Tensor | None = None,
                flip: torch.Tensor | None = None) -> RepFusionOutput:
        feature = self.student.forward_features(self.normalize(images))
        teacher_images = self.repfusion.teacher_input(images)
        return self.repfusion(teacher_images, labels, feature, progress, index=index, flip=flip)
