"""Downstream tasks, by name: classification, segmentation (face parsing), landmarks."""
from __future__ import annotations

from ..errors import ConfigError
from ..metrics.base import Metric
from .base import Task
from .classification import ClassificationTask
from .landmarks import LandmarksTask
from .segmentation import SegmentationTask

TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "segmentation": SegmentationTask,
    "landmarks": LandmarksTask,
}


def get_task(name: str) -> type[Task]:
    """The Task class registered under `name`."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


__all__ = ["Metric", "Task", "TASKS", "get_task"]
