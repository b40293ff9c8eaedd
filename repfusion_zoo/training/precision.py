"""The precision a run trains in: the user's choice, else bf16 autocast on a CPU that computes bf16 natively.

accelerate leaves precision to the launcher (`accelerate launch --mixed_precision`, its config
file, or ``ACCELERATE_MIXED_PRECISION``), whose default is "no" (fp32). On a CPU with AVX512-BF16
or AMX, oneDNN runs bf16 convolutions several times faster than fp32: the cifar10_cpu student's
step takes 0.42x eager fp32's and 0.60x fp32 channels_last's (`python benchmarks/train_step.py`),
the CIFAR-10 teacher's 0.59x, with the accuracy of fp32 at the converged 10-labels protocol
(docs/results/cifar10_cpu_bf16_lpc10.md). So where nobody chose, a run on such a CPU trains under
bf16 autocast (weights, gradients and the optimiser stay fp32); ``--mixed_precision no`` (the
recipe key, or the launcher's flag) keeps fp32. A CPU without native bf16 emulates it, far
slower, and keeps fp32; a GPU run keeps accelerate's default. A run that asks bf16 of such a CPU
(its key, or the launcher's flag) gets it, with a warning (`EMULATED_BF16`) that names the fix.

The launcher's default and a user's choice look the same inside the process (`accelerate launch`
always exports ``ACCELERATE_MIXED_PRECISION``); as for threads (`threads.py`), the launcher's own
start tells them apart: the user chose when the variable came from outside any launcher, or the
launcher had it in its environment, was given ``--mixed_precision`` or ``--config_file``, or read
an accelerate config file (`accelerate config`).
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import torch
from accelerate.commands.config.config_args import default_config_file

from .threads import set_by_user

__all__ = ["run_precision", "chosen_precision", "native_cpu_bf16", "emulated_bf16", "say_default", "PRECISION_ENV",
           "EMULATED_BF16"]

#: the variable through which `accelerate launch` hands its precision to the processes it starts
PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"
#: launcher flags by which the user sets the precision (directly, or in a config file)
LAUNCHER_FLAGS = ("--mixed_precision", "--config_file")
#: torch.cpu's checks for native bf16 (torch >= 2.3 has them; older releases count as without)
NATIVE_BF16_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
#: the warning of a run that asks bf16 of a CPU without it (benchmarks/train_step.py skips bf16 there)
EMULATED_BF16 = ("bf16 autocast on a CPU without native bf16 (AVX512-BF16 or AMX) is emulated, 10-40x slower "
                 "than fp32; --mixed_precision no (the recipe key, or the launcher's flag) trains in fp32")


def cpu_only() -> bool:
    """Whether this run computes on the CPU: no CUDA, MPS or XPU device (what accelerate would pick)."""
    xpu = getattr(torch, "xpu", None)
    xpu_available = xpu is not None and xpu.is_available()
    return not (torch.cuda.is_available() or torch.backends.mps.is_available() or xpu_available)


def native_cpu_bf16() -> bool:
    """Whether this run computes on a CPU that has native bf16 (AVX512-BF16 or AMX)."""
    checks = [getattr(torch.cpu, name, None) for name in NATIVE_BF16_CHECKS]
    return cpu_only() and any(check() for check in checks if check is not None)


def emulated_bf16(precision: str) -> bool:
    """Whether `precision` asks bf16 autocast of a CPU that only emulates bf16."""
    return precision == "bf16" and cpu_only() and not native_cpu_bf16()


def _accelerate_config_file() -> Path:
    """Where `accelerate config` writes the file `accelerate launch` reads by default."""
    return Path(default_config_file)


def chosen_precision() -> str | None:
    """The precision the user gave the launcher (its flag, a config file, their own variable), else None."""
    value = os.environ.get(PRECISION_ENV)
    if not value:
        return None
    users = set_by_user(PRECISION_ENV, LAUNCHER_FLAGS)
    if users is None:  # the launcher's start cannot be read: its "no" is taken as its default
        users = value != "no"
    return value if users or _accelerate_config_file().is_file() else None


def run_precision(mixed_precision: str = "") -> str:
    """The precision a run uses: its `mixed_precision` key, else the launcher's as the user chose
    it, else "bf16" on a CPU with native bf16 (said once, `say_default`), else "no". bf16 asked of a
    CPU that emulates it is kept, with the warning `EMULATED_BF16`."""
    chosen = mixed_precision or chosen_precision()
    if emulated_bf16(chosen or ""):
        warnings.warn(EMULATED_BF16, stacklevel=2)
    if chosen:
        return chosen
    if native_cpu_bf16():
        say_default("bf16")
        return "bf16"
    return "no"


@functools.cache  # once a process: a run settles its precision in every recipe it chains
def say_default(precision: str) -> None:
    """Say, on the main process, that the CPU's native bf16 (not a choice of the user's) set `precision`."""
    if os.environ.get("RANK", "0") == "0":
        print(f"[precision] {precision} autocast: this CPU computes bf16 natively (--mixed_precision no keeps fp32)")
