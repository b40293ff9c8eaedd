"""Face parsing on CelebAMask-HQ: BiSeNetV1 on a zoo/timm backbone, 19 labels, mIoU / aAcc / mAcc.

Defaults are the paper's schedule (Sec. 5, "Segmentation"): crop 448, 160k iterations, batch 16,
SGD lr 0.01, momentum 0.9, poly decay, evaluation at 512 px; weight decay 5e-4 and the two
auxiliary heads (loss weight 1.0 each) follow mmseg's BiSeNetV1 configs.
The model takes images in [0, 1] and normalises them itself (backbone's mean / std).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.celebamask import IGNORE_INDEX, NUM_LABELS, CelebAMaskHQ
from ..errors import ConfigError
from ..heads.backbone import export_plain_backbone
from ..heads.bisenet import build_bisenet
from ..metrics.segmentation import SegmentationMetric
from ..modes import evaluating
from ..visualize import save_parsing_pictures
from ..metrics.base import Metric
from .base import Task


def _logits(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(main logits, aux logits) from the model output: a tensor (eval) or a tuple (train)."""
    if isinstance(output, torch.Tensor):
        return output, []
    return output[0], list(output[1:])


def _float_pair(value: Any, key: str) -> tuple[float, float]:
    """`[0.5, 2.0]`, `(0.5, 2.0)` or the flag text `0.5,2.0` / `[0.5, 2.0]` -> (0.5, 2.0)."""
    if isinstance(value, str):
        value = [v for v in value.strip("[]() ").split(",") if v.strip()]
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{key} expects two numbers like 0.5,2.0; got {value!r}") from None
    if not 0 < low <= high:
        raise ConfigError(f"--{key} needs 0 < low <= high; got {low}, {high}")
    return low, high


def _cache_dir(cfg: Mapping[str, Any]) -> Path:
    if cfg.get("cache_dir"):
        return Path(str(cfg["cache_dir"])).expanduser()
    return Path(str(cfg.get("output_dir") or "outputs/run")) / "celebamask_cache"


class SegmentationTask(Task):
    """BiSeNetV1 face parsing on CelebAMask-HQ (`repfusion_zoo.data.celebamask`)."""

    name = "segmentation"
    main_metric = "mIoU"

    def __init__(self, cfg: Mapping[str, Any] | None = None) -> None:
        self.model_kwargs: dict[str, Any] = {}
        self.configure(cfg or {})

    def configure(self, cfg: Mapping[str, Any]) -> None:
        """Read the task's own settings (aux weight, labels, pictures); build_model / build_datasets call it."""
        self.aux_weight = float(cfg.get("aux_weight", 1.0))
        self.num_classes = int(cfg.get("num_classes") or NUM_LABELS)  # 0 = the CelebAMask-HQ default
        self.num_pictures = int(cfg.get("num_pictures", 4))
        if self.num_classes < 2:
            raise ConfigError(
                f"num_classes={self.num_classes}: face parsing needs at least 2 labels ({NUM_LABELS} for CelebAMask-HQ)"
            )

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            # data
            "dataset": "CelebAMask-HQ",
            "data_root": "",
            "num_classes": NUM_LABELS,
            "base_size": 512,
            "crop_size": 448,
            "eval_size": 512,
            "scale_range": [0.5, 2.0],
            "split_seed": 0,
            "val_fraction": 0.1,
            "test_fraction": 0.1,
            "eval_split": "test",
            "cache_dir": "",
            # model and loss
            "bisenet_widths": "auto",
            "aux_weight": 1.0,
            "num_pictures": 4,
            # the paper's schedule
            "optimizer": "sgd",
            "learning_rate": 0.01,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "lr_scheduler": "poly",
            "poly_power": 0.9,
            "train_batch_size": 16,
            "num_train_epochs": 10000,
            "max_train_steps": 160000,
            "eval_batch_size": 8,
        }

    def build_datasets(self, cfg: Mapping[str, Any]) -> tuple[Dataset, Dataset]:
        self.configure(cfg)
        if not cfg.get("data_root"):
            raise ConfigError(
                "segmentation needs --data_root: a CelebAMask-HQ folder with CelebA-HQ-img/ and "
                "CelebAMask-HQ-mask-anno/ (or combined masks in mask/)"
            )
        common = dict(
            cache_dir=_cache_dir(cfg),
            seed=int(cfg.get("split_seed", 0)),
            val_fraction=float(cfg.get("val_fraction", 0.1)),
            test_fraction=float(cfg.get("test_fraction", 0.1)),
            base_size=int(cfg.get("base_size", 512)),
            crop_size=int(cfg.get("crop_size", 448)),
            eval_size=int(cfg.get("eval_size", 512)),
            scale_range=_float_pair(cfg.get("scale_range", (0.5, 2.0)), "scale_range"),
        )
        train = CelebAMaskHQ(cfg["data_root"], "train", **common)
        evaluation = CelebAMaskHQ(cfg["data_root"], str(cfg.get("eval_split", "test")), train=False, **common)
        return train, evaluation

    def build_model(self, backbone: str, pretrained: bool, cfg: Mapping[str, Any]) -> nn.Module:
        self.configure(cfg)
        self.model_kwargs = dict(cfg.get("model_kwargs") or {})
        return build_bisenet(
            backbone, pretrained, num_classes=self.num_classes, widths=str(cfg.get("bisenet_widths", "auto")),
            **self.model_kwargs,
        )

    def backbone_of(self, model: nn.Module) -> nn.Module:
        """The fine-tuned trunk as a plain timm model with no classifier (what save_pretrained writes)."""
        return export_plain_backbone(model.backbone, self.model_kwargs)

    def training_loss(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """CE of the main logits + `aux_weight` x CE of each auxiliary head (ignore 255)."""
        logits, aux = _logits(model(batch["image"]))
        target = batch["mask"]
        main = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
        losses = {"ce": main}
        total = main
        for i, aux_logits in enumerate(aux, start=1):
            losses[f"aux{i}"] = F.cross_entropy(aux_logits.float(), target, ignore_index=IGNORE_INDEX)
            total = total + self.aux_weight * losses[f"aux{i}"]
        losses["total"] = total
        return losses

    def predict(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """Label map `[B, H, W]` at the mask's size."""
        logits, _ = _logits(model(batch["image"]))
        size = batch["mask"].shape[-2:] if "mask" in batch else logits.shape[-2:]
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
        return logits.argmax(dim=1)

    def new_metric(self) -> Metric:
        return SegmentationMetric(num_classes=self.num_classes, ignore_index=IGNORE_INDEX)

    def visualize(self, model: nn.Module, batch: Mapping[str, Any], out_dir: Path) -> list[Path]:
        """image | target overlay | prediction overlay, for the first `num_pictures` images."""
        count = self.num_pictures
        sub = {"image": batch["image"][:count], "mask": batch["mask"][:count]}
        with evaluating(model):
            prediction = self.predict(model, sub)
        return save_parsing_pictures(sub["image"], prediction, sub["mask"], out_dir, "parsing", count)
