"""Frozen feature teachers: diffusion UNets (encoder or decoder layers, the forward stopped there) and transformers (encoder-only), a feature cache in their place, and supervised CNNs.

- protocol.py: `Teacher`, what every part asks of a teacher (a cache asks `repfusion_zoo.cache.CacheableTeacher`)
- load.py: `load_teacher` (a folder or Hub id -> the teacher its files describe), `teacher_kind`
- settings.py: `TeacherSettings` (the teacher keys of every recipe, declared once) and `build_teacher(settings)`
- identity.py: `weights_sha256`, a teacher's name in a feature cache (the hash of its weight files)
- diffusion.py: `DiffusionTeacher` (a diffusers UNet2DModel run to a named layer); unet_files.py: `load_unet`
- latent.py: `LatentUNetTeacher` (VAE encoder + a UNet2DConditionModel's encoder half, fixed conditioning)
- transformer.py: `TransformerTeacher` (VAE encoder + a DiT's patch embedding and first K blocks)
- inputs.py: `InputChecks`, what every diffusion teacher checks of its input
- unet_layers.py: the named layers of both UNet teachers and `output_of` (the UNet's own forward, stopped at the layer)
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
from .latent import LatentUNetTeacher, save_conditioning
from .load import TEACHER_KINDS, load_teacher, teacher_kind
from .protocol import Teacher
from .identity import weights_sha256
from .settings import TeacherSettings, build_teacher, class_map_of
from .supervised import SupervisedTeacher
from .transformer import TransformerTeacher
from .unet_files import load_unet

__all__ = [
    "Teacher",
    "load_teacher",
    "TeacherSettings",
    "build_teacher",
    "class_map_of",
    "weights_sha256",
    "teacher_kind",
    "TEACHER_KINDS",
    "DiffusionTeacher",
    "LatentUNetTeacher",
    "TransformerTeacher",
    "save_conditioning",
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
