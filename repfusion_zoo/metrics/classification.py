"""Top-1 accuracy of a classifier (the classification task's metric)."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .base import Metric

__all__ = ["TopKAccuracy"]


class TopKAccuracy(Metric):
    """Top-1 accuracy in percent; state = [correct, count] (float64, additive)."""

    def __init__(self) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64)

    def update(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> None:
        labels = batch["label"].to(prediction.device)
        self.sums += torch.tensor([float((prediction == labels).sum()), float(labels.numel())], dtype=torch.float64)

    def state(self) -> torch.Tensor:
        return self.sums.clone()

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        correct, count = state.tolist()
        return {"top1": 100.0 * correct / max(count, 1.0), "count": count}
