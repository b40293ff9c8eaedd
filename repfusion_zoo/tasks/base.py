"""The one interface every downstream task implements.

`recipes/finetune.py --task NAME` owns the Accelerate loop, resume, logging and model-card
writing; a task supplies only what differs: the model around a backbone, the data, the loss,
the metric and the pictures.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.data import Dataset

from ..metrics.base import Metric


class Task(ABC):
    """A downstream task: model, data, loss, metric, pictures."""

    name: str = ""
    #: the figure the recipe reports first and writes into the model card (e.g. "top1", "mIoU", "NME")
    main_metric: str = ""

    @classmethod
    @abstractmethod
    def default_config(cls) -> dict[str, Any]:
        """The task's config keys and their defaults (the paper's schedule), merged into the recipe's."""

    @abstractmethod
    def build_model(self, backbone: str, pretrained: bool, cfg: Mapping[str, Any]) -> nn.Module:
        """The full model; `backbone` is a zoo/timm name, `hf-hub:` id, or a Hub-ready folder."""

    @abstractmethod
    def build_datasets(self, cfg: Mapping[str, Any]) -> tuple[Dataset, Dataset]:
        """(train, eval) datasets; items are dicts with at least `image` ([C, H, W] in [0, 1])."""

    @abstractmethod
    def training_loss(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Named losses for one batch; must include "total"."""

    @abstractmethod
    def predict(self, model: nn.Module, batch: Mapping[str, Any]) -> Any:
        """What the metric consumes, for one batch, in eval mode."""

    @abstractmethod
    def new_metric(self) -> Metric:
        """A fresh, empty metric."""

    def visualize(self, model: nn.Module, batch: Mapping[str, Any], out_dir: Path) -> list[Path]:
        """Write a few PNG pictures of predictions; the default writes none."""
        return []

    def backbone_of(self, model: nn.Module) -> nn.Module:
        """The backbone inside the full model (what is saved as the zoo weight)."""
        return getattr(model, "backbone", model)
