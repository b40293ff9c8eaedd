"""Face landmarks on WFLW: top-down heatmaps (SimpleBaseline on ResNet-50, HRNetV2-W18), NME.

Defaults are the paper's schedule (Sec. 5, "Landmark Detection"): Adam lr 2e-3, 60 epochs,
batch 128, 256 px input; 64 px Gaussian heatmaps (sigma 2), MSE loss, DARK sub-pixel decoding.
The lr steps (x0.1 at epochs 40 and 55) follow mmpose's WFLW configs. NME is normalised by the
outer-eye-corner distance and reported on the test set and its six attribute subsets.
The model takes images in [0, 1] and normalises them itself (backbone's mean / std).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.heatmaps import decode, heatmap_coords_to_points
from ..data.wflw import FLIP_INDEX, WFLW
from ..errors import ConfigError
from ..heads.backbone import export_plain_backbone
from ..heads.heatmap import build_heatmap_model
from ..metrics.landmarks import NMEMetric
from ..modes import evaluating
from ..visualize import save_landmark_pictures
from ..metrics.base import Metric
from .base import Task


class LandmarksTask(Task):
    """98-point WFLW landmarks from heatmaps (`repfusion_zoo.data.wflw`)."""

    name = "landmarks"
    #: WFLW's left/right point permutation (the mirror of point i is point flip_index[i])
    flip_index: tuple[int, ...] = FLIP_INDEX
    main_metric = "NME"

    def __init__(self, cfg: Mapping[str, Any] | None = None) -> None:
        self.model_kwargs: dict[str, Any] = {}
        self.configure(cfg or {})

    def configure(self, cfg: Mapping[str, Any]) -> None:
        """Read the task's own settings; build_model / build_datasets call it."""
        self.input_size = int(cfg.get("input_size", 256))
        self.heatmap_size = int(cfg.get("heatmap_size", 64))
        self.decode_method = str(cfg.get("decode", "dark"))
        self.num_pictures = int(cfg.get("num_pictures", 4))
        self.flip_test = bool(cfg.get("flip_test", True))
        if self.heatmap_size * 4 != self.input_size:
            raise ConfigError(
                f"heatmap_size={self.heatmap_size} must be input_size / 4 = {self.input_size / 4:g}: "
                "both heads output stride-4 heatmaps (256 px input -> 64 px heatmaps)"
            )

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            # data
            "dataset": "WFLW",
            "data_root": "",
            "num_points": 98,
            "input_size": 256,
            "heatmap_size": 64,
            "sigma": 2.0,
            "box_scale": 1.25,
            "scale_jitter": 0.25,
            "rotation": 30.0,
            "flip": True,
            # model and decoding
            "head": "auto",
            "decode": "dark",
            "flip_test": True,
            "num_pictures": 4,
            # the paper's schedule
            "optimizer": "adam",
            "learning_rate": 2e-3,
            "weight_decay": 0.0,
            "num_train_epochs": 60,
            "train_batch_size": 128,
            "lr_scheduler": "multistep",
            "milestones": [40, 55],
            "gamma": 0.1,
            "eval_batch_size": 64,
        }

    def build_datasets(self, cfg: Mapping[str, Any]) -> tuple[Dataset, Dataset]:
        self.configure(cfg)
        if not cfg.get("data_root"):
            raise ConfigError(
                "landmarks needs --data_root: a WFLW folder with WFLW_images/ and "
                "WFLW_annotations/list_98pt_rect_attr_train_test/"
            )
        common = dict(
            input_size=self.input_size,
            heatmap_size=self.heatmap_size,
            sigma=float(cfg.get("sigma", 2.0)),
            box_scale=float(cfg.get("box_scale", 1.25)),
            scale_jitter=float(cfg.get("scale_jitter", 0.25)),
            rotation=float(cfg.get("rotation", 30.0)),
            flip=bool(cfg.get("flip", True)),
        )
        return WFLW(cfg["data_root"], "train", **common), WFLW(cfg["data_root"], "test", **common)

    def build_model(self, backbone: str, pretrained: bool, cfg: Mapping[str, Any]) -> nn.Module:
        self.configure(cfg)
        self.model_kwargs = dict(cfg.get("model_kwargs") or {})
        return build_heatmap_model(
            backbone, pretrained, num_points=int(cfg.get("num_points", 98)), head=str(cfg.get("head", "auto")),
            **self.model_kwargs,
        )

    def backbone_of(self, model: nn.Module) -> nn.Module:
        """The fine-tuned trunk as a plain timm model with no classifier (what save_pretrained writes)."""
        return export_plain_backbone(model.backbone, self.model_kwargs)

    def training_loss(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """MSE between predicted and Gaussian target heatmaps `[B, K, h, w]`."""
        heatmaps = model(batch["image"]).float()
        target = batch["heatmaps"]
        if heatmaps.shape != target.shape:
            raise ConfigError(
                f"the model gives heatmaps {tuple(heatmaps.shape[-2:])} but the targets are "
                f"{tuple(target.shape[-2:])}; set heatmap_size = input_size / 4"
            )
        mse = F.mse_loss(heatmaps, target)
        return {"total": mse, "mse": mse}

    def _points(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Points `[B, K, 2]` in input pixels, decoded from the heatmaps to sub-pixel accuracy."""
        heatmaps = model(images).float()
        coords, _ = decode(heatmaps, self.decode_method)
        return heatmap_coords_to_points(coords, images.shape[-1], heatmaps.shape[-1])

    def predict(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """Points `[B, K, 2]` in input pixels; with `flip_test` (mmpose's WFLW default), the mean of
        the points found on the image and on its mirror (mapped back: x -> S - 1 - x, left/right swapped)."""
        images = batch["image"]
        points = self._points(model, images)
        if not self.flip_test or points.shape[1] != len(self.flip_index):
            return points
        mirrored = self._points(model, images.flip(-1))[:, list(self.flip_index)]
        mirrored[..., 0] = images.shape[-1] - 1 - mirrored[..., 0]
        return (points + mirrored) / 2

    def new_metric(self) -> Metric:
        return NMEMetric()

    def visualize(self, model: nn.Module, batch: Mapping[str, Any], out_dir: Path) -> list[Path]:
        """Predicted (red) and annotated (green) points on the first `num_pictures` crops."""
        count = self.num_pictures
        images = batch["image"][:count]
        with evaluating(model):
            points = self.predict(model, {"image": images})
        target = batch["points"][:count] if "points" in batch else None
        return save_landmark_pictures(images, points, target, out_dir, "landmarks", count)
