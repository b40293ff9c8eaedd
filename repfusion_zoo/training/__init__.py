"""Training infrastructure shared by the recipes: loop settings, the loop, its step contract, state,
data order, evaluation, plots, CPU threads and precision."""
from __future__ import annotations

from .evaluate import evaluate, shard
from .loop import Trainer, epoch_batches
from .plots import plot_timestep_histograms
from .precision import run_precision
from .settings import (LoopSettings, TrainConfig, build_optimizer, lr_factor, lr_schedule, make_accelerator,
                       micro_batch_size)
from .state import CheckpointManager, TrainingState, complete_checkpoints, resolve_resume, seed_everything, seed_step
from .step import StepFn, StepOutput
from .threads import configure_cpu_threads

__all__ = [
    "CheckpointManager", "LoopSettings", "StepFn", "StepOutput", "TrainConfig", "Trainer", "TrainingState",
    "build_optimizer", "complete_checkpoints", "configure_cpu_threads", "epoch_batches", "evaluate", "lr_factor",
    "lr_schedule", "make_accelerator", "micro_batch_size", "plot_timestep_histograms", "resolve_resume", "run_precision",
    "seed_everything", "seed_step", "shard",
]
