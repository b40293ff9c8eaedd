"""The classification task's loss follows its config (label smoothing is not a silent no-op)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repfusion_zoo.tasks.classification import ClassificationTask

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_training_loss_uses_label_smoothing(smoothing):
    task = ClassificationTask()
    cfg = {"num_classes": 3, "in_chans": 3, "label_smoothing": smoothing,
           "model_kwargs": {"channels": [8, 8, 8, 8]}}
    model = task.build_model("resnet18_cifar", False, cfg)
    batch = {"image": torch.rand(4, 3, 8, 8), "label": torch.tensor([0, 1, 2, 0])}
    loss = task.training_loss(model, batch)["ce"]
    expected = F.cross_entropy(model(batch["image"]).float(), batch["label"], label_smoothing=smoothing)
    assert torch.allclose(loss, expected)
