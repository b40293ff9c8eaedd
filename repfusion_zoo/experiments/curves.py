"""What the fine-tuning curves of an experiment show: whether scratch had converged, how fast each arm
gets there, and where an arm-seed's time went.

Every arm-seed's fine-tune scores the validation subset (labelled train images, never the test
split) every `eval_every` epochs: its `val_curve`, ``[[epoch, top-1], ...]``. From those:
- the convergence check: every scratch arm (``distill: false``) against the scratch arm whose
  schedule is twice as long, on the seeds both ran: the gain of the final validation top-1, beside
  the noise of such a gain on a validation subset of this size (`difference_noise`);
- convergence speed: the first epoch at which each arm-seed's validation top-1 reaches scratch's
  final one (mean over scratch's seeds), a benefit of its own, reported beside the final accuracy.
"""
from __future__ import annotations

import statistics
from typing import Any, Sequence

from .machine import machine_name

__all__ = ["epochs_to_reach", "convergence_lines", "difference_noise", "distils", "schedule_epochs", "scratch_by_length", "timing_lines"]

#: the largest gain of a schedule twice as long at which scratch counts as converged (top-1 points)
CONVERGED_WITHIN = 0.5


Curve = Sequence[Sequence[float]]


def points(curve: Sequence[Any] | None) -> list[tuple[int, float]]:
    """``[(epoch, top-1), ...]`` of a curve; a plain list of values (results written before the curve
    carried its epochs) is one value an epoch."""
    if not curve:
        return []
    if isinstance(curve[0], (int, float)):
        return [(epoch, float(v)) for epoch, v in enumerate(curve, start=1)]
    return [(int(e), float(v)) for e, v in curve]


def _final(curves: Sequence[Curve | None]) -> list[float]:
    return [points(curve)[-1][1] for curve in curves if curve]


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def epochs_to_reach(curve: Curve | None, target: float) -> int | None:
    """The first epoch (1-based) whose validation top-1 is >= `target`; None if none is."""
    for epoch, value in points(curve):
        if value >= target:
            return epoch
    return None


def schedule_epochs(arm: dict[str, Any]) -> int | None:
    """An arm's fine-tuning length: the last epoch of its first curve (None without curves)."""
    curve = next((c for c in arm.get("val_curve", []) if c), None)
    return points(curve)[-1][0] if curve else None


def distils(arm: dict[str, Any]) -> bool:
    """Whether a results JSON's arm distilled: it holds a distillation record, or a diverged one."""
    return bool(arm.get("distill") or arm.get("diverged"))


def scratch_by_length(summary: dict[str, Any]) -> dict[int, tuple[str, dict[str, Any]]]:
    """Scratch arms (no distillation) with curves, by fine-tuning length: name and arm."""
    arms = {name: arm for name, arm in summary["arms"].items() if not distils(arm) and _final(arm.get("val_curve", []))}
    return {schedule_epochs(arm): (name, arm) for name, arm in arms.items()}


def _final_by_seed(arm: dict[str, Any]) -> dict[int, float]:
    return {seed: points(curve)[-1][1] for seed, curve in zip(arm["seeds"], arm["val_curve"]) if curve}


def difference_noise(top1: float, images: int, seeds: int = 1) -> float:
    """Two standard errors (top-1 points) of the difference of two accuracies near ``top1`` (%), each
    measured on ``images`` images and averaged over ``seeds`` seeds, taken as independent (binomial):
    ``2 * sqrt(2 p (1 - p) / (images * seeds))``. A gain below it is not told apart from no gain."""
    p = min(max(top1 / 100.0, 0.0), 1.0)
    return 200.0 * (2.0 * p * (1.0 - p) / max(1, images * seeds)) ** 0.5


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
        lines.append(f"| {name} | {schedule_epochs(arm)} | {statistics.fmean(finals):.2f}{spread} | {cells} |")
    lines += ["", f"Scratch's final validation top-1: {target:.2f} (mean over its seeds)."]
    by_length = scratch_by_length(summary)
    for epochs, (name, arm) in sorted(by_length.items()):
        if 2 * epochs not in by_length:
            continue
        longer_name, longer = by_length[2 * epochs]
        short, long = _final_by_seed(arm), _final_by_seed(longer)
        seeds = sorted(set(short) & set(long))
        if not seeds:
            continue
        gain = statistics.fmean(long[s] - short[s] for s in seeds)
        verdict = "converged" if gain <= CONVERGED_WITHIN else "NOT converged"
        noise = ""
        if summary.get("val_images"):
            bound = difference_noise(statistics.fmean(long[s] for s in seeds), summary["val_images"], len(seeds))
            noise = f"; noise ±{bound:.1f} (two standard errors on {summary['val_images']} validation images x {len(seeds)} seed(s))"
        lines.append(f"Convergence check: {longer_name} ({2 * epochs} epochs) − {name} ({epochs} epochs) = {gain:+.2f} "
                     f"validation top-1, seeds {seeds} (converged when ≤ {CONVERGED_WITHIN}{noise}): {verdict}.")
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


def teacher_reads(distill: dict[str, Any]) -> int | None:
    """Teacher features a distillation read (images x t per image, every epoch): its last epoch's
    t histogram times its epochs (every epoch is the same number of full batches)."""
    hist = distill.get("last_epoch_t_histogram")
    return sum(hist) * len(distill.get("epochs", [])) if hist else None


def timing_lines(summary: dict[str, Any]) -> list[str]:
    """Mean seconds per arm-seed and phase, the teacher features its distillation read, and the
    machines its seeds ran on (`machine.machine_name`; "-" for results from before they were
    recorded) ([] when no result carries timing)."""
    columns = [name for name, _ in PHASES] + ["process start-up and saving", "arm-seed total", "teacher-feature reads",
                                              "machine"]
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
        cells.append(_mean([r for r in (teacher_reads(d) for d in arm.get("distill", [])) if r is not None]))
        machines = sorted({machine_name(t["machine"]) for t in timings if t.get("machine")})
        rows.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.0f}" for c in cells)
                    + f" | {'; '.join(machines) or '-'} |")
    if not rows:
        return []
    return ["| arm | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|", *rows]
