"""hubconf.py: one documented torch.hub entrypoint per zoo name and shipped weight, nothing else public."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from repfusion_zoo import list_models
from repfusion_zoo.errors import PretrainedUnavailableError
from repfusion_zoo.weights import SHIPPED


def _import_hubconf(repo_root: Path) -> ModuleType:
    """Import hubconf.py the way torch.hub does: repo root on sys.path, module from the file."""
    sys.path.insert(0, str(repo_root))
    try:
        spec = importlib.util.spec_from_file_location("hubconf", repo_root / "hubconf.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(repo_root))


def test_public_callables_are_exactly_the_zoo_names_and_shipped_weights(repo_root: Path) -> None:
    hubconf = _import_hubconf(repo_root)
    # torch.hub.list's rule: every public callable is an entrypoint
    entrypoints = [f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_")]
    assert entrypoints == sorted(list_models() + list(SHIPPED))
    for name in entrypoints:
        doc = getattr(hubconf, name).__doc__
        assert doc and "distilled" in doc and "pretrained" in doc
    for dependency in hubconf.dependencies:
        assert importlib.util.find_spec(dependency) is not None, dependency


def test_torch_hub_load_local_features_only(repo_root: Path) -> None:
    model = torch.hub.load(
        str(repo_root), "wrn28_2_repfusion_cifar10", source="local", pretrained=False, features_only=True
    )
    maps = model(torch.randn(1, 3, 32, 32))
    assert [m.shape[1] for m in maps] == model.feature_info.channels() == [16, 32, 64, 128]


def test_torch_hub_load_forwards_kwargs_and_errors(repo_root: Path) -> None:
    model = torch.hub.load(str(repo_root), "resnet18_repfusion_cifar10", source="local", num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(PretrainedUnavailableError, match="cifar10_resnet18_hint.yaml"):
        torch.hub.load(str(repo_root), "resnet18_repfusion_cifar10", source="local", pretrained=True)
