"""Feature-distillation losses: pure functions under thin ``nn.Module``s (the lightly way).

``build_distill_loss(name, student_channels, teacher_channels)`` with ``name`` in
``"hint"`` (spatial FitNets, 1x1 conv connector), ``"hint_pooled"`` (the authors' pooled variant),
``"at"`` (attention transfer, p = 2, weight 1000), ``"rkd"`` (distance 25 + angle 50).
Every module: ``loss(student [B, Cs, hs, ws], teacher [B, Ct, ht, wt], action=None) -> scalar`` and
``per_sample(...) -> [B]`` (not RKD: it relates samples); ``time_conditioned`` when its connector has
a head per time step, picked by ``action`` (each sample's index in the action set). Where maps of
different sizes meet, the **student** map is bilinearly resized to the **teacher**'s size.
Features that cannot be matched raise :class:`repfusion_zoo.errors.ShapeMismatchError`.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from repfusion_zoo.errors import ConfigError
from repfusion_zoo.losses.attention import AttentionTransferLoss, attention_map, attention_transfer_loss
from repfusion_zoo.losses.connector import TimeConditionedConnector, build_connector
from repfusion_zoo.losses.hint import HintLoss, hint_loss
from repfusion_zoo.losses.rkd import RKDLoss, pairwise_distances, rkd_angle_loss, rkd_distance_loss

__all__ = [
    "build_distill_loss",
    "DISTILL_LOSSES",
    "hint_loss",
    "HintLoss",
    "attention_map",
    "attention_transfer_loss",
    "AttentionTransferLoss",
    "pairwise_distances",
    "rkd_distance_loss",
    "rkd_angle_loss",
    "RKDLoss",
    "TimeConditionedConnector",
    "build_connector",
]

DISTILL_LOSSES = ("hint", "hint_pooled", "at", "rkd")


def build_distill_loss(name: str, student_channels: int, teacher_channels: int, *, num_actions: int = 1,
                       **kwargs: Any) -> nn.Module:
    """The distillation loss ``name`` for these channel counts; ``kwargs`` go to the module
    (e.g. ``weight=`` for hint / at, ``distance_weight=`` / ``angle_weight=`` for rkd).
    ``num_actions > 1``: a connector head per time step of the action set (hint losses only: AT and
    RKD have no connector)."""
    if num_actions > 1 and name not in ("hint", "hint_pooled"):
        raise ConfigError(f"a time-conditioned connector (connector: per_t) needs a loss with a connector, hint or "
                          f"hint_pooled; {name!r} has none")
    if name == "hint":
        return HintLoss(student_channels, teacher_channels, pooled=False, num_actions=num_actions, **kwargs)
    if name == "hint_pooled":
        return HintLoss(student_channels, teacher_channels, pooled=True, num_actions=num_actions, **kwargs)
    if name == "at":
        return AttentionTransferLoss(**kwargs)
    if name == "rkd":
        return RKDLoss(**kwargs)
    raise ConfigError(f"unknown distillation loss {name!r}; use one of {list(DISTILL_LOSSES)}.")
