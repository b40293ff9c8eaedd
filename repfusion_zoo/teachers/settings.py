"""`TeacherSettings`: which diffusion teacher a run reads and where in it, declared once (the distill,
cache_features and experiment recipes inherit these keys); `build_teacher` builds it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..config import opt
from ..errors import ConfigError
from .adm import tinyimagenet_class_map
from .latent import CONDITIONINGS
from .load import load_teacher

__all__ = ["TeacherSettings", "build_teacher", "class_map_of"]


@dataclass
class TeacherSettings:
    """The teacher of a run: a diffusers folder or Hub id (pixel-space UNet, latent UNet or DiT), its layer,
    and what a class-conditional or text-conditioned teacher is given."""

    teacher: str = opt("", "Hub id or local folder of the teacher (a diffusers pipeline or model folder); distill: empty = "
                           "train or reuse one with train_teacher.py")
    teacher_layer: str = opt("mid", "teacher layer: mid | mid_resnet2_conv2 | down.<i> | up.<i> (UNets; up = decoder) | blocks.<K> (DiT) "
                                    "(distill with teacher_type supervised: a feature index, '' = last map)")
    teacher_class_map: str = opt("", "class-conditional teachers: 'tinyimagenet' maps the dataset's WordNet-id classes to "
                                     "ImageNet ids", choices=["", "tinyimagenet"])
    teacher_conditioning: str = opt("auto", "a latent (Stable Diffusion) teacher's cross-attention input: auto = stored, "
                                            "else empty-prompt, else zeros", choices=CONDITIONINGS)


def class_map_of(settings: TeacherSettings, classes: Sequence[str]) -> torch.Tensor | None:
    """The teacher's ``class_map`` (dataset label -> model class id) for a dataset with ``classes``; None = none."""
    return tinyimagenet_class_map(list(classes)) if settings.teacher_class_map == "tinyimagenet" else None


def build_teacher(settings: TeacherSettings, *, image_size: int, in_chans: int, classes: Sequence[str] = (),
                  noise: bool = False) -> nn.Module:
    """The frozen teacher of ``settings`` (`load_teacher`), its input size and channels checked against
    the data's (``image_size``, ``in_chans``). ``classes``: the dataset's class names, which the
    ``tinyimagenet`` class map reads; ``noise``: a pixel-space UNet fed x_t instead of the clean image."""
    table = class_map_of(settings, classes)
    teacher = load_teacher(settings.teacher, layer=settings.teacher_layer, noise=noise, class_map=table,
                           image_size=image_size, conditioning=settings.teacher_conditioning)
    if tuple(teacher.sample_size) != (image_size, image_size) or teacher.in_channels != in_chans:
        raise ConfigError(
            f"teacher {settings.teacher!r} takes {teacher.in_channels}x{teacher.sample_size[0]}x{teacher.sample_size[1]} "
            f"images but the data is {in_chans}x{image_size}x{image_size}; set --image_size {teacher.sample_size[0]} "
            f"--in_chans {teacher.in_channels} or use a teacher trained at this size"
        )
    return teacher
