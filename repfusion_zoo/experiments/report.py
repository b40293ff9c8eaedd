"""The results files of an experiment: `<name>.json` (every figure, per seed), `<name>.md` (the arms
table with mean +- std and the difference to scratch; what the RL policy learned beside decoder
g's reward per t; the probe) and `<name>.png` (the paper's Figure 8 analog; where the arms ran several
fine-tuning lengths, test top-1 against those lengths beside it)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from ..atomic import replace_text
from ..visualize import pyplot
from .config import ExperimentConfig
from .curves import convergence_lines, distils, schedule_epochs, scratch_by_length, timing_lines
from .result import ALWAYS_LISTED, PER_SEED, ArmSeedResult

__all__ = ["write_results", "summarise", "results_markdown", "results_stem"]


def results_stem(cfg: ExperimentConfig, lpc: int) -> str:
    """The results files' name for one label budget: `name`, or `name_lpc<N>` where the grid has several."""
    return cfg.name if len(cfg.labels_per_class) == 1 else f"{cfg.name}_lpc{lpc}"


def summarise(cfg: ExperimentConfig, lpc: int, results: Sequence[ArmSeedResult], *, command: str,
              cache: Path | None = None, seconds: float | None = None, val_images: int | None = None,
              planned: int | None = None) -> dict[str, Any]:
    """The results JSON: teacher, student, budget, command, the grid's wall `seconds` (summed over the
    runs that wrote it), how many of the `planned` arm-seeds have finished, and per arm the seeds and
    their figures, one list entry per seed (`PER_SEED`; each distillation record names its own seed:
    a diverged seed has none). `record.recorded_results` reads the arm-seeds back."""
    arms: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r.arm for r in results):
        ran = [r for r in results if r.arm == name]
        arm: dict[str, Any] = {"seeds": [r.seed for r in ran]}
        for field, key in PER_SEED.items():
            values = [getattr(r, field) for r in ran]
            if field in ALWAYS_LISTED or any(v is not None for v in values):
                arm[key] = values
        if any(r.distill for r in ran):
            arm["distill"] = [{"seed": r.seed, **r.distill} for r in ran if r.distill]
        if any(r.diverged for r in ran):
            arm["diverged"] = [{"seed": r.seed, "error": r.diverged} for r in ran if r.diverged]
        arms[name] = arm
    return {"name": cfg.name, "teacher": cfg.teacher, "teacher_layer": cfg.teacher_layer, "student": cfg.student,
            "student_kwargs": cfg.student_kwargs, "dataset": cfg.dataset, "labels_per_class": lpc,
            "distill_images_per_class": cfg.distill_images_per_class, "timesteps": cfg.timesteps,
            "command": command, "cache": str(cache) if cache else None, "val_images": val_images,
            "seconds": None if seconds is None else round(seconds, 1),
            "arm_seeds": {"finished": len(results), "planned": planned if planned is not None else len(results)},
            "arms": arms}


def _mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(values: Sequence[float | None]) -> str:
    stats = _mean_std(values)
    if stats is None:
        return "-"
    mean, std = stats
    return f"{mean:.2f} ± {std:.2f} (n={len([v for v in values if v is not None])})"


def compared_scratch(summary: dict[str, Any], name: str) -> str | None:
    """The scratch arm that arm `name` is compared with: for a distilled arm, the scratch arm fine-tuned
    for as many epochs where the grid has one (a distilled arm at 1,600 epochs against scratch at
    1,600, not at 800); else `scratch` (None where the grid has none, or for `scratch` itself)."""
    arm = summary["arms"][name]
    same = scratch_by_length(summary).get(schedule_epochs(arm)) if distils(arm) else None
    if same:
        return same[0]
    return "scratch" if "scratch" in summary["arms"] and name != "scratch" else None


def _delta(summary: dict[str, Any], name: str) -> str:
    """The arm's mean test top-1 minus its compared scratch arm's (that arm named unless `scratch`)."""
    other = compared_scratch(summary, name)
    stats = _mean_std(summary["arms"][name]["top1"])
    base = _mean_std(summary["arms"][other]["top1"]) if other else None
    if stats is None or base is None:
        return "-"
    return f"{stats[0] - base[0]:+.2f}" + ("" if other == "scratch" else f" (vs {other})")


