"""The keys of an experiment: a grid of arms x seeds (x label budgets) on one dataset and one teacher.

An arm is a mapping of distill-recipe keys: `{distill: false}` is the scratch baseline (fine-tune
only); `{strategy: reinforce}` the RL policy; `{strategy: fixed, t: 100}` a fixed time step;
`{strategy: fixed, t: probe}` the t a linear probe of the cached teacher features picks on the
labelled subset (no test data); `{strategy: fixed, t: validate}` the t short distillations from
the cache pick by their students' kNN top-1 on the validation subset (successive halving, from
`validate_steps` optimiser steps; experiments/validate.py); `{strategy: random}` uniform t. An arm may name its own `seeds`
(default: all `seeds`), any other distill key (e.g. `loss: at`) and, under `finetune:`, fine-tune
keys of its own over the experiment's (e.g. `{distill: false, finetune: {num_train_epochs: 160}}`:
scratch with a schedule twice as long, the convergence check; `{strategy: fixed, t: 300, finetune:
{distill_weight: 1.0, distill_t: 300}}`: fine-tuning that keeps the distillation loss to the
experiment's teacher as a regulariser).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import opt, redefault
from ..data.settings import DataSettings
from ..errors import ConfigError
from ..teachers import TeacherSettings

__all__ = ["ExperimentConfig", "arm_finetune", "arm_seeds", "check_arms", "run_dir", "PROBE"]

#: the `t` of an arm whose time step the linear probe of the cached features chooses
PROBE = "probe"

DEFAULT_ARMS: dict[str, dict[str, Any]] = {
    "scratch": {"distill": False},
    "rl": {"strategy": "reinforce"},
    "fixed_t0": {"strategy": "fixed", "t": 0},
    "fixed_t100": {"strategy": "fixed", "t": 100},
    "fixed_t500": {"strategy": "fixed", "t": 500},
    "random": {"strategy": "random"},
    "probe": {"strategy": "fixed", "t": PROBE},
}


@dataclass
class ExperimentConfig(DataSettings, TeacherSettings):
    """Keys of recipes/experiment.py (a YAML file's keys and the flags are the same names; the images':
    `DataSettings`; the teacher's: `TeacherSettings`, handed to the cache and every distillation)."""

    name: str = opt("experiment", "results file stem: <results_dir>/<name>.json|.md|.png")
    output_dir: str = opt("outputs/experiment", "where the cache, subsets and every arm-seed's runs go (grids may share one if they draw the same subsets)")
    results_dir: str = opt("docs/results", "where the results files are copied ('' = output_dir only)")
    dataset: str = redefault(DataSettings, "dataset", "data/cifar10",
                             "image folder (train/ and test/ class folders) or another build_dataset spec")
    student: str = opt("resnet18_cifar", "student architecture (zoo or timm name)")
    student_kwargs: dict = opt({}, "extra timm kwargs of the student, e.g. {channels: [16, 32, 64, 128]}")
    timesteps: str = opt("0,10,50,100,200,300,500,999", "the cache's time-step set: every arm's actions")
    distill_images_per_class: int = opt(0, "images per class distilled on (0 = the whole train split)")
    labels_per_class: list[int] = opt([500], "labelled images per class for fine-tuning, decoder g and kNN (one grid per value; 0 = all)")
    val_images_per_class: int = opt(100, "labelled validation images per class, outside every labelled subset (choices only)")
    data_seed: int = opt(0, "seed of the distilled-image and validation subsets (the same for every arm and seed)")
    seeds: list[int] = opt([0, 1], "seeds of the label subset, the initialisation and the data order")
    arms: dict = opt(DEFAULT_ARMS, "arm name -> distill keys ({distill: false} = scratch; t: probe = the probe's t)")
    distill: dict = opt({}, "recipes/distill.py keys shared by every distilling arm (schedule, loss, ...; a child "
                            "file or flag changes only the keys it names)", merge=True)
    finetune: dict = opt({}, "recipes/finetune.py keys shared by every arm (schedule, crop_padding, ...; a child "
                             "file or flag changes only the keys it names)", merge=True)
    cache: dict = opt({}, "recipes/cache_features.py keys (dtype, batch_size, ...; a child file or flag changes "
                          "only the keys it names)", merge=True)
    knn_k: int = opt(20, "k of the kNN evaluation of the frozen backbone")
    knn_temperature: float = opt(0.07, "temperature of the kNN vote weights")
    probe_test_fraction: float = opt(0.3, "held-out fraction of the labelled subset in the probe arm's linear probe")
    validate_steps: int = opt(50, "optimiser steps of the first round of the validate arm's short distillations (doubled each round)")
    launcher: str = opt("accelerate launch", "how each recipe runs, e.g. 'python' or 'accelerate launch --multi_gpu --num_processes 8'")
    eval_batch_size: int = opt(256, "batch of the kNN and validation passes")
    publish: str = opt("", "the arm whose best seed (by validation top-1) is copied to <output_dir>/weights with its "
                             "card ('' = none)")


def run_dir(cfg: ExperimentConfig, labels_per_class: int, arm: str, seed: int) -> Path:
    """Where one arm-seed's recipes run: ``<output_dir>/runs/lpc<n>/<arm>-seed<s>``."""
    return Path(cfg.output_dir) / "runs" / f"lpc{labels_per_class}" / f"{arm}-seed{seed}"


def arm_finetune(cfg: ExperimentConfig, arm: str) -> dict[str, Any]:
    """The fine-tune keys of arm `arm`: the experiment's `finetune`, then the arm's own over them."""
    return {**cfg.finetune, **cfg.arms[arm].get("finetune", {})}


def arm_seeds(cfg: ExperimentConfig, arm: str) -> list[int]:
    """The seeds arm `arm` runs with: its own `seeds` entry, else the experiment's."""
    return [int(s) for s in cfg.arms[arm].get("seeds", cfg.seeds)]


def check_arms(cfg: ExperimentConfig) -> None:
    """`ConfigError` for an arm that is not a mapping, names a seed outside `seeds`, or lacks a strategy."""
    for name, spec in cfg.arms.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"arm {name!r} must be a mapping of distill keys, got {spec!r}")
        if not isinstance(spec.get("finetune", {}), dict):
            raise ConfigError(f"arm {name!r}: finetune must be a mapping of fine-tune keys, got {spec['finetune']!r}")
        extra = sorted(set(arm_seeds(cfg, name)) - set(cfg.seeds))
        if extra:
            raise ConfigError(f"arm {name!r} names seeds {extra} outside the experiment's seeds {cfg.seeds}")
        if spec.get("distill", True) and "strategy" not in spec:
            raise ConfigError(f"arm {name!r} distils but names no strategy; add strategy: reinforce | fixed | random "
                              "(or distill: false for the scratch baseline)")
    if cfg.publish and cfg.publish not in cfg.arms:
        raise ConfigError(f"publish names arm {cfg.publish!r}, which is not one of the arms {sorted(cfg.arms)}; "
                          "name one of them or '' (publish nothing)")
    if "scratch" not in cfg.arms:
        raise ConfigError("an experiment needs a 'scratch' arm ({distill: false}): every difference is reported against it")
