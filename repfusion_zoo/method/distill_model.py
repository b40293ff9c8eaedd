"""The student and RepFusion in one module, so one DDP wrapper holds everything a distillation step
trains (the student, the policy, decoder g and the loss's connector; the teacher stays outside,
see `repfusion_zoo.method.distill`). Images in [0, 1] ``[B, C, H, W]``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .distill import RepFusion, RepFusionOutput
from ..normalize import InputNormalize

__all__ = ["DistillModel"]


class DistillModel(nn.Module):
    """``student`` (its ``forward_features`` on the normalised images, `InputNormalize.of(student)`)
    and ``repfusion`` (on the teacher's view of the same images).

    ``forward(images, labels, progress, index, flip) -> RepFusionOutput``: the named losses (with
    ``total``), the time step each sample was distilled at and the policy's mean entropy.

    ``compile`` (off by default): `torch.compile` (``compile_mode``) of `student_features`
    (normalisation + ``forward_features``); AOTAutograd compiles its backward with it. The student
    stays a plain module (state-dict keys, saving and DDP are unchanged); the compiled function is
    kept beside it, not registered. The memory format is the training loop's (`LoopSettings.channels_last`
    converts the whole module: a convolution whose weight is channels_last gives a channels_last output).
    """

    def __init__(self, student: nn.Module, repfusion: RepFusion, in_chans: int, *, compile: bool = False,
                 compile_mode: str = "default") -> None:
        super().__init__()
        self.student = student
        self.repfusion = repfusion
        self.normalize = InputNormalize.of(student, in_chans)
        self._compiled = None
        if compile:
            self._compiled = torch.compile(self.student_features, mode=None if compile_mode == "default" else compile_mode)

    def student_features(self, images: torch.Tensor) -> torch.Tensor:
        """The student's feature map of [0, 1] images: ``forward_features((x - mean) / std)``."""
        return self.student.forward_features(self.normalize(images))

    def forward(self, images: torch.Tensor, labels: Any, progress: float, index: torch.Tensor | None = None,
                flip: torch.Tensor | None = None) -> RepFusionOutput:
        feature = (self._compiled or self.student_features)(images)
        teacher_images = self.repfusion.teacher_input(images)
        return self.repfusion(teacher_images, labels, feature, progress, index=index, flip=flip)
