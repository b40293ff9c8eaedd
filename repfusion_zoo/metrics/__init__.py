"""Additive metrics of the downstream tasks (state summed across processes, then computed); `Metric` is their interface."""
from __future__ import annotations

from .base import Metric
from .classification import TopKAccuracy
from .landmarks import WFLW_SUBSETS, NMEMetric, nme_per_sample
from .segmentation import SegmentationMetric, confusion_matrix, scores_from_confusion

__all__ = [
    "Metric",
    "TopKAccuracy",
    "NMEMetric",
    "SegmentationMetric",
    "WFLW_SUBSETS",
    "confusion_matrix",
    "nme_per_sample",
    "scores_from_confusion",
]
