"""Sharded evaluation: process `r` of `w` takes items `r::w` (never padded, nothing counted
twice), feeds them through `task.predict`, and the additive metric states are summed across
processes with `accelerator.reduce` before `compute` (see repfusion_zoo/tasks/base.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..modes import evaluating
from .data import collate


def shard(dataset: Dataset, rank: int, world: int) -> Dataset:
    """Items `rank::world` of `dataset` (a plain `Subset`)."""
    return Subset(dataset, list(range(rank, len(dataset), world)))  # type: ignore[arg-type]


def evaluate(
    accelerator: Accelerator,
    model: nn.Module,
    dataset: Dataset,
    task: Any,
    *,
    batch_size: int = 256,
    pictures_dir: str | Path | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """`task`'s metric on `dataset`, computed from states summed over every process."""
    loader = DataLoader(shard(dataset, accelerator.process_index, accelerator.num_processes),
                        batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    metric = task.new_metric()
    pictured = False
    with evaluating(model):
        for batch in loader:
            batch = send_to_device(batch, accelerator.device)
            with accelerator.autocast():
                prediction = task.predict(model, batch)
            metric.update(prediction, batch)
            if pictures_dir is not None and not pictured and accelerator.is_main_process:
                Path(pictures_dir).mkdir(parents=True, exist_ok=True)
                task.visualize(accelerator.unwrap_model(model), batch, Path(pictures_dir))
                pictured = True
        state = metric.state().to(device=accelerator.device, dtype=torch.float64)
        total = accelerator.reduce(state, reduction="sum")
    return {k: float(v) for k, v in metric.compute(total.cpu()).items()}

