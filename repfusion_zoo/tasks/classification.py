"""Image classification: a backbone with a linear head, cross-entropy, top-1 accuracy."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data import build_dataset, num_classes
from ..errors import ConfigError
from ..metrics import Metric, TopKAccuracy
from ..normalize import InputNormalize
from ..visualize import pyplot
from ..zoo import create_model
from .base import Task


class Normalized(nn.Module):
    """`backbone((x - mean) / std)` for `x` `[B, C, H, W]` in [0, 1]; `backbone` is the zoo weight
    (its normalisation: `repfusion_zoo.normalize.InputNormalize.of`)."""

    def __init__(self, backbone: nn.Module, in_chans: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.normalize = InputNormalize.of(backbone, in_chans)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(images))


def stem_in_chans(model: nn.Module) -> int | None:
    """Input channels of the first convolution (None when there is none)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


def create_backbone(name: str, pretrained: bool, *, num_classes: int, in_chans: int,
                    model_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A timm-style model with a `num_classes` head from a zoo/timm name, `hf-hub:` id or folder.

    A folder (config.json + model.safetensors, e.g. a distilled backbone) and an `hf-hub:` id
    always load their weights (`repfusion_zoo.hub.load_pretrained`: safetensors only, strict keys);
    a name loads them when `pretrained`. These keep their stem; a head of another size (or none,
    as in a distilled backbone) is replaced with a fresh `num_classes` head.
    """
    is_folder = Path(str(name)).expanduser().is_dir()
    if pretrained or is_folder or str(name).startswith("hf-hub:"):
        source = str(Path(name).expanduser()) if is_folder else str(name)
        model = create_model(source, pretrained=True)
        if getattr(model, "num_classes", None) != num_classes:
            model.reset_classifier(num_classes)
        if stem_in_chans(model) not in (None, in_chans):
            raise ConfigError(
                f"backbone {name!r} takes {stem_in_chans(model)}-channel input but the data has in_chans={in_chans}; "
                f"set --in_chans {stem_in_chans(model)}"
            )
        return model
    return create_model(str(name), pretrained=False, num_classes=num_classes, in_chans=in_chans, **dict(model_kwargs or {}))


def class_names(dataset: Dataset) -> list[str]:
    """The dataset's class names (`classes`), also through `Subset` / `ConcatDataset` wrappers; [] if none."""
    while not hasattr(dataset, "classes") and (hasattr(dataset, "dataset") or getattr(dataset, "datasets", None)):
        dataset = dataset.dataset if hasattr(dataset, "dataset") else dataset.datasets[0]
    return [str(name) for name in getattr(dataset, "classes", None) or []]


class ClassificationTask(Task):
    """Backbone + linear head on an image-classification dataset (`repfusion_zoo.data.build_dataset`)."""

    name = "classification"
    main_metric = "top1"

    def __init__(self) -> None:
        self.num_classes: int | None = None
        self.label_names: list[str] | None = None  # class index -> name, from the training data
        self.label_smoothing = 0.0

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "dataset": "digits",
            "image_size": 32,
            "in_chans": 3,
            "num_classes": 0,
            "augment": True,
            "crop_padding": 0,
            "label_smoothing": 0.0,
        }

    def build_datasets(self, cfg: Mapping[str, Any]) -> tuple[Dataset, Dataset]:
        common = dict(image_size=cfg["image_size"], in_chans=cfg["in_chans"], seed=cfg.get("seed", 0))
        train = build_dataset(cfg["dataset"], split="train", augment=cfg.get("augment", True),
                              crop_padding=int(cfg.get("crop_padding", 0)), **common)
        test = build_dataset(cfg["dataset"], split="test", augment=False, **common)
        self.num_classes = int(cfg.get("num_classes") or num_classes(train))
        names = class_names(train)
        self.label_names = names if len(names) == self.num_classes else None
        return train, test

    def build_model(self, backbone: str, pretrained: bool, cfg: Mapping[str, Any]) -> nn.Module:
        self.label_smoothing = float(cfg.get("label_smoothing", 0.0))
        num_classes = int(cfg.get("num_classes") or self.num_classes or 0)
        if num_classes <= 0:
            raise ConfigError("classification needs --num_classes (or build_datasets first to read it from the data)")
        model = create_backbone(backbone, pretrained, num_classes=num_classes, in_chans=int(cfg["in_chans"]),
                                model_kwargs=cfg.get("model_kwargs"))
        return Normalized(model, int(cfg["in_chans"]))

    def training_loss(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        logits = model(batch["image"])
        ce = F.cross_entropy(logits.float(), batch["label"], label_smoothing=self.label_smoothing)
        return {"total": ce, "ce": ce}

    def predict(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        return model(batch["image"]).argmax(dim=1)

    def new_metric(self) -> Metric:
        return TopKAccuracy()

    def visualize(self, model: nn.Module, batch: Mapping[str, Any], out_dir: Path) -> list[Path]:
        """A grid of up to 16 eval images titled `pred/true`."""
        plt = pyplot()

        images = batch["image"][:16].detach().float().cpu()
        with torch.no_grad():
            preds = self.predict(model, {"image": batch["image"][:16]}).cpu()
        labels = batch["label"][:16].cpu()
        cols = 8
        rows = (len(images) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, image, pred, label in zip(axes.flat, images, preds, labels):
            picture = image.permute(1, 2, 0).clamp(0, 1).numpy()
            ax.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray")
            ax.set_title(f"{int(pred)}/{int(label)}", fontsize=8, color="green" if pred == label else "red")
        fig.tight_layout()
        path = Path(out_dir) / "classification_predictions.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return [path]

    def backbone_of(self, model: nn.Module) -> nn.Module:
        return model.backbone if isinstance(model, Normalized) else getattr(model, "backbone", model)
