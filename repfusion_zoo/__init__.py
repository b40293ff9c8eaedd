"""repfusion-zoo: backbones distilled from diffusion models (RepFusion, ICCV 2023).

``import repfusion_zoo`` registers every zoo name in timm's registry, so that
``timm.create_model("resnet18_repfusion_celebahq")`` works after it.
"""
from __future__ import annotations

from typing import Any

from . import models  # noqa: F401  (registers the student architectures timm lacks)
from .zoo import create_model, list_models  # registers the zoo names

from .version import __version__  # noqa: E402  (one place: repfusion_zoo/version.py)

_HUB_EXPORTS = ("save_pretrained", "load_pretrained", "push_to_hub")

__all__ = ["create_model", "list_models", *_HUB_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    """Import the hub helpers on first use, keeping ``import repfusion_zoo`` light."""
    if name in _HUB_EXPORTS:
        from . import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'repfusion_zoo' has no attribute {name!r}")
