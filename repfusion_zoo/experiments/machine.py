"""The machine an arm-seed ran on, kept in its timing: a grid runs across sessions and machines, and
its seconds compare only within one machine.

The CPU's model name, its cores, whether it computes bf16 natively (training/precision.py: where it
does not, a bf16 arm runs 10-40x slower) and the accelerator, if any. Recorded by the process that
finished the arm-seed (a fine-tune resumed from another machine's checkpoint names the last one).
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..training.precision import native_cpu_bf16

__all__ = ["this_machine", "machine_name"]

CPUINFO = Path("/proc/cpuinfo")


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` says."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def accelerator_name() -> str | None:
    """The CUDA or XPU device's name, "mps" on Apple silicon, else None: the devices
    `precision.cpu_only` counts, so a machine without one is the CPU its bf16 describes."""
    xpu = getattr(torch, "xpu", None)
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    if xpu is not None and xpu.is_available():
        return xpu.get_device_name(0)
    return "mps" if torch.backends.mps.is_available() else None


def this_machine() -> dict[str, Any]:
    """``{"cpu": model name, "cores": os.cpu_count(), "native_bf16": bool, "accelerator": name or None}``."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "native_bf16": native_cpu_bf16(),
            "accelerator": accelerator_name()}


def machine_name(machine: dict[str, Any]) -> str:
    """One line for a `this_machine` record: its accelerator, else its CPU, cores and bf16."""
    if machine.get("accelerator"):
        return str(machine["accelerator"])
    bf16 = "native bf16" if machine.get("native_bf16") else "bf16 emulated"
    return f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {bf16}"
