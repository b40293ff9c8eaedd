"""Training infrastructure shared by the recipes: config, data order, loop, state, eval, plots."""
from __future__ import annotations

from .config import ConfigError, format_help, load_config, opt, peek, read_yaml, to_dict, wants_help
from .evaluate import evaluate, shard
from .loop import TrainConfig, Trainer, build_optimizer, lr_factor, make_accelerator, micro_batch_size
from .plots import plot_timestep_histograms
from .threads import configure_cpu_threads
from .state import CheckpointManager, Progress, complete_checkpoints, resolve_resume, seed_everything, seed_step

__all__ = [
    "CheckpointManager", "ConfigError", "Progress", "TrainConfig", "Trainer", "build_optimizer",
    "complete_checkpoints", "configure_cpu_threads", "evaluate", "format_help", "load_config", "lr_factor", "make_accelerator",
    "micro_batch_size", "opt", "peek", "plot_timestep_histograms", "read_yaml", "resolve_resume",
    "seed_everything", "seed_step", "shard", "to_dict", "wants_help",
]
