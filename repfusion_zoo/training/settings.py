"""What the training loop needs to know, and the pieces it builds from it.

- `LoopSettings`: the settings the `Trainer` reads, declared once with their help; every training
  recipe's config inherits them, and `LoopSettings.of(cfg)` takes them back out of one
  (`train_teacher`'s: no epochs, checkpoints in ``<output>.run``).
- `TrainConfig`: a `LoopSettings` plus the keys every recipe that trains a student shares (distill,
  finetune); its ``lr_scheduler`` names the learning-rate schedule (`lr_factor`).
- `make_accelerator(settings, find_unused_parameters)`: the one accelerator factory.
- `build_optimizer`, `micro_batch_size`, `lr_factor` / `lr_schedule`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration
from torch import nn

from ..distributed import multi_process_cpu
from ..errors import ConfigError, MissingExtraError
from ..config import opt, redefault, settings_of
from .precision import run_precision

__all__ = ["TrainConfig", "LoopSettings", "LrSchedule", "make_accelerator", "micro_batch_size", "build_optimizer",
           "lr_factor", "lr_schedule", "trackers"]

#: builds the learning-rate schedule once the loop knows its length:
#: ``(optimizer, steps_per_epoch, total_steps) -> torch.optim.lr_scheduler.LRScheduler``
LrSchedule = Callable[[torch.optim.Optimizer, int, int], torch.optim.lr_scheduler.LRScheduler]


@dataclass
class LoopSettings:
    """What the `Trainer` reads: the loop keys of every recipe that trains (distill, finetune,
    train_teacher), declared once here; `TrainConfig` and `TeacherConfig` inherit them (a recipe
    gives a key its own default with `redefault`). ``output_dir`` holds the ``checkpoint-<step>``
    folders, ``log.jsonl`` and the trackers' ``logs/``."""

    output_dir: str = opt("outputs/run", "where checkpoints, logs, pictures and the saved model go")
    seed: int = opt(0, "seed of the data order, augmentation and every random draw")
    num_train_epochs: int | None = opt(200, "training epochs (null: until max_train_steps)")
    max_train_steps: int = opt(0, "stop after this many optimiser steps (0 = run all epochs)")
    train_batch_size: int = opt(128, "GLOBAL batch per optimiser step (split over processes and accumulation)")
    gradient_accumulation_steps: int = opt(1, "micro-batches per optimiser step")
    max_grad_norm: float = opt(0.0, "clip gradients to this norm (0 = off)")
    mixed_precision: str = opt("", "no | fp16 | bf16; empty = what you told `accelerate launch`, else bf16 autocast on a CPU "
                                   "with native bf16 (AVX512-BF16/AMX), else no (training/precision.py)",
                               choices=["", "no", "fp16", "bf16"])
    dataloader_num_workers: int = opt(0, "data-loader worker processes")
    checkpointing_steps: int = opt(0, "save the resumable state output_dir/checkpoint-<step> every N optimiser steps (0 = only at the end)")
    checkpoints_total_limit: int = opt(2, "how many checkpoint-<step> folders to keep")
    resume_from_checkpoint: str = opt("", "'' = fresh, 'latest' (or 'auto') = the newest output_dir/checkpoint-<step>, or a checkpoint folder")
    report_to: str = opt("none", "trackers for accelerate (none, tensorboard, all, ...)")
    log_every: int = opt(10, "log the running losses every N optimiser steps")
    train_subset: str = opt("", "train only on these items: a JSON file with a list of dataset indices ('' = all)")
    channels_last: bool = opt(False, "the trained model's 4-D weights, and so its convolutions, in channels_last memory format "
                                     "(a CIFAR ResNet step on a CPU: ~0.6x the time, benchmarks/train_step.py; a UNet's: "
                                     "1.1x, benchmarks/teacher_step.py; false = NCHW)")

    @classmethod
    def of(cls, cfg: Any, **changes: Any) -> LoopSettings:
        """The loop settings a recipe config holds, plus ``changes``."""
        return settings_of(cls, cfg, **changes)


