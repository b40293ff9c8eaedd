"""What every recipe sets before torch loads: OpenMP's wait (libgomp reads it once, when torch is imported).

libgomp, the OpenMP of PyTorch's Linux builds, lets a thread that waits for its partners spin for
300,000 iterations before it sleeps (1,000 where a process has more threads than cores). On cores
that other jobs also use, a spinning thread holds a core its descheduled partner needs: a 2-thread
training step here took 12x its quiet time beside two other 2-thread torch jobs, and 4x with 1,000
spins, at no cost on a quiet machine (`python benchmarks/shared_cores.py`). A recipe therefore sets
``GOMP_SPINCOUNT=1000`` unless the user chose a wait (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``).
Recipes import this module first; its variables reach every process a recipe starts.
"""
from __future__ import annotations

import os
from typing import Mapping

#: the variables by which a user chooses OpenMP's wait; any of them set = the user's choice stands
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: spins before a waiting OpenMP thread sleeps (libgomp's own count for an oversubscribed process)
SPIN_COUNT = "1000"


def recipe_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables a recipe adds to `environ` (none where the user chose a wait)."""
    if any(name in environ for name in WAIT_VARIABLES):
        return {}
    return {"GOMP_SPINCOUNT": SPIN_COUNT}


os.environ.update(recipe_environment(os.environ))
