"""Downstream tasks, by name. Each is imported only when asked for."""
from __future__ import annotations

import importlib

from ..errors import ConfigError
from ..metrics.base import Metric
from .base import Task

TASKS: dict[str, str] = {
    "classification": "repfusion_zoo.tasks.classification:ClassificationTask",
    "segmentation": "repfusion_zoo.tasks.segmentation:SegmentationTask",
    "landmarks": "repfusion_zoo.tasks.landmarks:LandmarksTask",
}


def get_task(name: str) -> type[Task]:
    """The Task class registered under `name`."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    module_name, class_name = TASKS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["Metric", "Task", "TASKS", "get_task"]
