"""Semantic-segmentation scores (mIoU, aAcc, mAcc) from one confusion matrix.

The state is the confusion matrix itself (float64, rows = target, columns = prediction), so
states from several batches or processes are merged by summing them.

Classes that never occur: a class absent from BOTH target and prediction has no union and its
IoU is undefined (NaN); a class absent from the target has no accuracy (NaN). Like mmseg, the
means skip those NaNs (`nanmean`), so an absent class neither helps nor hurts the mean. A class
that is predicted but absent from the target has IoU 0 and counts.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .base import Metric


def confusion_matrix(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """Confusion matrix `[C, C]` float64 (row = target, column = prediction) of label maps `[..., H, W]`.

    Pixels whose target is `ignore_index` are skipped.
    """
    if prediction.shape != target.shape:
        raise InputError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape; "
            "upsample the logits to the mask size before the argmax"
        )
    target = target.reshape(-1).long()
    prediction = prediction.reshape(-1).long()
    keep = target != ignore_index
    target, prediction = target[keep], prediction[keep]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise InputError(f"target labels must be in 0..{num_classes - 1} or {ignore_index} (ignore)")
    if prediction.numel() and (int(prediction.min()) < 0 or int(prediction.max()) >= num_classes):
        raise InputError(f"predicted labels must be in 0..{num_classes - 1}")
    counts = torch.bincount(target * num_classes + prediction, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).to(torch.float64)


def scores_from_confusion(
    confusion: torch.Tensor, class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """mIoU, aAcc, mAcc (in percent) and per-class IoU from a confusion matrix `[C, C]`."""
    confusion = confusion.to(torch.float64).cpu()
    correct = confusion.diagonal()
    in_target = confusion.sum(dim=1)
    in_prediction = confusion.sum(dim=0)
    union = in_target + in_prediction - correct
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(union > 0, correct / union.clamp_min(1), nan)
    accuracy = torch.where(in_target > 0, correct / in_target.clamp_min(1), nan)
    total = float(confusion.sum())
    scores = {
        "mIoU": 100.0 * float(torch.nanmean(iou)),  # NaN when no class occurs at all
        "aAcc": 100.0 * float(correct.sum()) / total if total > 0 else float("nan"),
        "mAcc": 100.0 * float(torch.nanmean(accuracy)),
    }
    if class_names is not None:
        for name, value in zip(class_names, iou.tolist()):
            scores[f"IoU.{name}"] = 100.0 * value
    return scores


class SegmentationMetric(Metric):
    """mIoU / aAcc / mAcc over `num_classes` labels, accumulated in a confusion matrix."""

    def __init__(
        self, num_classes: int = 19, ignore_index: int = 255, class_names: Sequence[str] | None = None
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names) if class_names is not None else None
        self._confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)

    def update(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> None:
        """prediction: LongTensor `[B, H, W]`; batch["mask"]: LongTensor `[B, H, W]` (255 = ignore)."""
        target = batch["mask"].to(prediction.device)
        # counted where the tensors are (GPU bincount); only the C x C result comes to the CPU
        self._confusion += confusion_matrix(prediction.detach(), target.detach(), self.num_classes, self.ignore_index).cpu()

    def state(self) -> torch.Tensor:
        """The confusion matrix, flattened: `[C * C]` float64."""
        return self._confusion.reshape(-1).clone()

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        """{"mIoU", "aAcc", "mAcc"} in percent (plus "IoU.<class>" when class names were given)."""
        confusion = state.reshape(self.num_classes, self.num_classes)
        return scores_from_confusion(confusion, self.class_names)
