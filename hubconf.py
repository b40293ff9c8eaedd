"""torch.hub entrypoints: one per repfusion zoo name and one per weight shipped in the package,
nothing else public.

    torch.hub.list("<owner>/<repo>")
    model = torch.hub.load("<owner>/<repo>", "resnet18_repfusion_celebahq", pretrained=True)
    feats = torch.hub.load("<owner>/<repo>", "resnet18_repfusion_cifar10", features_only=True)
    clf = torch.hub.load("<owner>/<repo>", "resnet18_cifar_025.repfusion_ddpm32long_cifar10_10shot", pretrained=True)

A shipped weight's entrypoint has its timm name, ``<architecture>.<tag>`` (torch.hub looks an
entrypoint up by name, so the dot is kept: one name in timm, repfusion_zoo and torch.hub).

Every keyword goes to `repfusion_zoo.create_model` (i.e. ``timm.create_model``): num_classes,
features_only, out_indices, in_chans, pretrained_cfg_overlay=dict(file=...), cache_dir, ...
torch.hub puts only the repo root on sys.path; the package sits at the root (flat layout).
"""
from __future__ import annotations

from typing import Any as _Any
from typing import Callable as _Callable

import torch.nn as _nn

from repfusion_zoo import zoo as _zoo
from repfusion_zoo.weights import SHIPPED as _SHIPPED

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]


def _entrypoint(name: str) -> _Callable[..., _nn.Module]:
    entry = _zoo.ZOO[name]

    def create(pretrained: bool = False, **kwargs: _Any) -> _nn.Module:
        return _zoo.create_model(name, pretrained=pretrained, **kwargs)

    create.__name__ = create.__qualname__ = name
    weight = (
        f"the published weight {entry.hf_hub_id}" if entry.hf_hub_id
        else f"the weight (none is published yet: produce it with `{entry.recipe}`)"
    )
    create.__doc__ = (
        f"{entry.architecture} backbone distilled by RepFusion (arXiv:2308.10916) from {entry.teacher} "
        f"on {entry.dataset}; input {entry.input_size[1]}x{entry.input_size[2]}, license {entry.license}.\n\n"
        f"Args:\n"
        f"    pretrained: load {weight}.\n"
        f"    **kwargs: passed to repfusion_zoo.create_model / timm.create_model (num_classes, "
        f"features_only, out_indices, pretrained_cfg_overlay=dict(file=...), ...).\n"
    )
    return create


def _shipped_entrypoint(name: str) -> _Callable[..., _nn.Module]:
    def create(pretrained: bool = False, **kwargs: _Any) -> _nn.Module:
        return _zoo.create_model(name, pretrained=pretrained, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__doc__ = (
        f"{_SHIPPED[name]['description']} Shipped inside the package: loads with no network.\n\n"
        f"Args:\n"
        f"    pretrained: load the shipped weight (MODEL_CARD.md has its metrics and the command that made it).\n"
        f"    **kwargs: passed to repfusion_zoo.create_model / timm.create_model.\n"
    )
    return create


for _name in _zoo.list_models():
    globals()[_name] = _entrypoint(_name)
for _name in _SHIPPED:
    globals()[_name] = _shipped_entrypoint(_name)
del _name
