"""The one Accelerate training loop behind every recipe (distill, finetune).

`TrainConfig` holds the keys every recipe shares; `Trainer` owns the accelerator, the data
loader, the optimiser and schedule, resume, logging and the step loop. A recipe supplies a
`step_fn(model, batch, progress_fraction) -> dict[str, Tensor]` returning named losses with
"total"; 0-d tensors are logged (mean over processes and over the epoch), integer 1-d tensors
named in `histograms` are gathered and counted per epoch (e.g. the sampled time steps "t").
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.subsets import check_indices, read_indices
from ..errors import ConfigError
from .config import opt, to_dict
from .data import seeded_train_loader
from .state import CheckpointManager, Progress, resolve_resume, seed_step

StepFn = Callable[[nn.Module, dict[str, Any], float], Mapping[str, torch.Tensor]]


@dataclass
class TrainConfig:
    """Keys shared by every recipe that trains."""

    output_dir: str = opt("outputs/run", "where checkpoints, logs, pictures and the saved model go")
    seed: int = opt(0, "seed of the data order, augmentation and every random draw")
    num_train_epochs: int = opt(200, "training epochs")
    max_train_steps: int = opt(0, "stop after this many optimiser steps (0 = run all epochs)")
    train_batch_size: int = opt(128, "GLOBAL batch per optimiser step (split over processes and accumulation)")
    eval_batch_size: int = opt(256, "evaluation batch per process")
    optimizer: str = opt("sgd", "optimiser", choices=["sgd", "adam", "adamw"])
    learning_rate: float = opt(0.1, "peak learning rate")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(1e-4, "weight decay")
    scheduler: str = opt("multistep", "learning-rate schedule", choices=["multistep", "poly", "cosine", "constant"])
    milestones: list[int] = opt([100, 150], "multistep: epochs where the lr is multiplied by `gamma`")
    gamma: float = opt(0.1, "multistep decay factor")
    poly_power: float = opt(0.9, "poly: (1 - step/total) ** power")
    max_grad_norm: float = opt(0.0, "clip gradients to this norm (0 = off)")
    gradient_accumulation_steps: int = opt(1, "micro-batches per optimiser step")
    mixed_precision: str = opt("", "no | fp16 | bf16; empty = what `accelerate launch` says", choices=["", "no", "fp16", "bf16"])
    dataloader_num_workers: int = opt(0, "data-loader worker processes")
    checkpointing_steps: int = opt(0, "save the resumable state output_dir/checkpoint-<step> every N optimiser steps (0 = only at the end)")
    checkpoints_total_limit: int = opt(2, "how many checkpoint-<step> folders to keep")
    resume_from_checkpoint: str = opt("", "'' = fresh, 'latest' (or 'auto') = the newest output_dir/checkpoint-<step>, or a checkpoint folder")
    report_to: str = opt("none", "trackers for accelerate (none, tensorboard, all, ...)")
    log_every: int = opt(10, "log the running losses every N optimiser steps")
    train_subset: str = opt("", "train only on these items: a JSON file with a list of dataset indices ('' = all)")


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The accelerator for a run: accumulation, precision, trackers, project dir."""
    report_to = None if cfg.report_to in ("", "none") else cfg.report_to
    if report_to == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("--report_to tensorboard needs the `tensorboard` package; pip install tensorboard or use --report_to none") from None
    return Accelerator(
        cpu=multi_process_cpu(),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision or None,
        log_with=report_to,
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=str(Path(cfg.output_dir) / "logs")),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def multi_process_cpu() -> bool:
    """True when launched as several processes (torchrun / `accelerate launch --multi_gpu`) without CUDA.

    Accelerate picks the gloo MULTI_CPU backend only when asked for the CPU; without this a
    CPU-only multi-process launch would run N independent single-process copies.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return world > 1 and not torch.cuda.is_available()


def micro_batch_size(cfg: TrainConfig, num_processes: int) -> int:
    """Per-process, per-micro-step batch: `train_batch_size / (num_processes * gradient_accumulation_steps)`."""
    parts = num_processes * cfg.gradient_accumulation_steps
    if cfg.train_batch_size % parts or cfg.train_batch_size < parts:
        raise ConfigError(
            f"train_batch_size={cfg.train_batch_size} must be a multiple of num_processes x gradient_accumulation_steps = {parts}"
        )
    return cfg.train_batch_size // parts


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """`cfg.optimizer` (SGD with momentum, Adam or AdamW) over the `params` that require grad."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The multiplier of the peak lr at optimiser step `step` (a pure function: resume-safe)."""
    if cfg.scheduler == "multistep":
        return cfg.gamma ** sum(step >= m * steps_per_epoch for m in cfg.milestones)
    if cfg.scheduler == "poly":
        return max(0.0, 1.0 - step / max(1, total_steps)) ** cfg.poly_power
    if cfg.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))
    return 1.0


