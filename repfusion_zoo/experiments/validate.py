"""The `validate` arm's time step: chosen BEFORE the full distillation by short distillations from the
feature cache, scored on the validation subset (labelled train images, never the test split).

Successive halving over the action set: every t gets a short run of ``first_steps`` optimiser
steps; the better half (by the frozen student's kNN top-1 on the validation subset, the labelled
subset as the bank) goes on with twice the steps, until one t is left. Its cost, in optimiser
steps, is reported against one full distillation's.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["successive_halving", "VALIDATE"]

#: the `t` of an arm whose time step short validated distillations choose
VALIDATE = "validate"


def successive_halving(candidates: Sequence[int], first_steps: int, distil: Callable[[int, int], Path],
                       score: Callable[[Path], float]) -> tuple[int, dict[str, Any]]:
    """(the chosen t, the record of every round and the steps spent).

    ``distil(t, steps) -> backbone folder`` runs (or finds) a short distillation at ``t``;
    ``score(backbone) -> float`` is its validation score (higher is better; ties go to the smaller t).
    """
    alive, steps, rounds, spent = sorted(int(t) for t in candidates), int(first_steps), [], 0
    while True:
        scores = {t: float(score(distil(t, steps))) for t in alive}
        spent += steps * len(alive)
        rounds.append({"steps": steps, "scores": {str(t): round(v, 2) for t, v in scores.items()}})
        ranked = sorted(alive, key=lambda t: (-scores[t], t))
        if len(ranked) <= 2:
            return ranked[0], {"rounds": rounds, "steps": spent}
        alive, steps = sorted(ranked[: math.ceil(len(ranked) / 2)]), steps * 2
