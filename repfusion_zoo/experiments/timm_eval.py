"""A weight measured through timm's own eval pipeline on a split of an image folder (how a shipped weight
is held to its card: scripts/ship_weight.py records, tests/test_shipped_weights.py re-measures).

The data path is timm's, independent of the recipes': ``resolve_model_data_config`` +
``create_transform`` (the weight's pretrained cfg: input size, crop_pct, interpolation, mean/std),
torchvision's ``ImageFolder`` (classes in sorted order, as the recipes' image folders).

* `classifier_top1`: a classifier's top-1 (%) on the split.
* `halves_knn_top1`: a backbone's frozen kNN top-1 (%) inside the split: the even-indexed images
  (sorted paths) are the labelled bank, the odd-indexed ones the queries (k = 20, cosine; `knn_top1`).
  It needs no subset file, so anyone with the split reproduces it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from timm.data import create_transform, resolve_model_data_config
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from .knn import knn_top1
from ..modes import evaluating

__all__ = ["classifier_top1", "halves_knn_top1", "split_outputs"]


@torch.no_grad()
def split_outputs(model: nn.Module, folder: str | Path, *, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(`[N, C]` outputs of ``model``, `LongTensor[N]` labels) over the image folder ``folder``
    (``<class>/<image>``), each image through timm's eval transform for ``model``'s pretrained cfg."""
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    loader = DataLoader(ImageFolder(str(folder), transform=transform), batch_size=batch_size, shuffle=False)
    outputs, labels = [], []
    with evaluating(model):
        for images, targets in loader:
            outputs.append(model(images).float())
            labels.append(targets)
    return torch.cat(outputs), torch.cat(labels)


def classifier_top1(model: nn.Module, folder: str | Path) -> float:
    """Top-1 (%) of classifier ``model`` on the image folder ``folder``."""
    logits, labels = split_outputs(model, folder)
    return 100.0 * float((logits.argmax(dim=1) == labels).float().mean())


def halves_knn_top1(backbone: nn.Module, folder: str | Path) -> float:
    """kNN top-1 (%) of ``backbone``'s pooled features (``num_classes=0``): even-indexed images of
    ``folder`` vote (the bank) for the odd-indexed ones (the queries)."""
    features, labels = split_outputs(backbone, folder)
    return knn_top1(features[0::2], labels[0::2], features[1::2], labels[1::2])
