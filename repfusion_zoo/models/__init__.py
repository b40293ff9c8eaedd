"""Student architectures timm lacks. Importing this package registers them in timm.

Registered plain names (never a name timm already has; `register_new_model` checks):

* ``resnet18_cifar``, ``resnet50_cifar`` (cifar_resnet.py): timm's ResNet, 3x3 stride-1 stem, no max-pool
* ``wrn28_2``, ``wrn28_10`` (wide_resnet.py): Zagoruyko's WRN-28-k from timm's pre-activation blocks
* ``mobilenetv2_cifar`` (cifar_mobilenetv2.py): timm's MobileNetV2 with CIFAR strides
"""
from __future__ import annotations

from . import cifar_mobilenetv2, cifar_resnet, wide_resnet  # noqa: F401  (register on import)
from .registration import CIFAR10_MEAN, CIFAR10_STD, cifar_cfg, register_new_model

__all__ = ["register_new_model", "cifar_cfg", "CIFAR10_MEAN", "CIFAR10_STD", "cifar_resnet", "wide_resnet", "cifar_mobilenetv2"]
