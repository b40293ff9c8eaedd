"""What the fine-tuning curves of an experiment show: whether scratch had converged, how fast each arm
gets there, and where an arm-seed's time went.

Every arm-seed's fine-tune scores the validation subset (labelled train images, never the test
split) every `eval_every` epochs: its `val_curve`. From those:
- the convergence check: scratch against every other scratch arm (``distill: false``) with a longer
  schedule (e.g. twice as long): the difference of their final validation top-1;
- convergence speed: the first epoch at which each arm-seed's validation top-1 reaches scratch's
  final one (mean over scratch's seeds), a benefit of its own, reported beside the final accuracy.
"""
from __future__ import annotations

import statistics
from typing import Any, Sequence

__all__ = ["epochs_to_reach", "convergence_lines", "timing_lines"]

#: the largest gain of a schedule twice as long at which scratch counts as converged (top-1 points)
CONVERGED_WITHIN = 0.5


def _final(curves: Sequence[Sequence[float] | None]) -> list[float]:
    return [curve[-1] for curve in curves if curve]


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def epochs_to_reach(curve: Sequence[float] | None, target: float) -> int | None:
    """The first epoch (1-based, one value an epoch) whose validation top-1 is >= `target`; None if none is."""
    for epoch, value in enumerate(curve or [], start=1):
        if value >= target:
            return epoch
    return None


def _scratch_arms(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: arm for name, arm in summary["arms"].items() if not arm.get("distill") and _final(arm.get("val_curve", []))}


def convergence_lines(summary: dict[str, Any]) -> list[str]:
    """The Markdown of the convergence check and of every arm's convergence speed ([] without curves)."""
    arms = summary["arms"]
    scratch = arms.get("scratch", {})
    target = _mean(_final(scratch.get("val_curve", [])))
    if target is None:
        return []
    lines = ["| arm | epochs | final val top-1 | epochs to reach scratch's final val top-1 (per seed) |", "|---|---|---|---|"]
    for name, arm in arms.items():
        curves = arm.get("val_curve", [])
        finals = _final(curves)
        if not finals:
            continue
        reached = [epochs_to_reach(curve, target) for curve in curves if curve]
        cells = ", ".join("never" if e is None else str(e) for e in reached)
        spread = f" ± {statistics.stdev(finals):.2f}" if len(finals) > 1 else ""
        lines.append(f"| {name} | {len(curves[0])} | {statistics.fmean(finals):.2f}{spread} | {cells} |")
    lines += ["", f"Scratch's final validation top-1: {target:.2f} (mean over its seeds)."]
    for name, arm in _scratch_arms(summary).items():
        longer = arm.get("val_curve", [[]])[0]
        if name == "scratch" or len(longer) <= len(scratch["val_curve"][0]):
            continue
        gain = _mean(_final(arm["val_curve"])) - target
        verdict = "converged" if gain <= CONVERGED_WITHIN else "NOT converged"
        lines.append(f"Convergence check: {name} ({len(longer)} epochs) − scratch ({len(scratch['val_curve'][0])} epochs) "
                     f"= {gain:+.2f} validation top-1 (converged when ≤ {CONVERGED_WITHIN}): {verdict}.")
    return lines


#: the phases of an arm-seed, as (column, how to read it from a result's `timing`)
PHASES = (
    ("distillation", lambda t: t.get("distill", {}).get("train")),
    ("time-step report", lambda t: t.get("distill", {}).get("timestep_report")),
    ("fine-tuning", lambda t: t.get("finetune", {}).get("train")),
    ("validation curve", lambda t: t.get("finetune", {}).get("validation")),
    ("test evaluation", lambda t: t.get("finetune", {}).get("test")),
    ("kNN", lambda t: t.get("runner", {}).get("knn")),
    ("final validation", lambda t: t.get("runner", {}).get("val")),
)


def _startup(timing: dict[str, Any]) -> float | None:
    """Recipe processes' wall time outside their timed phases: imports, data, model, saving, exit."""
    total = 0.0
    for recipe in ("distill", "finetune"):
        phases = timing.get(recipe)
        if phases and "process" in phases:
            total += phases["process"] - sum(v for k, v in phases.items() if k != "process")
    return total if any(timing.get(r, {}).get("process") for r in ("distill", "finetune")) else None


def timing_lines(summary: dict[str, Any]) -> list[str]:
    """Mean seconds per arm-seed and phase ([] when no result carries timing)."""
    columns = [name for name, _ in PHASES] + ["process start-up and saving", "arm-seed total"]
    rows = []
    for name, arm in summary["arms"].items():
        timings = [t for t in arm.get("timing", []) if t]
        if not timings:
            continue
        cells = []
        for _, read in PHASES:
            cells.append(_mean([v for v in (read(t) for t in timings) if v is not None]))
        cells.append(_mean([v for v in (_startup(t) for t in timings) if v is not None]))
        cells.append(_mean([s for s in arm.get("seconds", []) if s is not None]))
        rows.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.0f}" for c in cells) + " |")
    if not rows:
        return []
    return ["| arm | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|", *rows]
