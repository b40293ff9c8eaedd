"""The weights of an experiment's chosen arm, its best seed, as Hub-ready folders whose cards carry
what made them: the measured metrics, the experiment's command, the teacher and the seed.

The arm is the experiment's ``publish`` key (the arm chosen on validation; ``""`` publishes
nothing); its best seed is the one with the highest validation top-1 (labelled train images outside
every labelled subset), never chosen on the test split. Copies go to
`<output_dir>/weights/<stem>-<arm>-seed<s>-backbone` (the distilled backbone, before fine-tuning;
none for scratch) and `...-finetuned` (the classifier after fine-tuning).
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_folder
from ..hub import update_card_fields, update_card_metrics
from .config import ExperimentConfig, run_dir
from .result import ArmSeedResult

__all__ = ["best_seed", "publish_best"]


def best_seed(results: Sequence[ArmSeedResult]) -> ArmSeedResult:
    """The result with the highest validation top-1 (ties, or none scored: the lowest seed)."""
    return max(results, key=lambda r: (r.val_top1 if r.val_top1 is not None else float("-inf"), -r.seed))


def teacher_sha256(teacher: str) -> str | None:
    """``"<file>: <sha256>"`` of each safetensors file of a local teacher folder (None for a Hub id)."""
    folder = Path(teacher)
    if not folder.is_dir():
        return None
    files = sorted(folder.rglob("*.safetensors"))
    return "; ".join(f"{f.relative_to(folder)}: {hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files) or None


def publish_best(cfg: ExperimentConfig, results: Sequence[ArmSeedResult], stem: str, command: str) -> list[Path]:
    """Copy the best seed of arm ``cfg.publish`` (among ``results``, one label budget) out of its run
    folder and write the cards; returns the folders (none when ``publish`` is empty or did not run)."""
    ran = [r for r in results if r.arm == cfg.publish]
    if not ran:
        return []
    best = best_seed(ran)
    run = run_dir(cfg, best.labels_per_class, best.arm, best.seed)
    if not (run / "finetune" / "model").is_dir():  # restored from a results file (record.py): its weights are elsewhere
        print(f"[experiment] not published: {best.arm} seed {best.seed} (the best by validation top-1) was restored from "
              f"the results file, and its weights are on the machine that ran it; delete its {run / 'result.json'} "
              "and rerun to make them here", flush=True)
        return []
    fields = {"recipe": command, "seed": best.seed, "teacher": cfg.teacher, "teacher_sha256": teacher_sha256(cfg.teacher),
              "labels_per_class": best.labels_per_class, "results": f"docs/results/{stem}.md"}
    scores = {"val_top1": best.val_top1, "knn_top1": best.knn}
    parts = [("finetuned", run / "finetune" / "model", {"top1": best.top1, **scores})]
    if best.backbone:
        parts.insert(0, ("backbone", Path(best.backbone), {"finetuned_top1": best.top1, **scores}))
    made = []
    for kind, source, metrics in parts:
        target = Path(cfg.output_dir) / "weights" / f"{stem}-{best.arm}-seed{best.seed}-{kind}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_folder(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        update_card_metrics(target, {k: v for k, v in metrics.items() if v is not None}, task="classification",
                            dataset=cfg.dataset)
        update_card_fields(target, {**fields, "name": target.name,
                                    "description": f"RepFusion {kind} of the `{cfg.name}` experiment "
                                                   f"({best.labels_per_class or 'all'} labels per class): arm "
                                                   f"`{best.arm}`, its best seed by validation top-1."})
        made.append(target)
    return made
