"""The processes of a run, below everything that uses them (the cache builder, the training loop).

- `multi_process_cpu()`: whether a launcher started several processes on a machine without CUDA
  (accelerate then needs ``cpu=True`` to join them in one gloo group);
- `process_state()`: accelerate's `PartialState` for such a launch (the cache builder's default);
- `on_main(state, fn)`: run ``fn`` on the main process, give every process its result or error.
"""
from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from .errors import RepFusionError

__all__ = ["multi_process_cpu", "process_state", "on_main"]

T = TypeVar("T")


def multi_process_cpu() -> bool:
    """True when launched as several processes (torchrun / `accelerate launch --multi_gpu`) without CUDA.

    Accelerate picks the gloo MULTI_CPU backend only when asked for the CPU; without this a
    CPU-only multi-process launch would run N independent single-process copies.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return world > 1 and not torch.cuda.is_available()


def process_state() -> PartialState:
    """The processes of this launch (one gloo group on a CPU-only multi-process launch)."""
    return PartialState(cpu=multi_process_cpu())


def on_main(state: Any, fn: Callable[[], T]) -> T:
    """Run `fn` on the main process and give every process its result (or raise its error everywhere)."""
    box: list[Any] = [None, None]
    if state.is_main_process:
        try:
            box[0] = fn()
        except RepFusionError as error:
            box[1] = error
    if state.num_processes > 1:
        broadcast_object_list(box, from_process=0)
    if box[1] is not None:
        raise box[1]
    return box[0]
