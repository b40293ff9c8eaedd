"""The checks timm's own model suite (pytorch-image-models `tests/test_models.py`) applies to every
timm model, applied to every zoo name and every student architecture this package registers.

Modelled on timm's `test_model_forward`, `test_model_backward`, `test_model_default_cfgs`,
`test_model_forward_features`, `test_model_forward_intermediates` and `test_model_load_pretrained`
/ `test_model_features_pretrained` (our own code, same assertions), at the cost this machine
allows: batch 1 (2 for backward), each model built a handful of times, the 256 px CelebA-HQ names
at their default size once (forward_features and the pooled / unpooled heads), smaller elsewhere.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import repfusion_zoo
from repfusion_zoo.zoo import ZOO

ZOO_NAMES = repfusion_zoo.list_models()
STUDENTS = sorted(n for n, fn in timm.models._registry._model_entrypoints.items()
                  if fn.__module__.startswith("repfusion_zoo.models"))
ALL_NAMES = ZOO_NAMES + STUDENTS
#: timm's own keys of a default cfg (every timm model has them; pool_size included)
CFG_KEYS = ("num_classes", "input_size", "pool_size", "crop_pct", "interpolation", "mean", "std",
            "first_conv", "classifier")
#: smaller sizes where timm's suite also lowers them (its TARGET_BWD_SIZE / TARGET_FFEAT_SIZE), for 2 CPU cores
TARGET_BWD_SIZE = 64
TARGET_FEAT_SIZE = 96
#: the big students, whose backward runs at 16 px (32 px for HRNet's four branches); timm skips
#: what exceeds its limits, we shrink
HEAVY = {"wrn28_10": 16, "resnet50_cifar": 16, "resnet50_repfusion_celebahq": 16, "hrnet_w18_repfusion_celebahq": 32}

pytestmark = pytest.mark.usefixtures("one_thread")


def _size(model: torch.nn.Module, target: int | None = None) -> tuple[int, int, int]:
    """timm's `_get_input_size`: the default input size, capped at `target`."""
    size = tuple(model.pretrained_cfg["input_size"])
    return tuple(min(s, target) for s in size) if target else size  # type: ignore[return-value]


def test_every_name_is_covered() -> None:
    assert len(ZOO_NAMES) == len(ZOO) == 8
    assert STUDENTS == ["mobilenetv2_cifar", "resnet18_cifar", "resnet18_cifar_025", "resnet50_cifar", "wrn28_10", "wrn28_2"]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_default_cfg_forward_features_and_heads(name: str) -> None:
    """timm's `test_model_default_cfgs`: the cfg keys; forward_features at the default size has
    `pool_size` x `num_features`; forward_head(pre_logits) has `head_hidden_size`; reset_classifier(0)
    pools; reset_classifier(0, '') and num_classes=0, global_pool='' keep the `pool_size` map;
    first_conv and classifier name real weights."""
    model = timm.create_model(name, pretrained=False).eval()
    cfg = model.pretrained_cfg
    missing = [k for k in CFG_KEYS if cfg.get(k) is None]
    assert not missing, f"{name}: cfg lacks {missing}"
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    x = torch.randn(1, *_size(model))
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert tuple(features.shape[-2:]) == tuple(cfg["pool_size"]), f"{name}: {features.shape} vs pool_size {cfg['pool_size']}"
        assert features.shape[1] == model.num_features
        assert pre_logits.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        pooled = model(x)
        assert pooled.shape == pre_logits.shape and pooled.ndim == 2
        model.reset_classifier(0, "")
        assert tuple(model(x).shape[-2:]) == tuple(cfg["pool_size"])
        unpooled = timm.create_model(name, num_classes=0, global_pool="").eval()(x)
        assert unpooled.ndim == 4 and tuple(unpooled.shape[-2:]) == tuple(cfg["pool_size"])

    with_head = timm.create_model(name, num_classes=10)  # a zoo cfg has num_classes 0: check with a head
    state = with_head.state_dict()
    classifiers = cfg["classifier"] if isinstance(cfg["classifier"], (tuple, list)) else (cfg["classifier"],)
    first_convs = cfg["first_conv"] if isinstance(cfg["first_conv"], (tuple, list)) else (cfg["first_conv"],)
    for module in (*classifiers, *first_convs):
        assert f"{module}.weight" in state, f"{name}: {module} is not a module with weights"
    assert with_head.get_classifier() is with_head.get_submodule(classifiers[0])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_forward_and_backward(name: str) -> None:
    """timm's `test_model_forward` (no NaN, grad checkpointing leaves the output unchanged) and
    `test_model_backward` (num_classes=42: every parameter gets a gradient)."""
    model = timm.create_model(name, num_classes=42)
    size = _size(model, HEAVY.get(name, TARGET_BWD_SIZE))
    x = torch.randn(2, *size)
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 42) and not torch.isnan(out).any()
        try:
            model.set_grad_checkpointing()
        except (AssertionError, NotImplementedError):  # not supported (timm's HRNet): fine, as in timm's test
            pass
        else:
            assert torch.allclose(model(x), out, rtol=1e-4, atol=1e-5)
            model.set_grad_checkpointing(False)
    model.train()
    model(x).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"{name}: no gradient for {no_grad[:5]}"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_features_only_and_intermediates(name: str) -> None:
    """timm's `test_model_forward_features` / `test_model_forward_intermediates`: at least 3 levels,
    channels as feature_info says, each map no larger than ceil(size / reduction) + 1; where the
    model has forward_intermediates, its final output equals forward_features."""
    features = timm.create_model(name, features_only=True).eval()
    channels, reductions = features.feature_info.channels(), features.feature_info.reduction()
    assert len(channels) >= 3
    size = _size(features, TARGET_FEAT_SIZE)
    x = torch.randn(1, *size)
    with torch.no_grad():
        maps = features(x)
    assert len(maps) == len(channels)
    for c, r, m in zip(channels, reductions, maps):
        assert m.shape[1] == c and not torch.isnan(m).any()
        assert m.shape[-1] <= math.ceil(size[-1] / r) + 1 and m.shape[-2] <= math.ceil(size[-2] / r) + 1
        assert m.shape[-1] == size[-1] // r, f"{name}: reduction {r} but a {m.shape[-1]} px map at {size[-1]} px"

    model = timm.create_model(name).eval()
    if not hasattr(model, "forward_intermediates"):
        return
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        assert torch.allclose(final, model.forward_features(x))
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    assert [m.shape[1] for m in intermediates] == info.channels()


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_pretrained_loads_with_other_heads_inputs_and_features(name: str, tmp_path: Path) -> None:
    """timm's `test_model_load_pretrained` (in_chans=1 with num_classes 5 and 0) and
    `test_model_features_pretrained`, with the weight from a local file (nothing is published yet)."""
    path = tmp_path / "model.safetensors"
    save_file(timm.create_model(name).state_dict(), str(path))
    overlay = dict(file=str(path))
    for num_classes in (5, 0):
        model = repfusion_zoo.create_model(name, pretrained=True, in_chans=1, num_classes=num_classes,
                                           pretrained_cfg_overlay=overlay)
        assert model.num_classes == num_classes
        first = model.get_submodule(model.pretrained_cfg["first_conv"])
        assert first.weight.shape[1] == 1  # timm adapted the first conv named in the cfg
    features = repfusion_zoo.create_model(name, pretrained=True, features_only=True, pretrained_cfg_overlay=overlay)
    assert len(features.feature_info.channels()) >= 3
