"""What every part asks of a teacher, said once: the `Teacher` protocol (RepFusion, the recipes, the
probe). What a feature cache is built from is the cache's own protocol,
`repfusion_zoo.cache.CacheableTeacher`. Every teacher of this package implements them
explicitly, so no caller probes for attributes with defaults."""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch

__all__ = ["Teacher"]


@runtime_checkable
class Teacher(Protocol):
    """A frozen feature teacher: `DiffusionTeacher`, `LatentUNetTeacher`, `TransformerTeacher`,
    `CachedTeacher`, `SupervisedTeacher`."""

    #: whether its feature depends on t (a supervised CNN's does not: pair it with a fixed t)
    time_conditioned: bool
    #: T: time steps lie in 0..T-1 (1 for a supervised teacher)
    num_train_timesteps: int
    #: the channels of the images it takes
    in_channels: int
    #: C' of its feature ``[B, C', h, w]``
    feature_channels: int
    #: where the feature is taken (a block name, or a supervised CNN's feature index)
    layer: Any
    #: the time steps it can serve: a feature cache's set; None = every one of 0..T-1
    timesteps: Sequence[int] | None

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] dataset images ``[B, C, H, W]`` -> what it takes (``x * 2 - 1``, or a CNN's normalisation)."""

    def feature(self, images: torch.Tensor, t: torch.Tensor, *, labels: Any = None, index: torch.Tensor | None = None,
                flip: torch.Tensor | None = None) -> torch.Tensor:
        """The feature RepFusion distils, ``[B, C', h, w]`` (no grad), from a training batch's images (as
        `to_input` made them), time steps ``t [B]``, labels, and the items' dataset ``index`` and ``flip``."""