class Trainer:
    """Accelerator + data + optimiser + schedule + resume + logging around a recipe's step."""

    def __init__(self, cfg: TrainConfig, project_name: str) -> None:
        self.cfg = cfg
        self.output_dir = Path(cfg.output_dir)
        self.accelerator = make_accelerator(cfg)
        self.project_name = project_name
        self.progress = Progress()
        self._log_file = self.output_dir / "log.jsonl"
        self._tally = DeviceTally()  # the epoch's running sums, on the device until read

    # ---- set-up -------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def print(self, *args: Any) -> None:
        self.accelerator.print(*args, flush=True)

    def train_loader(self, dataset: Dataset) -> DataLoader:
        """The training loader: epoch-seeded order and augmentation, drop_last, sharded by accelerate;
        only the items of `train_subset` when the config names one."""
        cfg = self.cfg
        if cfg.train_subset:
            indices = read_indices(cfg.train_subset)
            check_indices(indices, dataset, f"train_subset {cfg.train_subset}")
            dataset = Subset(dataset, indices)
        micro = micro_batch_size(cfg, self.accelerator.num_processes)
        loader, self.sampler, self.seeded = seeded_train_loader(dataset, micro, cfg.seed, cfg.dataloader_num_workers)
        if len(loader) < self.accelerator.num_processes:
            raise ConfigError(f"the training set ({len(dataset)} items) is smaller than one global batch ({cfg.train_batch_size}); lower --train_batch_size")
        return loader

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        """Wrap with accelerate; build the lr schedule; restore the state when resuming."""
        cfg, acc = self.cfg, self.accelerator
        self.model, self.optimizer, self.loader = acc.prepare(model, optimizer, loader)
        self.steps_per_epoch = max(1, math.ceil(len(self.loader) / cfg.gradient_accumulation_steps))
        total = cfg.num_train_epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_train_steps) if cfg.max_train_steps > 0 else total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer,
            lambda step: lr_factor(cfg, step, self.steps_per_epoch, self.total_steps),
        )
        self.checkpoints = CheckpointManager(acc, self.output_dir, cfg.checkpoints_total_limit)
        resume_from = resolve_resume(cfg.resume_from_checkpoint, self.output_dir)
        if resume_from is not None:
            self.progress = self.checkpoints.load(resume_from)
            self.scheduler.last_epoch = self.progress.step - 1
            self.scheduler.step()
            self.print(f"resumed from {resume_from} at step {self.progress.step} (epoch {self.progress.epoch})")
        if cfg.report_to not in ("", "none"):
            acc.init_trackers(self.project_name, config=_flat_scalars(to_dict(cfg)))
        return self.model, self.optimizer, self.loader

    # ---- the loop -----------------------------------------------------------------------
    def fit(self, step_fn: StepFn, *, histograms: Mapping[str, int] | None = None,
            on_epoch_end: Callable[[int], Mapping[str, float]] | None = None) -> Progress:
        """Run optimiser steps until `total_steps`; save every `checkpointing_steps` steps and at the end."""
        cfg, acc, progress = self.cfg, self.accelerator, self.progress
        histograms = dict(histograms or {})
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps, initial=progress.step, disable=not acc.is_local_main_process,
                   desc=self.project_name, dynamic_ncols=True)
        self.model.train()
        while progress.step < self.total_steps:
            batches = epoch_batches(acc, self.loader, progress.epoch, progress.batch_in_epoch)
            self.sampler.set_epoch(progress.epoch)
            self.seeded.set_epoch(progress.epoch)
            stopped = False
            for batch in batches:
                seed_step(cfg.seed, progress.epoch * len(self.loader) + progress.batch_in_epoch, acc.process_index)
                with acc.accumulate(self.model):
                    with acc.autocast():
                        out = step_fn(self.model, batch, progress.step / max(1, self.total_steps))
                    acc.backward(out["total"])
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                progress.batch_in_epoch += 1
                self._accumulate(out, histograms)
                if acc.sync_gradients:
                    self.scheduler.step()
                    progress.step += 1
                    bar.update(1)
                    if progress.step % max(1, cfg.log_every) == 0:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in self._running_means().items()})
                    if cfg.checkpointing_steps and progress.step % cfg.checkpointing_steps == 0 and progress.step < self.total_steps:
                        self._flush_tally()
                        self.checkpoints.save(progress)
                    if progress.step >= self.total_steps:
                        stopped = True
                        break
            epoch_done = not stopped or progress.batch_in_epoch >= len(self.loader)
            self._end_epoch(on_epoch_end, histograms, complete=epoch_done)
            self.model.train()
            if epoch_done:
                progress.epoch += 1
                progress.batch_in_epoch = 0
        bar.close()
        self._flush_tally()
        self.checkpoints.save(progress)
        return progress

    # ---- logging ------------------------------------------------------------------------
    def _accumulate(self, out: Mapping[str, torch.Tensor], histograms: Mapping[str, int]) -> None:
        """Add a step's 0-d losses (mean over processes) and histogram counts to the epoch's tally,
        on the device: no host sync here (`_tally.flush` syncs at log, checkpoint and epoch ends)."""
        acc = self.accelerator
        current = self.progress.history.setdefault("current", {"sums": {}, "count": 0, "hist": {}})
        tally = self._tally
        scalars = {k: v.detach().float() for k, v in out.items() if v.dim() == 0}
        if scalars:
            values = acc.reduce(torch.stack(list(scalars.values())).to(acc.device), reduction="mean")
            tally.add_scalars(current, tuple(scalars), values)
            current["count"] += 1
        for key, bins in histograms.items():
            if key in out:
                tally.add_counts(key, acc.gather(out[key].detach().long().to(acc.device)), bins)

    def _flush_tally(self) -> None:
        """The device tally into ``progress.history["current"]`` (before it is read or saved)."""
        if "current" in self.progress.history:
            self._tally.flush(self.progress.history["current"])

    def _running_means(self) -> dict[str, float]:
        self._flush_tally()
        current = self.progress.history.get("current", {})
        n = max(1, current.get("count", 0))
        return {k: v / n for k, v in current.get("sums", {}).items() if k in ("total", "distill", "task", "ce")}

    def _end_epoch(self, on_epoch_end: Callable[[int], Mapping[str, float]] | None,
                   histograms: Mapping[str, int], complete: bool) -> None:
        progress = self.progress
        self._flush_tally()
        current = progress.history.pop("current", {"sums": {}, "count": 0, "hist": {}})
        n = max(1, current["count"])
        record: dict[str, Any] = {"epoch": progress.epoch, "step": progress.step,
                                  "lr": self.optimizer.param_groups[0]["lr"], "complete_epoch": complete}
        record.update({_record_key(k): v / n for k, v in current["sums"].items()})
        if on_epoch_end is not None:
            record.update(on_epoch_end(progress.epoch))
        progress.history.setdefault("epochs", []).append({**record, "hist": current["hist"]})
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.cfg.report_to not in ("", "none"):
            self.accelerator.log(scalars, step=progress.step)
            self._log_histograms(current["hist"], progress.step)
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self._log_file, "a") as handle:
                handle.write(json.dumps({**record, "hist": current["hist"]}) + "\n")
            shown = ", ".join(f"{k}={v:.4g}" for k, v in scalars.items() if k not in ("epoch", "step"))
            from tqdm.auto import tqdm

            tqdm.write(f"epoch {progress.epoch} step {progress.step}: {shown}")  # on its own line, beside the bar

    def _log_histograms(self, hist: Mapping[str, list[int]], step: int) -> None:
        """Send each histogram of the epoch to TensorBoard when that tracker is active."""
        if not hist or not self.is_main:
            return
        try:
            tracker = self.accelerator.get_tracker("tensorboard", unwrap=True)
        except (ValueError, KeyError, AttributeError):
            return
        if not hasattr(tracker, "add_histogram"):
            return
        import numpy as np

        for key, counts in hist.items():
            values = np.repeat(np.arange(len(counts)), counts)
            if len(values):
                tracker.add_histogram(f"hist/{key}", values, step)

    def finish(self) -> None:
        """Close the trackers; the process group stays up (a recipe may run another loop after this one)."""
        for tracker in self.accelerator.trackers:
            tracker.finish()

    def epochs_history(self) -> list[dict[str, Any]]:
        return list(self.progress.history.get("epochs", []))


