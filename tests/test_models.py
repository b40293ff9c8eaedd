"""The student architectures timm lacks: timm's model interface, features_only, registration."""
from __future__ import annotations

import types

import pytest
import timm
import torch

import repfusion_zoo  # noqa: F401  (registers the architectures)
from repfusion_zoo.errors import ConfigError, RepFusionError
from repfusion_zoo.models import CIFAR10_MEAN, register_new_model

PLAIN = ["resnet18_cifar", "resnet18_cifar_025", "resnet50_cifar", "wrn28_2", "wrn28_10", "mobilenetv2_cifar"]
HEAVY = {"resnet50_cifar", "wrn28_10"}  # checked at 16 px to keep the suite fast


pytestmark = pytest.mark.usefixtures("one_thread")  # 2 shared cores: more threads only oversubscribe


@pytest.mark.parametrize("name", PLAIN)
def test_timm_interface_forward_backward(name: str) -> None:
    model = timm.create_model(name, num_classes=10)
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert model.pretrained_cfg["mean"] == CIFAR10_MEAN
    size = 16 if name in HEAVY else 32
    x = torch.randn(2, 3, size, size)
    features = model.forward_features(x)
    assert features.shape[:2] == (2, model.num_features)
    logits = model.forward_head(features)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    first_conv = model.get_submodule(model.pretrained_cfg["first_conv"])
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    assert model.get_classifier().out_features == 10

    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", PLAIN)
def test_features_only_matches_feature_info(name: str) -> None:
    model = timm.create_model(name, features_only=True)
    maps = model(torch.randn(1, 3, 32, 32))
    assert [m.shape[1] for m in maps] == model.feature_info.channels()
    assert [32 // m.shape[-1] for m in maps] == model.feature_info.reduction()


def test_out_indices_and_in_chans() -> None:
    model = timm.create_model("resnet18_cifar", features_only=True, out_indices=(2, 4), in_chans=1)
    maps = model(torch.randn(1, 1, 32, 32))
    assert [tuple(m.shape[1:]) for m in maps] == [(128, 16, 16), (512, 4, 4)]
    assert model.feature_info.reduction() == [2, 8]


def test_known_shapes() -> None:
    """The CIFAR stems: 32 px ends at 4x4 (ResNet, MobileNetV2) and 8x8 (WRN)."""
    x = torch.randn(1, 3, 32, 32)
    assert timm.create_model("resnet18_cifar").forward_features(x).shape == (1, 512, 4, 4)
    assert timm.create_model("mobilenetv2_cifar").forward_features(x).shape == (1, 1280, 4, 4)
    wrn = timm.create_model("wrn28_2")
    assert wrn.forward_features(x).shape == (1, 128, 8, 8)
    assert sum(p.numel() for p in wrn.parameters()) == pytest.approx(1.47e6, rel=0.01)  # WRN-28-2: 1.5 M


def test_output_stride_dilates() -> None:
    model = timm.create_model("resnet18_cifar", output_stride=4, features_only=True)
    assert model(torch.randn(1, 3, 32, 32))[-1].shape[-1] == 8
    assert model.feature_info.reduction() == [1, 1, 2, 4, 4]
    with pytest.raises(ConfigError, match="output_stride"):
        timm.create_model("resnet18_cifar", output_stride=32)


def test_forward_intermediates_wrn() -> None:
    model = timm.create_model("wrn28_2").eval()
    x = torch.randn(1, 3, 32, 32)
    final, maps = model.forward_intermediates(x, indices=2)
    assert [m.shape[1] for m in maps] == [64, 128]
    assert torch.allclose(final, model.forward_features(x))


def test_register_new_model_refuses_a_timm_name() -> None:
    before = timm.models._registry._model_entrypoints["resnet18"]
    fake = types.ModuleType("fake_module")

    def resnet18(pretrained: bool = False, **kwargs):  # noqa: ANN202
        raise AssertionError("never built")

    resnet18.__module__ = fake.__name__
    with pytest.raises(RepFusionError, match="resnet18.*already registered"):
        register_new_model(resnet18)
    assert timm.models._registry._model_entrypoints["resnet18"] is before