def _arms_table(summary: dict[str, Any]) -> list[str]:
    arms = summary["arms"]
    lines = ["| arm | t | seeds | fine-tuned top-1 | Δ vs scratch | frozen kNN top-1 | val top-1 |",
             "|---|---|---|---|---|---|---|"]
    for name, arm in arms.items():
        delta = _delta(summary, name)
        ts = arm.get("t", [])  # one per seed; a fixed t is the same on every seed and shown once
        t = str(ts[0]) if len(set(ts)) == 1 else ", ".join(str(v) for v in ts)
        t = t or ("policy" if name == "rl" else "-")
        lines.append(f"| {name} | {t} | {arm['seeds']} | {_cell(arm['top1'])} | {delta} | {_cell(arm['knn'])} | "
                     f"{_cell(arm['val_top1'])} |")
    return lines


def _diverged_lines(summary: dict[str, Any]) -> list[str]:
    """One line per arm-seed whose distillation diverged (no fine-tune, no figures: "-" in the table)."""
    return [f"- {name}, seed {entry['seed']}: {entry['error']}"
            for name, arm in summary["arms"].items() for entry in arm.get("diverged", [])]


def _bar(p: float, width: int = 30) -> str:
    return "█" * round(p * width)


def _policy_section(summary: dict[str, Any]) -> list[str]:
    """Each learning arm's distribution over t beside decoder g's mean reward per t: one summary row
    per arm-seed, then each seed's table."""
    reports = [(name, distill["seed"], distill) for name, arm in summary["arms"].items()
               for distill in arm.get("distill", []) if distill.get("timestep_report")]
    if not reports:
        return []
    lines = ["| arm | seed | mode t | π(mode) | mean per-image entropy (nats) | t of g's best reward | "
             "policy entropy per epoch (nats) |", "|---|---|---|---|---|---|---|"]
    for name, seed, distill in reports:
        report = distill["timestep_report"]
        probs = dict(zip(report["timesteps"], report["probs"]))
        best = max(zip(report["reward"], report["reward_timesteps"]))[1]
        entropy = ", ".join(f"{e['policy/entropy']:.3f}" for e in distill.get("epochs", []) if "policy/entropy" in e)
        lines.append(f"| {name} | {seed} | {report['mode']} | {probs.get(report['mode'], float('nan')):.3f} | "
                     f"{report['mean_entropy']:.3f} | {best} | {entropy or '-'} |")
    lines.append("")
    for name, seed, distill in reports:
        lines += _policy_lines(name, seed, distill)
    return lines


def _policy_lines(name: str, seed: int, distill: dict[str, Any]) -> list[str]:
    """One seed's table: pi(t) (mean over the labelled images) beside decoder g's mean reward at t,
    and the t sampled in the last epoch."""
    report = distill["timestep_report"]
    rewards = dict(zip(report["reward_timesteps"], report["reward"]))
    lines = [f"### {name}, seed {seed}", "",
             f"mode t = {report['mode']}, mean t = {report['mean_t']:.1f}; entropy of the mean policy "
             f"{report['entropy_of_mean']:.3f} and mean per-image entropy {report['mean_entropy']:.3f} nats "
             f"against log|T| = {report['log_num_actions']:.3f} (uniform); {report['num_images']} labelled train images.", "",
             "| t | π(t) (mean over images) | | decoder g's mean reward (−CE) |", "|---|---|---|---|"]
    for t, p in zip(report["timesteps"], report["probs"]):
        reward = rewards.get(t)
        lines.append(f"| {t} | {p:.3f} | {_bar(p)} | {'-' if reward is None else f'{reward:.4f}'} |")
    hist = distill.get("last_epoch_t_histogram")
    if hist:
        sampled = {t: hist[t] for t in report["timesteps"] if t < len(hist)}
        total = max(1, sum(sampled.values()))
        lines += ["", "t sampled in the last epoch: " + ", ".join(f"{t}: {100 * n / total:.1f} %" for t, n in sampled.items())]
    return lines + [""]


def _probe_section(summary: dict[str, Any]) -> list[str]:
    probe = summary["arms"].get("probe", {})
    lines = []
    for seed, scores, t in zip(probe.get("seeds", []), probe.get("probe_accuracy", []), probe.get("t", [])):
        lines += [f"Seed {seed}: linear probe of the cached, pooled teacher features of the labelled subset "
                  f"(held-out part of it): " + ", ".join(f"t={k}: {v:.1f} %" for k, v in scores.items()) + f" → t = {t}.", ""]
    return lines


def _loss_section(summary: dict[str, Any]) -> list[str]:
    lines = ["| arm | seed | distillation loss per epoch |", "|---|---|---|"]
    for name, arm in summary["arms"].items():
        for distill in arm.get("distill", []):
            curve = ", ".join(f"{e.get('loss/distill', float('nan')):.4f}" for e in distill["epochs"])
            lines.append(f"| {name} | {distill['seed']} | {curve} |")
    return lines if len(lines) > 2 else []


