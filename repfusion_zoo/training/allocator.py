"""The CPU memory allocator of a training process: keep freed memory for reuse.

Why this exists: torch's CPU tensors come from glibc's ``malloc``. glibc serves a block above
its mmap threshold (dynamic, at most 32 MiB) with a fresh ``mmap`` and unmaps it on ``free``,
and it trims the heap's free top back to the kernel. A training step allocates and frees the
same large activations every step (the ddpm-cifar10-32 teacher at batch 64: 64 x 128 x 32 x 32
fp32 = 33.5 MB each, over the 32 MiB cap), so each step the kernel faults in and zeroes those
pages again. Measured with ``benchmarks/distill_step.py`` (1 thread, CPU time): about 300k minor
page faults and 0.5-0.9 s of system time per online distillation step, which was most of the
step's "overhead" beyond student + teacher; without mmap and trimming, a few hundred faults.

`configure_cpu_allocator()` turns both off (``mallopt(M_MMAP_MAX, 0)``,
``mallopt(M_TRIM_THRESHOLD, 2 GiB)``): the heap grows to the step's peak once and is reused,
as CUDA's caching allocator does on a GPU. The cost: the process keeps its peak memory.
Applied on Linux/glibc runs without CUDA only; ``REPFUSION_CPU_ALLOCATOR=system`` leaves malloc
as it is.
"""
from __future__ import annotations

import ctypes
import os
import platform

import torch

__all__ = ["configure_cpu_allocator", "ALLOCATOR_ENV"]

#: ``system`` leaves glibc's malloc settings alone
ALLOCATOR_ENV = "REPFUSION_CPU_ALLOCATOR"
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: mallopt takes an int: trim only a free heap top above 2 GiB
_TRIM_ABOVE = 2**31 - 1
_applied = False


def configure_cpu_allocator() -> bool:
    """Keep freed CPU memory in the heap for reuse (see the module doc); True when applied.

    Does nothing (False) with CUDA, off glibc, or when ``REPFUSION_CPU_ALLOCATOR=system``.
    Idempotent; call it early, before the big allocations (every recipe does, with its threads).
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(ALLOCATOR_ENV, "").strip().lower() == "system" or torch.cuda.is_available():
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE))
    return _applied
