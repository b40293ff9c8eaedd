"""The connectors that map the student's channels to the teacher's before a hint loss.

- ``nn.Conv2d(Cs, Ct, 1)``: one 1x1 conv for every time step (FitNets; the paper);
- `TimeConditionedConnector`: one 1x1 conv per time step of the action set, chosen per sample by
  the index of the t it is distilled at. With a per-sample t (a policy, random t, every t at once)
  one shared connector is asked for different teacher targets of the same image; a head per t is
  not (the student's feature is shared, the maps from it are not).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError

__all__ = ["TimeConditionedConnector", "build_connector"]


class TimeConditionedConnector(nn.Module):
    """``num_actions`` 1x1 convs ``Cs -> Ct``: ``forward(x [B, Cs, h, w], action LongTensor[B]) -> [B, Ct, h, w]``,
    sample ``i`` through conv ``action[i]`` (the index of its t in the action set)."""

    def __init__(self, student_channels: int, teacher_channels: int, num_actions: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_actions, teacher_channels, student_channels))
        self.bias = nn.Parameter(torch.empty(num_actions, teacher_channels))
        bound = 1.0 / math.sqrt(student_channels)  # nn.Conv2d's default initialisation, per head
        for head in range(num_actions):
            nn.init.kaiming_uniform_(self.weight[head], a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    @property
    def num_actions(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x: torch.Tensor, action: torch.Tensor | None) -> torch.Tensor:
        if action is None or action.shape != (x.shape[0],):
            raise InputError(f"a time-conditioned connector needs the action index of each sample, LongTensor[{x.shape[0]}]; "
                             f"got {None if action is None else tuple(action.shape)}")
        weight, bias = self.weight[action], self.bias[action]  # [B, Ct, Cs], [B, Ct]
        return torch.einsum("bts,bshw->bthw", weight, x) + bias[:, :, None, None]

    def extra_repr(self) -> str:
        return f"heads={self.num_actions}, {self.weight.shape[2]} -> {self.weight.shape[1]}"


def build_connector(student_channels: int, teacher_channels: int, num_actions: int = 1) -> nn.Module:
    """A shared 1x1 conv (``num_actions`` 1) or a `TimeConditionedConnector` with a head per action."""
    if num_actions <= 1:
        return nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
    return TimeConditionedConnector(student_channels, teacher_channels, num_actions)