@dataclass
class TrainConfig(LoopSettings):
    """Keys shared by every recipe that trains a student (distill, finetune): the loop's, and the
    optimiser's and schedule's."""

    channels_last: bool = redefault(LoopSettings, "channels_last", True)
    eval_batch_size: int = opt(256, "evaluation batch per process")
    optimizer: str = opt("sgd", "optimiser", choices=["sgd", "adam", "adamw"])
    learning_rate: float = opt(0.1, "peak learning rate")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(1e-4, "weight decay")
    lr_scheduler: str = opt("multistep", "learning-rate schedule", choices=["multistep", "poly", "cosine", "constant"])
    milestones: list[int] = opt([100, 150], "multistep: epochs where the lr is multiplied by `gamma`")
    gamma: float = opt(0.1, "multistep decay factor")
    poly_power: float = opt(0.9, "poly: (1 - step/total) ** power")


def trackers(report_to: str) -> list[str]:
    """``"tensorboard"`` / ``"tensorboard,wandb"`` / ``"all"`` -> accelerate's ``log_with``; none for '' or 'none'."""
    return [t.strip() for t in str(report_to).split(",") if t.strip() and t.strip() != "none"]


def make_accelerator(settings: LoopSettings, find_unused_parameters: bool = False) -> Accelerator:
    """The accelerator of a run: accumulation, precision (`run_precision`: the run's key, else the
    launcher's as you chose it, else bf16 autocast on a CPU with native bf16, said once), trackers,
    project folder; a CPU-only multi-process launch joins one gloo group.

    ``find_unused_parameters``: DDP's, for a model whose step may leave parameters without a
    gradient (distillation: a batch without a labelled image leaves decoder g and the policy
    out). The LR schedule is stepped by the loop once per optimiser step, not by accelerate
    (which would step it once per process).
    """
    log_with = trackers(settings.report_to)
    if "tensorboard" in log_with:
        try:
            import tensorboard  # noqa: F401  (optional: the recipes extra; checked here to fail before training)
        except ImportError as error:
            raise MissingExtraError.of("tensorboard", "--report_to tensorboard (or use --report_to none)") from error
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if find_unused_parameters else []
    return Accelerator(
        cpu=multi_process_cpu(),
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        mixed_precision=run_precision(settings.mixed_precision),
        log_with=log_with or None,
        project_config=ProjectConfiguration(project_dir=settings.output_dir,
                                            logging_dir=str(Path(settings.output_dir) / "logs")),
        kwargs_handlers=handlers,
        step_scheduler_with_optimizer=False,
    )


def micro_batch_size(settings: Any, num_processes: int) -> int:
    """Per-process, per-micro-step batch: `train_batch_size / (num_processes * gradient_accumulation_steps)`."""
    parts = num_processes * settings.gradient_accumulation_steps
    if settings.train_batch_size % parts or settings.train_batch_size < parts:
        raise ConfigError(
            f"train_batch_size={settings.train_batch_size} must be a multiple of num_processes x gradient_accumulation_steps = {parts}"
        )
    return settings.train_batch_size // parts


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """`cfg.optimizer` (SGD with momentum, Adam or AdamW) over the `params` that require grad."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The multiplier of the peak lr at optimiser step `step` (a pure function of the step)."""
    if cfg.lr_scheduler == "multistep":
        return cfg.gamma ** sum(step >= m * steps_per_epoch for m in cfg.milestones)
    if cfg.lr_scheduler == "poly":
        return max(0.0, 1.0 - step / max(1, total_steps)) ** cfg.poly_power
    if cfg.lr_scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))
    return 1.0


def lr_schedule(cfg: TrainConfig) -> LrSchedule:
    """`cfg`'s schedule (`lr_factor`) as the loop's `LrSchedule`: a `LambdaLR` (its state is saved and
    restored with accelerate's, ``weights_only`` as every state file)."""

    def build(optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
        factor = functools.partial(lr_factor, cfg, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    return build
