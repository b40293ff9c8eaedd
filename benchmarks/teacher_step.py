#!/usr/bin/env python
"""One training step of the CIFAR-10 teacher (recipes/train_teacher.py), as the recipe runs it, beside
the settings that might make it cheaper.

The UNet is the shared teacher's architecture (`recipes/configs/teacher_cifar10_long.yaml`: 4.1 M
parameters, 32 px, block_out_channels 32-64-128-128), random init, batch 64, fp32. One step =
`diffusion_loss` (noise, a random t per image, epsilon MSE) + backward + gradient clipping at 1.0 +
AdamW + the EMA update, all timed. Settings, each from the same weights and the same batches:

- ``recipe``: as train_teacher runs it (NCHW, AdamW's default implementation, diffusers' EMAModel
  updating one parameter at a time);
- ``ema_foreach``: the EMA update with ``torch._foreach`` ops (diffusers' ``EMAModel(foreach=True)``);
- ``fused_adamw``: + ``AdamW(fused=True)``;
- ``channels_last``: + the UNet's weights and input in channels_last;
- ``bf16``: ``fused_adamw`` under bf16 autocast (what the recipes do by
  default on a CPU with native bf16, training/precision.py; weights, AdamW and the EMA stay fp32).
  Skipped on a CPU without native bf16;
- ``compile`` (``--compile``): + ``torch.compile`` of the UNet (inductor, CPU), compile time counted.

Printed: each setting's median step (interleaved after warm-up) and last ``ratio: <best step /
recipe step>``. ``python benchmarks/teacher_step.py`` (~2-3 min on the 2-core CPU).

Measured 2026-12-06 on this 2-core CPU (a Xeon with AVX512-BF16 and AMX), quiet: recipe 581 ms,
ema_foreach 585, fused_adamw 580, channels_last 604 (slower), bf16 340, so ``ratio: 0.585``; the
offline default's digits teacher (``--config recipes/configs/teacher_digits.yaml``): recipe 114 ms,
bf16 84 (``ratio: 0.739``). Measured 2026-12-04 (fp32 settings only; the recipe step 970 ms, the
machine of that day slower): no fp32 setting pays. torch.profiler over 3 recipe steps puts 79 % of
the time in the convolutions (oneDNN; backward 54 %, forward 25 %), 7.5 % in dropout's
``bernoulli_`` (dropout 0.1 in every resnet), 2.4 % in GroupNorm, 1.5 % in AdamW: in fp32 the step
is the convolutions' arithmetic, which bf16 (AMX) shortens and no flag does.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from diffusers.training_utils import EMAModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repfusion_zoo.pipelines import train_teacher as tt  # noqa: E402
from repfusion_zoo.training import configure_cpu_threads  # noqa: E402
from repfusion_zoo.training.precision import native_cpu_bf16  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "teacher_cifar10_long.yaml"

#: name -> (ema foreach, fused AdamW, channels_last, compile, bf16 autocast)
SETTINGS = {
    "recipe": (False, False, False, False, False),
    "ema_foreach": (True, False, False, False, False),
    "fused_adamw": (True, True, False, False, False),
    "channels_last": (True, True, True, False, False),
    "bf16": (True, True, False, False, True),
    "compile": (True, True, True, True, False),
}


def make_step(unet: torch.nn.Module, cfg: tt.TeacherConfig, ema_foreach: bool, fused: bool, channels_last: bool,
              compiled: bool, bf16: bool) -> Callable[[torch.Tensor], float]:
    """One teacher step of a copy of `unet` with the given settings; returns the loss."""
    model = copy.deepcopy(unet)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay,
                                  fused=fused or None)
    ema = EMAModel(model.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, power=cfg.ema_power, foreach=ema_foreach)
    scheduler = tt.build_noise_scheduler(cfg)

    def step(images: torch.Tensor) -> float:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = tt.diffusion_loss(forward, scheduler, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        ema.step(model.parameters())
        return float(loss.detach())

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting, interleaved")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (~1-2 min more to compile)")
    parser.add_argument("--config", default=str(CONFIG), help="the teacher's train_teacher config (e.g. teacher_digits.yaml)")
    args = parser.parse_args()
    threads = configure_cpu_threads()
    cfg = tt.parse_config(["--config", args.config, "--init_from", ""])
    torch.manual_seed(0)
    unet = tt.build_unet(cfg)
    print(f"torch {torch.__version__}, {threads} threads, teacher UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M "
          f"parameters, batch {cfg.train_batch_size}, {cfg.image_size} px, fp32")
    names = [n for n in SETTINGS if (args.compile or n != "compile") and (native_cpu_bf16() or n != "bf16")]
    images = torch.rand(cfg.train_batch_size, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    steps, warm = {}, {}
    for name in names:
        steps[name] = make_step(unet, cfg, *SETTINGS[name])
        started = time.perf_counter()
        for _ in range(2):
            torch.manual_seed(1)
            steps[name](images)
        warm[name] = time.perf_counter() - started
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(args.steps):
        for name in names:
            torch.manual_seed(100 + i)  # the same noise and t for every setting
            started = time.perf_counter()
            steps[name](images)
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(t) for name, t in times.items()}
    for name in names:
        print(f"{name:>14}: {median[name] * 1000:7.1f} ms a step (first 2 steps {warm[name]:.1f} s)  "
              f"x{median[name] / median['recipe']:.3f} of the recipe's")
    best = min(names, key=median.get)
    print(f"best: {best}")
    print(f"ratio: {median[best] / median['recipe']:.3f}")


if __name__ == "__main__":
    main()
