"""Hint loss (FitNets, Romero et al. 2015): MSE between the connected student map and the teacher map.

- spatial (default, FitNets): a 1x1 conv connector maps the student's channels to the teacher's,
  the student map is bilinearly resized to the teacher's size, then MSE over every element;
- pooled (``pooled=True``, what the RepFusion authors ran): both sides globally average-pooled to
  vectors, connector applied, MSE over the vectors.

The connector is shared by every time step, or (``num_actions > 1``) one head per time step of the
action set, chosen per sample (`repfusion_zoo.losses.connector`). ``per_sample`` gives each
sample's loss ``[B]`` (the student's imitation loss, a reward of the time-step policy).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repfusion_zoo.errors import ShapeMismatchError
from repfusion_zoo.losses.connector import build_connector
from repfusion_zoo.losses.matching import check_batch, pool, require_map, resize_to

__all__ = ["hint_loss", "HintLoss"]


def hint_loss(student: torch.Tensor, teacher: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error; ``student``/``teacher`` both ``[B, C, h, w]`` or both ``[B, C]``.

    Channels must already match (a :class:`HintLoss` owns the connector). For maps, the student is
    bilinearly resized to the teacher's ``[h, w]``. Returns a scalar, or with ``reduction="none"``
    each sample's mean ``[B]`` (their mean is the scalar).
    """
    check_batch(student, teacher, "hint loss")
    if student.dim() != teacher.dim() or student.dim() not in (2, 4):
        raise ShapeMismatchError(
            f"hint loss needs both features as maps [B, C, h, w] or both as vectors [B, C]; got student "
            f"{tuple(student.shape)} and teacher {tuple(teacher.shape)} (use the 'hint_pooled' loss to pool maps)."
        )
    if student.shape[1] != teacher.shape[1]:
        raise ShapeMismatchError(
            f"hint loss: student feature {tuple(student.shape)} has {student.shape[1]} channels, teacher "
            f"feature {tuple(teacher.shape)} has {teacher.shape[1]}; use HintLoss(student_channels, "
            "teacher_channels), whose 1x1 conv connector maps one to the other."
        )
    if student.dim() == 4:
        student = resize_to(student, teacher)
    if reduction == "none":
        return (student.float() - teacher.float()).pow(2).flatten(1).mean(dim=1)
    return F.mse_loss(student.float(), teacher.float())


class HintLoss(nn.Module):
    """Hint loss with its 1x1 conv connector (student channels -> teacher channels).

    ``forward(student [B, Cs, hs, ws], teacher [B, Ct, ht, wt], action=None) -> scalar``;
    ``per_sample(...) -> [B]``. Spatial by default; ``pooled=True`` pools both sides first (then
    2-D inputs ``[B, C]`` are accepted too). The connector runs at the student's resolution, before
    the resize (the two commute). ``num_actions > 1``: a connector head per time step, ``action``
    (``LongTensor[B]``, each sample's index in the action set) picks it.
    """

    def __init__(self, student_channels: int, teacher_channels: int, pooled: bool = False, weight: float = 1.0,
                 num_actions: int = 1) -> None:
        super().__init__()
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.pooled = pooled
        self.weight = float(weight)
        self.connector = build_connector(student_channels, teacher_channels, num_actions)
        self.time_conditioned = num_actions > 1

    def _check_channels(self, student: torch.Tensor, teacher: torch.Tensor) -> None:
        if student.dim() < 2 or teacher.dim() < 2:
            raise ShapeMismatchError(
                f"HintLoss takes features [B, C, ...]; got student {tuple(student.shape)} and teacher {tuple(teacher.shape)}."
            )
        if student.shape[1] != self.student_channels or teacher.shape[1] != self.teacher_channels:
            raise ShapeMismatchError(
                f"HintLoss was built for student channels {self.student_channels} -> teacher channels "
                f"{self.teacher_channels}, but got student {tuple(student.shape)} and teacher "
                f"{tuple(teacher.shape)}; build it with the features' channel counts."
            )

    def _connect(self, x: torch.Tensor, action: torch.Tensor | None) -> torch.Tensor:
        return self.connector(x, action) if self.time_conditioned else self.connector(x)

    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        """Each sample's (weighted) loss, ``[B]``: its mean is `forward`'s value."""
        self._check_channels(student, teacher)
        if self.pooled:
            check_batch(student, teacher, "hint_pooled loss")
            s = self._connect(pool(student, "hint_pooled loss")[:, :, None, None], action).flatten(1)
            return self.weight * hint_loss(s, pool(teacher, "hint_pooled loss"), reduction="none")
        require_map(student, teacher, "hint loss (spatial)")
        return self.weight * hint_loss(self._connect(student, action), teacher, reduction="none")

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        return self.per_sample(student, teacher, action).mean()

    def extra_repr(self) -> str:
        return f"pooled={self.pooled}, weight={self.weight}"
