"""The weights of an experiment's best RL seed as Hub-ready folders whose cards carry what made them:
the measured metrics, the experiment's command, the teacher and the seed.

"Best" is chosen on the validation subset (labelled train images outside every labelled subset),
never on the test split. Copies go to `<output_dir>/weights/<stem>-rl-seed<s>-backbone` (the
distilled backbone, before fine-tuning) and `...-finetuned` (the classifier after fine-tuning).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..atomic import atomic_folder
from ..hub import update_card_fields, update_card_metrics
from .config import ExperimentConfig

__all__ = ["publish_best_rl"]


def best_seed(arm: dict[str, Any]) -> int:
    """The seed with the highest validation top-1 (ties: the lowest seed)."""
    scored = [(v if v is not None else float("-inf"), -s, s) for v, s in zip(arm["val_top1"], arm["seeds"])]
    return max(scored)[2]


def publish_best_rl(cfg: ExperimentConfig, summary: dict[str, Any], run: Path, stem: str) -> list[Path]:
    """Copy the best RL seed's distilled backbone and fine-tuned model out of `run`'s siblings and
    write their cards; `run` is `runner.run_dir(cfg, lpc, "rl", seed)` of that seed. Returns the folders."""
    arm = summary["arms"]["rl"]
    seed = best_seed(arm)
    i = arm["seeds"].index(seed)
    lpc = summary["labels_per_class"]
    fields = {"recipe": summary["command"], "seed": seed, "teacher": cfg.teacher, "results": f"docs/results/{stem}.md"}
    made = []
    for kind, source, metrics in (
        ("backbone", run / "distill" / "backbone", {"knn_top1": arm["knn"][i], "finetuned_top1": arm["top1"][i]}),
        ("finetuned", run / "finetune" / "model", {"top1": arm["top1"][i]}),
    ):
        target = Path(cfg.output_dir) / "weights" / f"{stem}-rl-seed{seed}-{kind}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_folder(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        update_card_metrics(target, metrics, task="classification", dataset=cfg.dataset)
        update_card_fields(target, {**fields, "name": target.name,
                                    "description": f"RepFusion {kind} of the `{cfg.name}` experiment "
                                                   f"({lpc or 'all'} labels per class), its best RL seed by validation top-1."})
        made.append(target)
    return made
