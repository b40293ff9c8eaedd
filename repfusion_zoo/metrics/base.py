"""The interface of every metric: additive per-process states, summed across processes, then computed."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

import torch

__all__ = ["Metric"]


class Metric(ABC):
    """An additive metric: per-process `state()`s are summed across processes, then `compute`d."""

    @abstractmethod
    def update(self, prediction: Any, batch: Mapping[str, Any]) -> None:
        """Accumulate one batch of predictions against the batch's targets."""

    @abstractmethod
    def state(self) -> torch.Tensor:
        """The accumulated sums, float64, on any device; summing two states merges them."""

    @abstractmethod
    def compute(self, state: torch.Tensor) -> dict[str, float]:
        """The final figures from a (summed) state, e.g. {"mIoU": 61.2, "aAcc": 94.6}."""
