"""What the frozen diffusion teachers share: always in eval mode, fed ``x * 2 - 1`` of [0, 1] images,
and `feature` = its forward on the batch (the latent and transformer teachers take no label; a
feature cache overrides it with a look-up)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..normalize import minus_one_one
from .identity import weights_sha256

__all__ = ["FrozenTeacher"]


class FrozenTeacher(nn.Module):
    """Base of `LatentUNetTeacher`, `TransformerTeacher` and `CachedTeacher`."""

    expects = "minus_one_one"
    time_conditioned = True
    class_conditional = False
    class_map = None
    noise = False  # clean input only (the paper's setting; a cache needs it)
    timesteps = None  # every one of 0..T-1
    root: Path | None = None  # the folder its weights were read from (`from_folder` sets it)
    source = ""

    def weights_sha256(self) -> str:
        """The hash of the weight files it was read from (`identity.weights_sha256`), what a feature cache records."""
        return weights_sha256(self.root, self.source)

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Always eval: the teacher is frozen."""
        return super().train(False)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] dataset images -> the teacher's input, ``x * 2 - 1``."""
        return minus_one_one(images)

    def feature(self, images: torch.Tensor, t: torch.Tensor, *, labels: Any = None, index: torch.Tensor | None = None,
                flip: torch.Tensor | None = None) -> torch.Tensor:
        """The feature RepFusion distils: ``images [B, C, H, W]`` in [-1, 1], ``t [B]`` -> ``[B, C', h, w]`` (no grad)."""
        return self(images, t)
