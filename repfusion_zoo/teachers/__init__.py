"""Frozen feature teachers: diffusion UNets (encoder-only), a feature cache in their place, and supervised CNNs.

- diffusion.py: `DiffusionTeacher` (a diffusers UNet2DModel run to a named layer); unet_files.py: `load_unet`
- cached.py: `CachedTeacher` (features read from a `repfusion_zoo.cache` folder), `check_cache_for_run`
- supervised.py: `SupervisedTeacher` (a CNN's feature map, the supervised-KD rows)
- adm.py: guided-diffusion ADM checkpoints -> UNet2DModel; the Tiny-ImageNet -> ImageNet class map

Every teacher has ``feature(images, t, *, labels, index, flip)`` (what RepFusion distils) and
``to_input(images01)`` (what it takes from [0, 1] dataset images).
"""
from __future__ import annotations

from .adm import ADM_IMAGENET64, ADMConfig, adm_unet_config, convert_adm_checkpoint, imagenet_wnids, tinyimagenet_class_map
from .cached import CachedTeacher, check_cache_for_run
from .diffusion import DiffusionTeacher
from .supervised import SupervisedTeacher
from .unet_files import load_unet

__all__ = [
    "DiffusionTeacher",
    "load_unet",
    "CachedTeacher",
    "check_cache_for_run",
    "SupervisedTeacher",
    "convert_adm_checkpoint",
    "adm_unet_config",
    "ADMConfig",
    "ADM_IMAGENET64",
    "tinyimagenet_class_map",
    "imagenet_wnids",
]