def verdict(summary: dict[str, Any]) -> list[str]:
    """The issue's expectations checked against the means: rl >= scratch + 2, rl >= best fixed t > random."""
    means = {name: _mean_std(arm["top1"]) for name, arm in summary["arms"].items()}
    means = {name: stats[0] for name, stats in means.items() if stats is not None}
    lines = []
    if "rl" in means and "scratch" in means:
        gap = means["rl"] - means["scratch"]
        lines.append(f"- rl − scratch = {gap:+.2f} top-1 (expected ≥ +2.00): {'met' if gap >= 2.0 else 'NOT met'}.")
    fixed = {name: v for name, v in means.items() if name.startswith("fixed")}
    if fixed:
        best = max(fixed, key=fixed.get)
        if "rl" in means:
            lines.append(f"- rl − best fixed t ({best}) = {means['rl'] - fixed[best]:+.2f} (expected ≥ 0): "
                         f"{'met' if means['rl'] >= fixed[best] else 'NOT met'}.")
        if "random" in means:
            lines.append(f"- best fixed t − random = {fixed[best] - means['random']:+.2f} (expected > 0): "
                         f"{'met' if fixed[best] > means['random'] else 'NOT met'}.")
    if "probe" in means and "rl" in means:
        lines.append(f"- probe − rl = {means['probe'] - means['rl']:+.2f}: "
                     + ("the probe's t matches or beats the policy here; the policy can be skipped."
                        if means["probe"] >= means["rl"] else "the policy beats the probe's fixed t here."))
    return lines


def results_markdown(summary: dict[str, Any]) -> str:
    """The Markdown page of one results JSON."""
    lines = [f"# {summary['name']}: RepFusion vs scratch, {summary['labels_per_class']} labels per class", "",
             f"Teacher `{summary['teacher']}` (layer `{summary['teacher_layer']}`), student `{summary['student']}` "
             f"{summary['student_kwargs'] or ''}, data `{summary['dataset']}` "
             f"({summary['distill_images_per_class'] or 'all'} distilled images per class), cached t ∈ {{{summary['timesteps']}}}.", "",
             f"Command: `{summary['command']}`", "",
             "Fine-tuned top-1 is measured once on the full test split; frozen kNN (k = 20, cosine) uses the labelled "
             "subset as the bank; val top-1 is a held-out labelled part of train (for choices only). Mean ± std over seeds. "
             "Δ vs scratch: a distilled arm against the scratch arm fine-tuned as many epochs where the grid has one "
             "(named where that is not `scratch`).", "",
             *_arms_table(summary), ""]
    done = summary.get("arm_seeds", {})
    if done and done["finished"] < done["planned"]:
        lines[-1:-1] = ["", f"**Partial:** {done['finished']} of the grid's {done['planned']} arm-seeds have finished; "
                            "the same command runs the rest (it restores these from this file's JSON)."]
    diverged = _diverged_lines(summary)
    if diverged:
        lines += ["Distillations that diverged (no fine-tune, so no figures):", "", *diverged, ""]
    convergence = convergence_lines(summary)
    if convergence:
        lines += ["## Convergence: validation top-1 over the fine-tuning epochs", "", *convergence, ""]
    checks = verdict(summary)
    if checks:
        lines += ["## Against the expectations", "", *checks, ""]
    policy = _policy_section(summary)
    if policy:
        lines += ["## What each policy learned, and why", "", *policy]
    probe = _probe_section(summary)
    if probe:
        lines += ["## The probe arm's choice", "", *probe]
    losses = _loss_section(summary)
    if losses:
        lines += ["## Distillation loss curves", "", *losses, ""]
    timing = timing_lines(summary)
    if timing:
        lines += ["## Where an arm-seed's time went (seconds, mean over seeds)", "", *timing, ""]
    return "\n".join(lines)


def _fixed_points(summary: dict[str, Any]) -> list[tuple[int, tuple[float, float]]]:
    """``(t, (mean, std) test top-1)`` of every fixed-t arm fine-tuned as many epochs as `scratch` (an
    arm of another length is in the epochs panel, not on this curve), by t."""
    arms = summary["arms"]
    length = schedule_epochs(arms.get("scratch", {}))
    return sorted((arm["t"][0], stats) for name, arm in arms.items()
                  if name.startswith("fixed") and arm.get("t") and schedule_epochs(arm) == length
                  and (stats := _mean_std(arm["top1"])))


