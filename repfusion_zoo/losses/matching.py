"""Shape checks, size matching and pooling shared by the distillation losses and decoder g.

Direction (one rule for every loss): the **student** map is bilinearly interpolated
(``align_corners=False``) to the **teacher**'s spatial size; the teacher feature is never resized.
(Decoder g's task loss uses the same rule: its logits are resized to the labels.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from repfusion_zoo.errors import ShapeMismatchError

__all__ = ["check_batch", "require_map", "resize_to", "pool"]


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def check_batch(student: torch.Tensor, teacher: torch.Tensor, loss: str) -> None:
    """Raise :class:`ShapeMismatchError` when the batch sizes differ."""
    if student.shape[0] != teacher.shape[0]:
        raise ShapeMismatchError(
            f"{loss}: student feature {_shape(student)} and teacher feature {_shape(teacher)} have "
            "different batch sizes; feed the same images to both."
        )


def require_map(student: torch.Tensor, teacher: torch.Tensor, loss: str) -> None:
    """Both features must be maps ``[B, C, h, w]`` with the same batch size."""
    if student.dim() != 4 or teacher.dim() != 4:
        raise ShapeMismatchError(
            f"{loss} needs feature maps [B, C, h, w] on both sides; got student {_shape(student)} and "
            f"teacher {_shape(teacher)}. Take the student's last feature map (e.g. timm "
            "`forward_features` / `features_only=True`), or use a pooled loss ('hint_pooled', 'rkd')."
        )
    check_batch(student, teacher, loss)


def resize_to(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The student map ``[B, C, hs, ws]`` bilinearly resized to the teacher's ``[..., ht, wt]``
    (its last two sizes; e.g. a label map ``[B, H, W]``); returned as is where they already match."""
    if student.shape[-2:] == teacher.shape[-2:]:
        return student
    return F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)


def pool(feature: torch.Tensor, what: str, error: type[Exception] = ShapeMismatchError) -> torch.Tensor:
    """``[B, C, h, w] -> [B, C]`` (global average); ``[B, C]`` passes through.

    Any other shape raises ``error`` naming ``what`` (the loss or decoder that was fed it).
    """
    if feature.dim() == 4:
        return feature.mean(dim=(2, 3))
    if feature.dim() == 2:
        return feature
    raise error(f"{what} takes features [B, C, h, w] or [B, C]; got {_shape(feature)}.")
