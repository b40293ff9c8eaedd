"""Relational knowledge distillation (Park et al., CVPR 2019): match distances and angles in a batch.

Computed on pooled features (``[B, C, h, w]`` globally average-pooled to ``[B, C]``; 2-D inputs
pass through): channel-agnostic, no connector, no spatial resizing. Both terms use smooth-L1
(Huber, beta = 1). Distances are normalised by their mean over distinct pairs on each side.
A batch of one sample has no pairs: the distance term is 0 then, and the angle term needs 3 samples.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from repfusion_zoo.errors import ConfigError

from repfusion_zoo.losses.matching import check_batch, pool

__all__ = ["pairwise_distances", "rkd_distance_loss", "rkd_angle_loss", "RKDLoss"]


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``[B, D] -> [B, B]`` Euclidean distances, 0 on the diagonal (gradient-safe at 0)."""
    sq = e.pow(2).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * e @ e.t()).clamp(min=eps)
    off = 1.0 - torch.eye(e.shape[0], device=e.device, dtype=e.dtype)
    return d2.sqrt() * off


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(e)
    positive = d[d > 0]
    if positive.numel() == 0:
        return d
    return d / positive.mean()


def _angles(e: torch.Tensor) -> torch.Tensor:
    """``[B, D] -> [B*B*B]``: cosines of the angle at each anchor j between i and k."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)  # [B, B, D]: e_j - e_i, unit
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


def _relation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    relation: Callable[[torch.Tensor], torch.Tensor],
    min_batch: int,
    loss: str,
) -> torch.Tensor:
    """Smooth-L1 between ``relation`` of the pooled student and of the pooled (detached) teacher.

    ``student``/``teacher`` ``[B, C, h, w]`` or ``[B, C]``; a batch smaller than ``min_batch`` has
    no relation to match and gives 0 (still connected to the student's graph).
    """
    check_batch(student, teacher, loss)
    s, t = pool(student, loss).float(), pool(teacher, loss).float()
    if s.shape[0] < min_batch:
        return s.sum() * 0.0
    with torch.no_grad():
        target = relation(t.detach())
    return F.smooth_l1_loss(relation(s), target)


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between mean-normalised pairwise distance matrices ``[B, B]``; scalar (unweighted)."""
    return _relation_loss(student, teacher, _normalised_distances, 2, "RKD distance loss")


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the triplet angle cosines of student and teacher; scalar (unweighted)."""
    return _relation_loss(student, teacher, _angles, 3, "RKD angle loss")


class RKDLoss(nn.Module):
    """``distance_weight * rkd_distance_loss + angle_weight * rkd_angle_loss`` (25 and 50, the paper).

    ``forward(student [B, Cs, ...], teacher [B, Ct, ...], action=None) -> scalar``; maps ``[B, C, h, w]`` are
    pooled, vectors ``[B, C]`` pass through. It relates the samples of a batch to each other, so
    it has no per-sample loss (`per_sample` says so) and no connector (``action`` plays no part).
    """

    time_conditioned = False

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)

    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        raise ConfigError("the RKD loss relates the samples of a batch to each other: it has no per-sample loss for an "
                          "imitation reward; use reward task with rkd, or a hint / at loss")

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        loss = student.new_zeros((), dtype=torch.float32)
        if self.distance_weight:
            loss = loss + self.distance_weight * rkd_distance_loss(student, teacher)
        if self.angle_weight:
            loss = loss + self.angle_weight * rkd_angle_loss(student, teacher)
        return loss

    def extra_repr(self) -> str:
        return f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}"
