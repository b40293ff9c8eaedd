"""A grid that spans machines: the results file is its record, and a rerun restores from it.

Every finished arm-seed goes into `<results_dir>/<stem>.json` (`report.summarise`) with the digest of
its settings (`arm_seed_settings`: every experiment key that reaches its recipes or its evaluation,
no paths, no launcher). A rerun on a machine without the run folders (a fresh checkout, another
session) restores each recorded arm-seed whose digest still matches into its run folder's
`result.json`, and runs only the rest; one whose settings changed, or recorded before digests, runs
again. The weights of a restored arm-seed are not restored: publishing one needs it run here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from ..config import settings_of
from ..teachers import TeacherSettings
from .config import PROBE, ExperimentConfig, arm_finetune, arm_seeds, run_dir
from .result import PER_SEED, RESULT_FILE, ArmSeedResult
from .validate import VALIDATE

__all__ = ["arm_seed_settings", "read_record", "recorded_results", "recorded_seconds", "restore_recorded"]


def arm_seed_settings(cfg: ExperimentConfig, arm: str, seed: int, lpc: int) -> str:
    """sha256 (16 hex) of what decides one arm-seed's figures: the arm's keys, the fine-tune, kNN and
    subset keys, and for a distilling arm (or a fine-tune that keeps the distillation loss) the
    teacher, cache and distill keys. Paths of this machine (dataset, output folders) and the launcher
    are not in it."""
    spec = {k: v for k, v in cfg.arms[arm].items() if k != "seeds"}
    keys: dict[str, Any] = {
        "arm": spec, "finetune": cfg.finetune, "labels_per_class": lpc, "seed": seed, "student": cfg.student,
        "student_kwargs": cfg.student_kwargs, "image_size": cfg.image_size, "in_chans": cfg.in_chans,
        "val_images_per_class": cfg.val_images_per_class, "data_seed": cfg.data_seed, "knn_k": cfg.knn_k,
        "knn_temperature": cfg.knn_temperature}
    distils = spec.get("distill", True)
    if distils or arm_finetune(cfg, arm).get("distill_weight"):
        keys["teacher"] = dataclasses.asdict(settings_of(TeacherSettings, cfg))
    if distils:
        keys.update(distill=cfg.distill, cache=cfg.cache, timesteps=cfg.timesteps,
                    distill_images_per_class=cfg.distill_images_per_class)
        if spec.get("t") == PROBE:
            keys["probe_test_fraction"] = cfg.probe_test_fraction
        if spec.get("t") == VALIDATE:
            keys["validate_steps"] = cfg.validate_steps
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


def recorded_results(summary: dict[str, Any]) -> list[ArmSeedResult]:
    """The arm-seeds a results JSON (`report.summarise`) holds, as the runner wrote them (without
    ``backbone``: a folder of the machine that ran it). A per-seed list that does not hold one entry
    per seed (a file from before they all did) leaves that field at its default."""
    results = []
    for name, arm in summary.get("arms", {}).items():  # an empty record (`read_record` of no file) holds none
        seeds = arm["seeds"]
        # each distillation record names its seed; a file from before they did holds one per seed, in order
        distills = {d.get("seed", seed): {k: v for k, v in d.items() if k != "seed"}
                    for seed, d in zip(seeds, arm.get("distill", []))}
        diverged = {d["seed"]: d["error"] for d in arm.get("diverged", [])}
        for i, seed in enumerate(seeds):
            fields = {f: arm[key][i] for f, key in PER_SEED.items() if len(arm.get(key, [])) == len(seeds)}
            results.append(ArmSeedResult(arm=name, seed=seed, labels_per_class=summary["labels_per_class"], **fields,
                                         distill=distills.get(seed), diverged=diverged.get(seed)))
    return results


def read_record(path: Path) -> dict[str, Any]:
    """The results JSON at `path` (`report.summarise`), or ``{}`` where there is none."""
    return json.loads(path.read_text()) if path.is_file() else {}


def recorded_seconds(summary: dict[str, Any]) -> float:
    """The wall seconds the grid's earlier runs spent, as its results JSON holds them (0 in an empty
    one): a resumed grid adds its own, so the figure is the whole grid's across sessions."""
    return float(summary.get("seconds") or 0.0)


def restore_recorded(cfg: ExperimentConfig, lpc: int, summary: dict[str, Any], source: Path) -> list[str]:
    """Write each arm-seed of the results JSON `summary` (read from `source`) whose settings digest
    matches this grid's, and that has no `result.json` here, into its run folder; returns one line per
    arm-seed considered."""
    lines = []
    for result in recorded_results(summary):
        target = run_dir(cfg, lpc, result.arm, result.seed) / RESULT_FILE
        if target.is_file() or result.arm not in cfg.arms or result.seed not in arm_seeds(cfg, result.arm):
            continue
        where = f"{result.arm} seed {result.seed} ({lpc} labels per class) recorded in {source}"
        if result.settings != arm_seed_settings(cfg, result.arm, result.seed, lpc):
            lines.append(f"{where} with other settings: it runs again")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        result.write(target)
        lines.append(f"{where}: restored, not run again")
    return lines
