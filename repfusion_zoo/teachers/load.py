"""One loader for every diffusion teacher: a folder or Hub id -> the teacher its files describe.

- ``transformer/config.json`` (a DiT pipeline) or a bare DiT folder: `TransformerTeacher`;
- a ``UNet2DConditionModel`` (``unet/config.json`` of a Stable Diffusion pipeline): `LatentUNetTeacher`;
- a ``UNet2DModel`` (a DDPM pipeline, a bare UNet folder, ``google/ddpm-*``): `DiffusionTeacher`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .diffusion import DiffusionTeacher
from .latent import CONDITIONINGS, LatentUNetTeacher
from .transformer import TransformerTeacher
from .unet_files import teacher_root

__all__ = ["load_teacher", "teacher_kind", "TEACHER_KINDS"]

TEACHER_KINDS = ("unet", "latent-unet", "transformer")
_TRANSFORMERS = ("DiTTransformer2DModel", "Transformer2DModel")


def _class_name(config: Path) -> str | None:
    try:
        return json.loads(config.read_text()).get("_class_name") if config.is_file() else None
    except json.JSONDecodeError:
        return None


def teacher_kind(root: Path) -> str:
    """Which teacher the folder ``root`` holds (`TEACHER_KINDS`), from its components' config files."""
    if (root / "transformer" / "config.json").is_file() or _class_name(root / "config.json") in _TRANSFORMERS:
        return "transformer"
    if "UNet2DConditionModel" in (_class_name(root / "unet" / "config.json"), _class_name(root / "config.json")):
        return "latent-unet"
    return "unet"


def load_teacher(source: str | Path | nn.Module, *, layer: str = "mid", noise: bool = False,
                 class_map: torch.Tensor | Mapping[int, int] | None = None, image_size: int | None = None,
                 conditioning: str = "auto") -> nn.Module:
    """The frozen teacher of ``source`` (a folder, a Hub id ``org/name[@rev]``, or a diffusers
    ``UNet2DModel``), run to ``layer``. ``noise`` and ``class_map`` are for pixel-space UNets;
    ``image_size`` and ``conditioning`` (`CONDITIONINGS`) for latent and transformer teachers."""
    if isinstance(source, nn.Module):
        return DiffusionTeacher(source, layer=layer, noise=noise, class_map=class_map)
    root = teacher_root(source)
    kind = teacher_kind(root)
    if kind == "unet":
        return DiffusionTeacher(root, layer=layer, noise=noise, class_map=class_map)
    if noise or class_map is not None:
        raise ConfigError(f"teacher {str(source)!r} is a {kind} teacher: it takes the clean image and no class map "
                          "(teacher_noise and teacher_class_map are for pixel-space UNets)")
    if kind == "transformer":
        return TransformerTeacher.from_folder(root, layer=layer, image_size=image_size, source=str(source))
    if conditioning not in CONDITIONINGS:
        raise ConfigError(f"conditioning {conditioning!r} is not one of {list(CONDITIONINGS)}")
    return LatentUNetTeacher.from_folder(root, layer=layer, image_size=image_size, conditioning=conditioning,
                                         source=str(source))

