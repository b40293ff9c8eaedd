"""The feature probe of a teacher while it trains: does more training still pay?

Every ``probe_every`` steps, `train_teacher` hands the EMA UNet to `ProbeCurve.record`: its
pooled mid-block feature (clean image in [-1, 1], t as the time embedding) is probed per t with
`repfusion_zoo.method.probe` (a logistic regression fit on labelled train images, scored on test
images), and the row is written into ``probe_curve.json`` (atomically; keyed by step, so a
resumed run rewrites the same rows and never duplicates them). The final teacher folder gets a
copy.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from ..atomic import replace_text
from ..method.probe import load_probe_images, probe_timesteps
from ..teachers import DiffusionTeacher

__all__ = ["ProbeCurve", "PROBE_CURVE_FILE"]

PROBE_CURVE_FILE = "probe_curve.json"


class ProbeCurve:
    """Linear-probe top-1 (%) of a training UNet's pooled ``layer`` feature per t, by step.

    ``dataset``: a labelled dataset spec with ``train`` and ``test`` splits; the probe is fit on
    ``train_images`` seeded-random train images, the same number from each class, and scored on
    ``test_images`` test images (both loaded once, un-augmented).
    """

    def __init__(self, path: str | Path, *, dataset: str, image_size: int, in_chans: int, timesteps: Sequence[int],
                 train_images: int, test_images: int, layer: str = "mid", seed: int = 0) -> None:
        self.path = Path(path)
        self.timesteps = [int(t) for t in timesteps]
        self.layer = layer
        size = {"image_size": image_size, "in_chans": in_chans, "seed": seed}
        self.train = load_probe_images(dataset, split="train", num_samples=train_images, per_class=True, **size)
        self.test = load_probe_images(dataset, split="test", num_samples=test_images, **size)
        self.header = {"dataset": dataset, "layer": layer, "train_images": len(self.train[1]),
                       "test_images": len(self.test[1]), "seed": seed,
                       "probe": "pooled feature, clean image in [-1, 1], logistic regression (repfusion_zoo.method.probe)"}

    def rows(self) -> list[dict[str, Any]]:
        """The rows written so far (``{"step": int, "top1": {t: %}}``), by step."""
        if not self.path.is_file():
            return []
        return json.loads(self.path.read_text())["rows"]

    @torch.no_grad()
    def record(self, step: int, unet: torch.nn.Module) -> dict[str, float]:
        """Probe ``unet`` (a `UNet2DModel`, left in eval mode) at every t; write the row for ``step``."""
        teacher = DiffusionTeacher(unet.eval(), layer=self.layer)
        result = probe_timesteps(teacher, *self.test, self.timesteps, batch_size=256, train=self.train)
        top1 = {str(row["t"]): round(100.0 * row["linear_probe_accuracy"], 2) for row in result["results"]}
        rows = [row for row in self.rows() if row["step"] != step] + [{"step": int(step), "top1": top1}]
        rows.sort(key=lambda row: row["step"])
        replace_text(self.path, json.dumps({**self.header, "rows": rows}, indent=2) + "\n")
        return top1
