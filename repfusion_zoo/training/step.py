"""The contract between a recipe's training step and the loop: `StepOutput`.

A step function ``step_fn(model, batch, progress) -> StepOutput`` runs one micro-batch forward
(``progress``: the fraction of training done, in [0, 1]); the `Trainer` does the backward, the
optimiser and schedule steps, and the logging, reading only the typed fields below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

__all__ = ["StepOutput", "StepFn"]


@dataclass
class StepOutput:
    """What one training step gives the loop.

    loss: the 0-d tensor the optimiser minimises (``accelerator.backward(loss)``).
    losses: its named 0-d parts, as the recipe wants them logged (``"total"`` included where it
        wants that line): per epoch, their means over micro-batches (each the mean over processes)
        go to the record as ``loss/<name>``; the progress bar and ``on_log`` show their means
        since the last log.
    scalars: other 0-d values, logged per epoch under their own names (``policy/entropy``);
        never optimised.
    histograms: ``name -> (values [B], bins)``: per-sample integers, gathered from every process
        and counted into ``bins`` bins per epoch (the sampled time steps ``t``).
    """

    loss: torch.Tensor
    losses: Mapping[str, torch.Tensor] = field(default_factory=dict)
    scalars: Mapping[str, torch.Tensor] = field(default_factory=dict)
    histograms: Mapping[str, tuple[torch.Tensor, int]] = field(default_factory=dict)


StepFn = Callable[[nn.Module, dict[str, Any], float], StepOutput]
