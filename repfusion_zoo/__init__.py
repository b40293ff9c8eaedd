"""repfusion-zoo: backbones distilled from diffusion models (RepFusion, ICCV 2023).

``import repfusion_zoo`` registers every zoo name in timm's registry, so that
``timm.create_model("resnet18_repfusion_celebahq")`` works after it.
"""
from __future__ import annotations

from . import models  # noqa: F401  (registers the student architectures timm lacks)
from .hub import push_to_hub
from .version import __version__
from .zoo import create_model, list_models, load_pretrained, save_pretrained  # registers the zoo names

__all__ = ["create_model", "list_models", "save_pretrained", "load_pretrained", "push_to_hub", "__version__"]
