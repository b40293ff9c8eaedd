"""The checks every diffusion teacher makes of what it is fed: images ``[B, C, H, W]`` in [-1, 1] of its
channels and a size its encoder can halve, and one integer time step per image in ``[0, T)``.

The value checks read tensors back to the host: free on the CPU, a sync that stalls an
accelerator's queue elsewhere, so there they run on the first batch per device type only.
"""
from __future__ import annotations

import torch

from ..errors import InputError

__all__ = ["InputChecks"]


class InputChecks:
    """What one teacher accepts. ``in_channels``: image channels; ``multiple``: height and width must
    be multiples of it (its encoder's total down-sampling); ``num_train_timesteps``: T;
    ``trained_at``: the size it was made for, named in the message."""

    def __init__(self, in_channels: int, multiple: int, num_train_timesteps: int, trained_at: tuple[int, int]) -> None:
        self.in_channels, self.multiple = int(in_channels), int(multiple)
        self.num_train_timesteps, self.trained_at = int(num_train_timesteps), tuple(trained_at)
        self._values_checked: set[str] = set()

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """`InputError` naming the fix for a bad batch; returns ``t`` as ``LongTensor[B]`` on ``x``'s device."""
        if not torch.is_tensor(x) or x.dim() != 4:
            raise InputError(f"teacher input must be a [B, C, H, W] tensor, got {getattr(x, 'shape', type(x))}")
        if x.shape[1] != self.in_channels:
            raise InputError(
                f"teacher takes {self.in_channels}-channel images, got {x.shape[1]} channels (shape {tuple(x.shape)}); "
                f"convert the images (e.g. replicate grey to RGB) before the teacher"
            )
        height, width = x.shape[-2:]
        if height % self.multiple or width % self.multiple:
            raise InputError(
                f"image size {height}x{width} cannot pass this teacher's encoder: height and width must be multiples "
                f"of {self.multiple} (it was made for {self.trained_at}); resize the images"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],) or t.dtype.is_floating_point:
            raise InputError(f"t must be an integer tensor of shape [B]=[{x.shape[0]}], got {tuple(t.shape)} {t.dtype}")
        if x.device.type == "cpu" or x.device.type not in self._values_checked:
            self.check_values(x, t)
            self._values_checked.add(x.device.type)
        return t.long()

    def check_values(self, x: torch.Tensor, t: torch.Tensor) -> None:
        """Images in [-1, 1] (with a slack of 0.5) and time steps in [0, T); else `InputError` naming the fix."""
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if high > 1.5 or low < -1.5:
            hint = (
                "looks like 0..255 pixels; use x / 127.5 - 1"
                if high > 3.0
                else "looks ImageNet-normalised (mean/std); the teacher wants x * 2 - 1 on [0, 1] images"
            )
            raise InputError(f"teacher input must be in [-1, 1], got values in [{low:.3g}, {high:.3g}]: {hint}")
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= self.num_train_timesteps):
            raise InputError(
                f"time steps must be in [0, {self.num_train_timesteps}), got min {int(t.min())} max {int(t.max())}"
            )
