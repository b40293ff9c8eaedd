"""The one training loop behind every recipe (train_teacher, distill, finetune).

`Trainer(settings, project_name)` owns the accelerator (`make_accelerator`), the data loader
(epoch-seeded order and augmentation), the optimiser and LR schedule (prepared with accelerate, so
`accelerator.save_state` / `load_state` carry them), resume, logging and the step loop. A recipe
supplies a step function returning a `StepOutput` (see step.py) and, where it needs them, hooks:
``after_optimizer_step()`` (the teacher's EMA), ``on_log(step, means)`` (the teacher's loss
check) and ``on_epoch_end(epoch) -> scores`` (fine-tuning's evaluation).

Every step reseeds python, numpy and torch from (seed, global micro-batch, rank) (`seed_step`), so
a resumed run repeats an uninterrupted one bit for bit on a CPU.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..data.subsets import check_indices, read_indices
from ..atomic import replace_text
from ..errors import ConfigError, TrainingDivergedError
from .data import seeded_train_loader
from .records import DIVERGED_FILE, EpochTally, LogWindow, check_finite, flat_scalars
from .settings import LoopSettings, LrSchedule, make_accelerator, micro_batch_size, trackers
from .state import CheckpointManager, TrainingState, resolve_resume, seed_step
from .step import StepFn, StepOutput

__all__ = ["Trainer", "epoch_batches"]


class Trainer:
    """Accelerator + data + optimiser + LR schedule + resume + logging around a recipe's step.

    Args:
        settings: the loop's `LoopSettings` (``LoopSettings.of(cfg)`` for a recipe config).
        project_name: the progress bar's and the trackers' name.
        find_unused_parameters: DDP's, for a model whose step may leave parameters without a gradient.
        epoch_records: write a record per epoch (``log.jsonl``, trackers, a line beside the bar).
        final_checkpoint: save the state at the last step too, not only every ``checkpointing_steps``.
    """

    def __init__(self, settings: LoopSettings, project_name: str, *, find_unused_parameters: bool = False,
                 epoch_records: bool = True, final_checkpoint: bool = True) -> None:
        self.settings = settings
        self.output_dir = Path(settings.output_dir)
        self.accelerator = make_accelerator(settings, find_unused_parameters)
        self.project_name = project_name
        self.state = TrainingState()
        self.epoch_records = epoch_records
        self.final_checkpoint = final_checkpoint
        self._window = LogWindow()

    # ---- set-up -------------------------------------------------------------------------
    def print(self, *args: Any) -> None:
        self.accelerator.print(*args, flush=True)

    def train_loader(self, dataset: Dataset) -> DataLoader:
        """The training loader: epoch-seeded order and augmentation, drop_last, sharded by accelerate;
        only the items of ``train_subset`` when the settings name one."""
        settings = self.settings
        if settings.train_subset:
            indices = read_indices(settings.train_subset)
            check_indices(indices, dataset, f"train_subset {settings.train_subset}")
            dataset = Subset(dataset, indices)
        micro = micro_batch_size(settings, self.accelerator.num_processes)
        loader, self.sampler, self.seeded = seeded_train_loader(dataset, micro, settings.seed, settings.dataloader_num_workers)
        if len(loader) < self.accelerator.num_processes:
            raise ConfigError(f"the training set ({len(dataset)} items) is smaller than one global batch "
                              f"({settings.train_batch_size}); lower --train_batch_size")
        return loader

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, lr_schedule: LrSchedule,
                tracker_config: Mapping[str, Any] | None = None) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        """Wrap with accelerate, build the LR schedule, restore the state when resuming, start the trackers."""
        settings, acc = self.settings, self.accelerator
        if settings.channels_last:  # in place: the optimiser's parameters stay the same objects
            model = model.to(memory_format=torch.channels_last)
        self.model, self.optimizer, self.loader = acc.prepare(model, optimizer, loader)
        self.steps_per_epoch = max(1, math.ceil(len(self.loader) / settings.gradient_accumulation_steps))
        if settings.num_train_epochs is None:
            self.total_steps = settings.max_train_steps
        else:
            total = settings.num_train_epochs * self.steps_per_epoch
            self.total_steps = min(total, settings.max_train_steps) if settings.max_train_steps > 0 else total
        raw_optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        self.lr_schedule = acc.prepare(lr_schedule(raw_optimizer, self.steps_per_epoch, self.total_steps))
        self.checkpoints = CheckpointManager(acc, self.output_dir, settings.checkpoints_total_limit)
        resume_from = resolve_resume(settings.resume_from_checkpoint, self.output_dir)
        if resume_from is not None:
            self.state = self.checkpoints.load(resume_from)
            self.print(f"resuming from {resume_from} at step {self.state.step} (epoch {self.state.epoch})")
        elif settings.resume_from_checkpoint:
            self.print(f"no checkpoint under {self.output_dir.resolve()}, starting fresh "
                       f"(--resume_from_checkpoint {settings.resume_from_checkpoint})")
        if trackers(settings.report_to):
            acc.init_trackers(self.project_name, config=flat_scalars(tracker_config or {}))
        return self.model, self.optimizer, self.loader

    # ---- the loop -----------------------------------------------------------------------
    def fit(self, step_fn: StepFn, *, after_optimizer_step: Callable[[], None] | None = None,
            on_log: Callable[[int, dict[str, float]], None] | None = None,
            on_epoch_end: Callable[[int], Mapping[str, float]] | None = None) -> TrainingState:
        """Run optimiser steps until `total_steps`; save every ``checkpointing_steps`` steps (and at the end).
        A run that diverges (`TrainingDivergedError`) leaves `DIVERGED_FILE` beside its checkpoints."""
        try:
            return self._fit(step_fn, after_optimizer_step, on_log, on_epoch_end)
        except TrainingDivergedError as error:
            if self.accelerator.is_main_process:
                replace_text(self.output_dir / DIVERGED_FILE, json.dumps({"step": self.state.step, "error": str(error)}))
            raise

    def _fit(self, step_fn: StepFn, after_optimizer_step: Callable[[], None] | None,
             on_log: Callable[[int, dict[str, float]], None] | None,
             on_epoch_end: Callable[[int], Mapping[str, float]] | None) -> TrainingState:
        settings, acc, state = self.settings, self.accelerator, self.state
        tally = EpochTally(acc, state, self.output_dir / "log.jsonl") if self.epoch_records else None
        bar = tqdm(total=self.total_steps, initial=state.step, disable=not acc.is_local_main_process,
                   desc=self.project_name, dynamic_ncols=True)
        self.model.train()
        while state.step < self.total_steps:
            batches = epoch_batches(acc, self.loader, state.epoch, state.batch_in_epoch)
            self.sampler.set_epoch(state.epoch)
            self.seeded.set_epoch(state.epoch)
            stopped = False
            for batch in batches:
                seed_step(settings.seed, state.epoch * len(self.loader) + state.batch_in_epoch, acc.process_index)
                out = self._micro_step(step_fn, batch)
                state.batch_in_epoch += 1
                self._window.add(out)
                if tally is not None:
                    tally.add(out)
                if not acc.sync_gradients:
                    continue
                self.lr_schedule.step()
                if after_optimizer_step is not None:
                    after_optimizer_step()
                state.step += 1
                bar.update(1)
                if state.step % max(1, settings.log_every) == 0 or state.step == self.total_steps:
                    means = self._window.means(acc)
                    check_finite(means, state.step)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()})
                    if on_log is not None:
                        on_log(state.step, means)
                if self._checkpoint_due():
                    if tally is not None:
                        tally.flush()  # the epoch's running sums go into the saved history
                    self.checkpoints.save(state)
                if state.step >= self.total_steps:
                    stopped = True
                    break
            epoch_done = not stopped or state.batch_in_epoch >= len(self.loader)
            if tally is not None:
                extra = on_epoch_end(state.epoch) if on_epoch_end is not None else {}
                tally.close_epoch(self.optimizer.param_groups[0]["lr"], epoch_done, extra)
            self.model.train()
            if epoch_done:
                state.epoch += 1
                state.batch_in_epoch = 0
        bar.close()
        if self.final_checkpoint:
            self.checkpoints.save(state)
        return state

    def _micro_step(self, step_fn: StepFn, batch: dict[str, Any]) -> StepOutput:
        """Forward (under autocast), backward, and on the last micro-batch of an optimiser step,
        clipping and the optimiser step."""
        acc, settings = self.accelerator, self.settings
        with acc.accumulate(self.model):
            with acc.autocast():
                out = step_fn(self.model, batch, self.state.step / max(1, self.total_steps))
            acc.backward(out.loss)
            if acc.sync_gradients and settings.max_grad_norm > 0:
                acc.clip_grad_norm_(self.model.parameters(), settings.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return out

    def _checkpoint_due(self) -> bool:
        every, step = self.settings.checkpointing_steps, self.state.step
        return bool(every) and step % every == 0 and (step < self.total_steps or not self.final_checkpoint)

    def finish(self) -> None:
        """Close the trackers; the process group stays up (a recipe may run another loop after this one)."""
        for tracker in self.accelerator.trackers:
            tracker.finish()

    def epochs_history(self) -> list[dict[str, Any]]:
        return list(self.state.history.get("epochs", []))


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
