"""CPU threads: use the cores the process may run on, unless the user chose a thread count.

Why this exists: `accelerate launch` (1.x) always exports ``OMP_NUM_THREADS`` to the processes it
starts: the user's own value, ``--num_cpu_threads_per_process``, or else **1** (its default when
there is no GPU; `accelerate/commands/launch.py` `_validate_launch_command`, then
`utils/launch.py` `prepare_simple_launcher_cmd_env` / `prepare_multi_gpu_env`). torch reads it at
start-up, so a recipe launched on a CPU ran one thread whatever the machine had.

The launcher's default and a user's choice look the same inside the process; the launcher's
own start-up environment and command line tell them apart. ``OMP_NUM_THREADS`` counts as the
user's when the process was not started by a launcher, or when the launcher (our parent
process: `accelerate launch` runs torchrun's agent in-process) had it in its environment or was
given ``--num_cpu_threads_per_process``. Where the parent cannot be read (no ``/proc``), a
launcher's ``1`` is taken as its default.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .allocator import configure_cpu_allocator

__all__ = ["configure_cpu_threads", "user_thread_count", "usable_cores", "local_processes", "launched", "parent_start",
           "set_by_user"]

#: the variable of repfusion-zoo's own thread count (tests set 1: 2 shared cores)
THREADS_ENV = "REPFUSION_NUM_THREADS"
#: variables that only a launcher (accelerate launch, torchrun) sets in the processes it starts
LAUNCHER_MARKERS = ("ACCELERATE_DYNAMO_BACKEND", "TORCHELASTIC_RUN_ID")
#: the launcher flag that sets OMP_NUM_THREADS from the command line
LAUNCHER_FLAG = "--num_cpu_threads_per_process"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; `os.cpu_count()` where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_processes() -> int:
    """Processes of this run on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without a launcher)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))


def launched() -> bool:
    """Whether a launcher (accelerate launch, torchrun) started this process."""
    return any(os.environ.get(key) for key in LAUNCHER_MARKERS)


def parent_start() -> tuple[dict[str, str], list[str]] | None:
    """(environment, argv) the parent process started with, from ``/proc``; None where unreadable."""
    proc = Path("/proc") / str(os.getppid())
    try:
        environ = (proc / "environ").read_bytes().split(b"\0")
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    env = {}
    for entry in environ:
        key, _, value = entry.decode(errors="replace").partition("=")
        if key:
            env[key] = value
    return env, [arg.decode(errors="replace") for arg in argv if arg]


def set_by_user(variable: str, flags: tuple[str, ...]) -> bool | None:
    """Whether `variable` in this process is the user's (see the module doc): True outside a launcher,
    or where the launcher had it in its environment or was given one of `flags`; False where it is
    the launcher's own default; None where the launcher's start cannot be read (no ``/proc``)."""
    if not launched():
        return True
    parent = parent_start()
    if parent is None:
        return None
    env, argv = parent
    return variable in env or any(arg.split("=")[0] in flags for arg in argv)


def _omp_is_users(value: str) -> bool:
    """Whether ``OMP_NUM_THREADS=value`` in this process was set by the user (a launcher's ``1`` where unreadable)."""
    users = set_by_user("OMP_NUM_THREADS", (LAUNCHER_FLAG,))
    return value.strip() != "1" if users is None else users


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def user_thread_count(explicit: int = 0) -> int | None:
    """The thread count the user chose, else None.

    In order: `explicit` (a recipe key such as ``--cpu_threads``; 0 = not given),
    ``REPFUSION_NUM_THREADS``, an ``OMP_NUM_THREADS`` the user set (not a launcher's default).
    """
    if explicit and explicit > 0:
        return int(explicit)
    own = _positive_int(os.environ.get(THREADS_ENV))
    if own is not None:
        return own
    omp = _positive_int(os.environ.get("OMP_NUM_THREADS"))
    if omp is not None and _omp_is_users(os.environ["OMP_NUM_THREADS"]):
        return omp
    return None


def configure_cpu_threads(explicit: int = 0) -> int:
    """Set torch's intra-op threads for a recipe; every recipe calls this first. Returns the count.

    A user's count (`user_thread_count`) is always honoured. Otherwise, on a CPU run (no CUDA),
    ``usable_cores() // local_processes()`` (at least 1): the cores are split among this
    machine's processes of the run. With CUDA and no user count, torch's setting is left alone.
    On a CPU run it also sets up the allocator (`allocator.configure_cpu_allocator`: freed
    memory is reused, not faulted in again every step).
    """
    configure_cpu_allocator()
    chosen = user_thread_count(explicit)
    if chosen is None and torch.cuda.is_available():
        return torch.get_num_threads()
    if chosen is None:
        chosen = max(1, usable_cores() // local_processes())
    torch.set_num_threads(chosen)
    return chosen