def _t_panel(ax: Any, summary: dict[str, Any]) -> None:
    """Figure 8: test top-1 against a fixed t, RL / random / probe / scratch as bands (mean ± std)."""
    arms = summary["arms"]
    fixed = _fixed_points(summary)
    ts = [t for t, _ in fixed]
    if fixed:
        ax.errorbar(ts, [s[0] for _, s in fixed], yerr=[s[1] for _, s in fixed], marker="o", color="k", label="fixed t")
    colours = {"rl": "tab:red", "random": "tab:blue", "scratch": "tab:gray", "probe": "tab:green"}
    for name, colour in colours.items():
        stats = _mean_std(arms.get(name, {}).get("top1", []))
        if stats is None:
            continue
        mean, std = stats
        ax.axhline(mean, color=colour, label=f"{name} ({mean:.1f})", linestyle="--" if name == "scratch" else "-")
        ax.axhspan(mean - std, mean + std, color=colour, alpha=0.15)
    ax.set_xscale("symlog", linthresh=10.0)  # t = 0 sits at 0; 10..999 spread out logarithmically
    if fixed:
        ax.set_xlim(0, max(ts) * 1.5 or 1.0)
        ax.set_xticks(ts, [str(t) for t in ts])
    length = schedule_epochs(arms.get("scratch", {}))
    ax.set_xlabel("time step t (fixed-t arms" + (f", {length} fine-tuning epochs)" if length else ")"))
    ax.set_ylabel("fine-tuned top-1 (%)")
    ax.legend(fontsize=8)


def _lengths(summary: dict[str, Any]) -> list[int]:
    """The fine-tuning lengths (epochs) the grid's arms ran, ascending (arms without curves left out)."""
    return sorted({epochs for arm in summary["arms"].values() if (epochs := schedule_epochs(arm))})


def _epochs_panel(ax: Any, summary: dict[str, Any]) -> None:
    """Test top-1 (mean ± std) against fine-tuning epochs: the scratch arms as one line, each distilled
    arm a point of its own (compare a point with the line at its epochs)."""
    by_length = scratch_by_length(summary)
    scratch = sorted((epochs, stats) for epochs, (_, arm) in by_length.items() if (stats := _mean_std(arm["top1"])))
    if scratch:
        ax.errorbar([e for e, _ in scratch], [s[0] for _, s in scratch], yerr=[s[1] for _, s in scratch],
                    marker="s", color="tab:gray", linestyle="--", label="scratch")
    names = {name for name, _ in by_length.values()}
    for name, arm in summary["arms"].items():
        stats, epochs = _mean_std(arm["top1"]), schedule_epochs(arm)
        if name in names or stats is None or epochs is None:
            continue
        ax.errorbar([epochs], [stats[0]], yerr=[stats[1]], marker="o", linestyle="none", label=name)
    lengths = _lengths(summary)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(e) for e in lengths])
    ax.set_xlabel("fine-tuning epochs")
    ax.set_ylabel("fine-tuned top-1 (%)")
    ax.legend(fontsize=8)


def figure8(summary: dict[str, Any], path: Path) -> Path:
    """The paper's Figure 8 analog (`_t_panel`, where an arm distils), and beside it, where the arms were
    fine-tuned for several lengths (a convergence check, arms at a longer schedule), `_epochs_panel`."""
    plt = pyplot()
    lengths = _lengths(summary)
    distilled = any(distils(arm) for arm in summary["arms"].values())
    panels = [_t_panel] * (distilled or len(lengths) < 2) + [_epochs_panel] * (len(lengths) > 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        panel(ax, summary)
    fig.suptitle(f"{summary['name']}: {summary['labels_per_class']} labels/class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(cfg: ExperimentConfig, lpc: int, results: Sequence[ArmSeedResult], *, command: str,
                  cache: Path | None = None, seconds: float | None = None, val_images: int | None = None,
                  planned: int | None = None) -> list[Path]:
    """`<output_dir>/<stem>.json|.md|.png` for one label budget (``val_images``: the validation subset's
    size; ``planned``: the grid's arm-seeds, of which ``results`` are those finished)."""
    out = Path(cfg.output_dir)
    stem = results_stem(cfg, lpc)
    summary = summarise(cfg, lpc, results, command=command, cache=cache, seconds=seconds, val_images=val_images,
                        planned=planned)
    json_path = out / f"{stem}.json"
    replace_text(json_path, json.dumps(summary, indent=2))
    md_path = out / f"{stem}.md"
    replace_text(md_path, results_markdown(summary))
    return [json_path, md_path, figure8(summary, out / f"{stem}.png")]
