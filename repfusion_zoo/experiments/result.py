"""`ArmSeedResult`: what one arm-seed of an experiment measured, as its ``result.json`` holds it
(written by the runner, read back by it on a rerun and by the report)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import replace_text
from ..errors import InputError

__all__ = ["ArmSeedResult", "RESULT_FILE", "PER_SEED", "ALWAYS_LISTED"]

RESULT_FILE = "result.json"

#: ArmSeedResult field -> the results JSON's per-arm list that holds it, one entry per seed (`report.summarise`)
PER_SEED = {"top1": "top1", "knn": "knn", "val_top1": "val_top1", "t": "t", "probe": "probe_accuracy",
            "validate": "validate", "seconds": "seconds", "val_curve": "val_curve", "timing": "timing",
            "settings": "settings"}
#: the fields listed for every arm (the others only where some seed has one)
ALWAYS_LISTED = ("top1", "knn", "val_top1", "seconds", "val_curve", "timing")


@dataclass
class ArmSeedResult:
    """One arm at one seed and label budget.

    ``top1``: fine-tuned top-1 (%) on the full test split; ``val_top1``: on the held-out labelled
    validation subset (for choices); ``knn``: frozen kNN top-1 (%); ``val_curve``: ``[[epoch,
    val top-1], ...]`` while fine-tuning; ``t``: the time step distilled at (fixed, probe and
    validate arms); ``probe`` / ``validate``: how a probe or validate arm chose it; ``backbone``: the
    distilled backbone's folder (None for scratch; label budgets may share it); ``distill``:
    the distillation's per-epoch records and time-step report (None for scratch); ``timing``:
    seconds per part (runner, distill, finetune); ``seconds``: the arm-seed's wall time; ``diverged``:
    the error of a distillation that diverged (then no fine-tune and no metrics); ``settings``: the
    digest of the settings that made it (`record.arm_seed_settings`: a rerun elsewhere restores it
    from the results file while they match).
    """

    arm: str
    seed: int
    labels_per_class: int
    top1: float | None = None
    val_top1: float | None = None
    knn: float | None = None
    val_curve: list[list[float]] = field(default_factory=list)
    t: int | None = None
    probe: dict[str, float] | None = None
    validate: dict[str, Any] | None = None
    backbone: str | None = None
    distill: dict[str, Any] | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    diverged: str | None = None
    settings: str | None = None

    def write(self, path: Path) -> None:
        """``path`` (a ``result.json``), atomically."""
        replace_text(path, json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> ArmSeedResult:
        """The result a ``result.json`` holds (keys it lacks take their defaults)."""
        data = json.loads(Path(path).read_text())
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"{path} holds keys {unknown} that no arm-seed result has; delete it to rerun that arm-seed")
        return cls(**data)
