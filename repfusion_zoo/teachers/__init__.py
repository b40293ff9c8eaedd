"""Frozen feature teachers: diffusion UNets (encoder-only) and supervised CNNs."""
from __future__ import annotations

from typing import Any

from .diffusion import DiffusionTeacher, load_unet

__all__ = [
    "DiffusionTeacher",
    "load_unet",
    "SupervisedTeacher",
    "convert_adm_checkpoint",
    "adm_unet_config",
    "ADMConfig",
    "ADM_IMAGENET64",
    "tinyimagenet_class_map",
    "imagenet_wnids",
]

_LAZY = {
    "SupervisedTeacher": ".supervised",
    "convert_adm_checkpoint": ".adm",
    "adm_unet_config": ".adm",
    "ADMConfig": ".adm",
    "ADM_IMAGENET64": ".adm",
    "tinyimagenet_class_map": ".adm",
    "imagenet_wnids": ".adm",
}


def __getattr__(name: str) -> Any:
    """Import the ADM converter and the supervised teacher on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