class DeviceTally:
    """Per-step losses and histogram counts summed on the device, read back only by `flush`.

    The sums are float64, started from the history's values and added in step order: after a
    flush they equal, bit for bit, adding each step's (float32) values to Python floats one by
    one. The counts are int64 (``scatter_add_``: no ``bincount``, which syncs on a GPU to size its
    output).
    """

    def __init__(self) -> None:
        self.keys: tuple[str, ...] = ()
        self.sums: torch.Tensor | None = None
        self.counts: dict[str, torch.Tensor] = {}

    def add_scalars(self, current: dict[str, Any], keys: tuple[str, ...], values: torch.Tensor) -> None:
        """Add one step's ``values [len(keys)]``; a new key set first flushes the old one into ``current``."""
        if keys != self.keys or self.sums is None:
            self.flush(current, counts=False)
            start = [current["sums"].get(k, 0.0) for k in keys]
            self.keys, self.sums = keys, torch.tensor(start, dtype=torch.float64).to(values.device)
        self.sums += values.detach().to(torch.float64)

    def add_counts(self, key: str, values: torch.Tensor, bins: int) -> None:
        """Count integer ``values`` into ``bins`` bins (values clamped to 0..bins-1)."""
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = torch.zeros(bins, dtype=torch.long, device=values.device)
        index = values.reshape(-1).clamp(0, bins - 1)
        counts.scatter_add_(0, index, torch.ones_like(index))

    def flush(self, current: dict[str, Any], counts: bool = True) -> None:
        """Write the sums (and the counts, added to ``current["hist"]``) into ``current``; one sync."""
        if self.sums is not None:
            current["sums"].update(zip(self.keys, self.sums.tolist()))
            self.keys, self.sums = (), None
        if counts:
            for key, tensor in self.counts.items():
                old, new = current["hist"].get(key), tensor.tolist()
                current["hist"][key] = new if old is None else [a + b for a, b in zip(old, new)]
            self.counts = {}


def epoch_batches(accelerator: Accelerator, loader: DataLoader, epoch: int, skip: int) -> Iterable[Any]:
    """The prepared `loader` positioned at batch `skip` of `epoch`.

    Accelerate's loaders call `set_epoch(self.iteration)` on their sampler and dataset when
    iterated, with `iteration` counting the loader's own passes; a resumed run (or the fresh
    loader `skip_first_batches` builds) would replay epoch 0's order. Setting the epoch on the
    loader itself keeps the order a function of the epoch only.
    """
    batches = accelerator.skip_first_batches(loader, skip) if skip else loader
    for holder in (loader, batches):
        if hasattr(holder, "set_epoch"):
            holder.set_epoch(epoch)
    for part in (getattr(loader, "dataset", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)
    return batches


def _record_key(name: str) -> str:
    """`policy_entropy` -> `policy/entropy`; losses -> `loss/<name>`."""
    return name.replace("policy_", "policy/", 1) if name.startswith("policy_") else f"loss/{name}"


def _flat_scalars(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Tracker-friendly config: scalars as they are, lists and dicts as strings."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in cfg.items()}
