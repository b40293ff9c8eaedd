"""The weights shipped inside the package (package data: they load with no network and no Hub cache).

Each is a timm pretrained tag of one of the package's architectures, ``<architecture>.<tag>``, as
timm names its own (``resnet18.a1_in1k``): `shipped_cfgs` gives the architecture's `default_cfgs`
entries, whose ``file`` is this folder's copy, found through `importlib.resources`. So after
``import repfusion_zoo`` the name works in `repfusion_zoo.create_model`, `timm.create_model`,
``timm.list_models(pretrained=True)`` and ``torch.hub.load(..., source="local")``.

One folder per name here: ``model.safetensors``, ``config.json`` and ``README.md`` (its Hub card: the
command, teacher and its sha256, seed, data and the measured metrics). The names say width
(``resnet18_cifar_025``: the CIFAR ResNet-18 at a quarter of its channels), teacher
(``ddpm32long``: ``teachers/cifar10-ddpm32-long``, a 32 px DDPM trained here on CIFAR-10, not
google/ddpm-cifar10-32) and data; MODEL_CARD.md has the rows and the comparison with scratch.
"""
from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["SHIPPED", "shipped_file", "shipped_cfgs", "WEIGHT_FILE"]

WEIGHT_FILE = "model.safetensors"

_TEACHER = "teachers/cifar10-ddpm32-long (32 px DDPM trained by this project on CIFAR-10)"
_NOTES = ("Distilled on CIFAR-10 (train split) with the project's own CPU teacher: a small-scale weight, "
          "not the paper's google/ddpm-cifar10-32 student. MODEL_CARD.md has its metrics and command.",)

#: timm name -> what its cfg says beyond the architecture's (the first of an architecture is its default tag)
SHIPPED: dict[str, dict[str, Any]] = {
    "resnet18_cifar_025.repfusion_ddpm32long_cifar10": dict(
        num_classes=0,
        description=f"RepFusion backbone (no classifier), distilled at t = 300 from {_TEACHER}; the best seed on "
                    f"validation at 500 labels a class.",
    ),
    "resnet18_cifar_025.repfusion_ddpm32long_cifar10_10shot": dict(
        num_classes=10,
        description=f"A RepFusion backbone distilled at t = 300 from {_TEACHER} with relational KD for 16 epochs (the "
                    f"best arm on validation at 10 labels a class; seed 1), fine-tuned as a CIFAR-10 classifier on 10 "
                    f"labelled images per class.",
    ),
    "resnet18_cifar_025.repfusion_ddpm32long_cifar10_500shot": dict(
        num_classes=10,
        description=f"The shipped RepFusion backbone, distilled at t = 300 from {_TEACHER}, fine-tuned as a CIFAR-10 "
                    f"classifier on 500 labelled images per class (10 % of the train split).",
    ),
}


def shipped_file(name: str) -> str:
    """The path of shipped weight ``name`` (``<architecture>.<tag>``) inside the installed package."""
    return str(resources.files(__name__) / name / WEIGHT_FILE)


def shipped_cfgs(architecture: str) -> dict[str, dict[str, Any]]:
    """The `default_cfgs` entries (timm name -> cfg fields) of ``architecture``'s shipped weights."""
    return {name: dict(cfg, file=shipped_file(name), notes=_NOTES) for name, cfg in SHIPPED.items()
            if name.split(".", 1)[0] == architecture}
