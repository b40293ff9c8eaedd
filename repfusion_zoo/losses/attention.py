"""Attention transfer (Zagoruyko & Komodakis, 2017): match normalised spatial attention maps.

Channel-agnostic: no connector. The attention map of a feature ``[B, C, h, w]`` is
``mean_c |f_c|^p`` flattened to ``[B, h*w]`` and L2-normalised per sample. Sizes: the student's
(un-normalised) attention map is bilinearly resized to the teacher's ``[h, w]`` before normalising.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repfusion_zoo.losses.matching import require_map, resize_to

__all__ = ["attention_map", "attention_transfer_loss", "AttentionTransferLoss"]


def _raw_attention(f: torch.Tensor, p: float) -> torch.Tensor:
    """``[B, C, h, w] -> [B, 1, h, w]``: mean over channels of ``|f|^p``."""
    return f.float().abs().pow(p).mean(dim=1, keepdim=True)


def attention_map(f: torch.Tensor, p: float = 2) -> torch.Tensor:
    """``[B, C, h, w] -> [B, h*w]``: L2-normalised ``mean_c |f_c|^p``."""
    return F.normalize(_raw_attention(f, p).flatten(1), dim=1)


def attention_transfer_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2, reduction: str = "mean") -> torch.Tensor:
    """Mean squared difference of the attention maps (Zagoruyko's ``(at(s) - at(t)).pow(2).mean()``).

    ``student [B, Cs, hs, ws]``, ``teacher [B, Ct, ht, wt]``; any channels; the student's attention
    is resized to ``[ht, wt]``. Returns a scalar (unweighted), or each sample's ``[B]`` with
    ``reduction="none"``.
    """
    require_map(student, teacher, "attention transfer loss")
    a_s = F.normalize(resize_to(_raw_attention(student, p), teacher).flatten(1), dim=1)
    squared = (a_s - attention_map(teacher, p)).pow(2)
    return squared.mean(dim=1) if reduction == "none" else squared.mean()


class AttentionTransferLoss(nn.Module):
    """``weight * attention_transfer_loss(student, teacher, p)``; weight 1000 and p = 2 as in the paper.

    ``forward(student [B, Cs, hs, ws], teacher [B, Ct, ht, wt], action=None) -> scalar``, ``per_sample`` ``[B]``;
    no connector, so the time step's ``action`` plays no part.
    """

    time_conditioned = False

    def __init__(self, weight: float = 1000.0, p: float = 2) -> None:
        super().__init__()
        self.weight = float(weight)
        self.p = p

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        return self.weight * attention_transfer_loss(student, teacher, self.p)

    def per_sample(self, student: torch.Tensor, teacher: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        """Each sample's weighted loss ``[B]``: its mean is `forward`'s value."""
        return self.weight * attention_transfer_loss(student, teacher, self.p, reduction="none")

    def extra_repr(self) -> str:
        return f"weight={self.weight}, p={self.p}"
