"""torch.hub entrypoints: one per repfusion zoo name, nothing else public.

    torch.hub.list("<owner>/<repo>")
    model = torch.hub.load("<owner>/<repo>", "resnet18_repfusion_celebahq", pretrained=True)
    feats = torch.hub.load("<owner>/<repo>", "resnet18_repfusion_cifar10", features_only=True)

Every keyword goes to `repfusion_zoo.create_model` (i.e. ``timm.create_model``): num_classes,
features_only, out_indices, in_chans, pretrained_cfg_overlay=dict(file=...), cache_dir, ...
torch.hub puts only the repo root on sys.path; the package sits at the root (flat layout).
"""
from __future__ import annotations

from typing import Any as _Any
from typing import Callable as _Callable

import torch.nn as _nn

from repfusion_zoo import zoo as _zoo

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


for _name in _zoo.list_models():
    globals()[_name] = _entrypoint(_name)
del _name
