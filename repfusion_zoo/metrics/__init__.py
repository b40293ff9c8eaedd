"""Additive metrics for the dense downstream tasks (state summed across processes, then computed)."""
from __future__ import annotations

from .landmarks import WFLW_SUBSETS, NMEMetric, nme_per_sample
from .segmentation import SegmentationMetric, confusion_matrix, scores_from_confusion

__all__ = [
    "NMEMetric",
    "SegmentationMetric",
    "WFLW_SUBSETS",
    "confusion_matrix",
    "nme_per_sample",
    "scores_from_confusion",
]
