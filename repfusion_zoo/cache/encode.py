"""The teacher pass of the cache: every (view, t) of a chunk of decoded images, in full batches.

A chunk of ``n`` images gives ``n x V x T`` teacher inputs in (image, view, t) order, the order
of a shard's rows flattened: input ``k`` is image ``k // (V*T)``, view ``(k // T) % V`` (0 =
identity, 1 = horizontal flip) and time step ``t_values[k % T]``. They are run in batches of
``batch_size``; each image is decoded once and fed ``x * 2 - 1`` (the teacher's [-1, 1]).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn

from ..normalize import minus_one_one

__all__ = ["encode_views", "teacher_views"]


def teacher_views(images: torch.Tensor, num_views: int) -> torch.Tensor:
    """``[n, C, H, W]`` in [0, 1] -> the teacher's inputs ``[n, num_views, C, H, W]`` in [-1, 1]
    (view 0 the image, view 1 its horizontal flip)."""
    x = minus_one_one(images)
    views = [x, x.flip(-1)][:num_views]
    return torch.stack(views, dim=1)


def encode_views(
    teacher: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    t_values: Sequence[int],
    *,
    num_views: int,
    batch_size: int,
    pooled: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(first input k, features [b, *feature_shape])`` for the chunk's ``n x V x T`` inputs.

    `images` ``[n, C, H, W]`` in [0, 1] on the teacher's device; `labels` ``LongTensor[n]`` (given to
    class-conditional teachers as ``class_labels``). Pooled features are the spatial mean ``[b, C]``.
    """
    stacked = teacher_views(images, num_views)
    t_all = torch.as_tensor(list(t_values), dtype=torch.long, device=images.device)
    per_image = num_views * len(t_all)
    total = images.shape[0] * per_image
    for start in range(0, total, batch_size):
        k = torch.arange(start, min(start + batch_size, total), device=images.device)
        image, view, t_pos = k // per_image, (k // len(t_all)) % num_views, k % len(t_all)
        class_labels = None if labels is None else labels[image]
        features = teacher(stacked[image, view], t_all[t_pos], class_labels=class_labels)
        yield start, features.mean(dim=(-2, -1)) if pooled else features
