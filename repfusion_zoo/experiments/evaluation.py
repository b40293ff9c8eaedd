"""The two evaluations the runner makes itself: the frozen backbone's kNN top-1 (the representation
alone, before fine-tuning) and the fine-tuned model's top-1 on the validation subset (for choices)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..tasks.classification import Normalized
from ..zoo import create_model
from .config import ExperimentConfig
from .knn import embed, knn_top1

__all__ = ["frozen_knn", "validation_top1"]


def frozen_backbone(cfg: ExperimentConfig, folder: Path | None, seed: int) -> torch.nn.Module:
    """The distilled backbone in `folder`, or (scratch: `folder` None) the student as seed `seed` initialises it;
    pooled features out (`num_classes=0`), images in [0, 1] in."""
    if folder is None:
        torch.manual_seed(seed)
        model = create_model(cfg.student, pretrained=False, num_classes=0, in_chans=cfg.in_chans, **cfg.student_kwargs)
    else:
        model = create_model(str(folder), pretrained=True)
        model.reset_classifier(0)
    return Normalized(model, cfg.in_chans)


def frozen_knn(cfg: ExperimentConfig, folder: Path | None, seed: int, bank: Dataset, queries: Dataset) -> float:
    """kNN top-1 (%) of the frozen backbone: `bank` (labelled train images) votes for each of `queries`."""
    backbone = frozen_backbone(cfg, folder, seed)
    bank_x, bank_y = embed(backbone, bank, batch_size=cfg.eval_batch_size)
    query_x, query_y = embed(backbone, queries, batch_size=cfg.eval_batch_size)
    return knn_top1(bank_x, bank_y, query_x, query_y, k=cfg.knn_k, temperature=cfg.knn_temperature)


@torch.no_grad()
def validation_top1(cfg: ExperimentConfig, folder: Path, dataset: Dataset) -> float | None:
    """Top-1 (%) of the fine-tuned classifier in `folder` on `dataset` (None when it is empty)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        return None
    model = Normalized(create_model(str(folder), pretrained=True), cfg.in_chans)
    logits, labels = embed(model, dataset, batch_size=cfg.eval_batch_size)
    return 100.0 * float((logits.argmax(dim=1) == labels).float().mean())
