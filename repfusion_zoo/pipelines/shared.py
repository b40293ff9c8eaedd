"""What more than one recipe body needs: where the recipes' configs are, the teacher a run names,
the architecture a saved backbone records, and the end of a recipe's processes."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from accelerate import PartialState
from torch import nn

from ..errors import ConfigError
from ..teachers import load_teacher, tinyimagenet_class_map

__all__ = ["RECIPE_CONFIGS", "end_processes", "main_print", "architecture_of", "diffusion_teacher"]

#: ``recipes/configs`` of a source checkout or an unpacked source distribution (beside the package):
#: the recipes' default files and the teacher configs distillation trains from. Each recipe script
#: passes its own folder, so an installed package runs the recipes of the folder they sit in.
RECIPE_CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "configs"


def end_processes() -> None:
    """The end of a recipe's program: its process group goes (a no-op for one process)."""
    PartialState().destroy_process_group()


def main_print(*args: Any) -> None:
    """Print on the main process only (before an Accelerator exists: RANK from the launcher)."""
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(*args, flush=True)


def architecture_of(backbone: Any, source: str) -> str:
    """The plain architecture name to record in config.json (timm's `pretrained_cfg['architecture']`)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    if cfg.get("architecture"):
        return str(cfg["architecture"])
    folder = Path(source).expanduser()
    if (folder / "config.json").is_file():
        return str(json.loads((folder / "config.json").read_text()).get("architecture", source))
    return source


def diffusion_teacher(source: str, *, layer: str, image_size: int, in_chans: int, noise: bool = False,
                      class_map: str = "", classes: Sequence[str] = (), conditioning: str = "auto") -> nn.Module:
    """The diffusion teacher of ``source`` (Hub id or folder: a pixel-space UNet, a latent UNet or a
    DiT, `repfusion_zoo.teachers.load_teacher`), its input size and channels checked against the
    data's. ``class_map``: ``"tinyimagenet"`` maps the dataset's WordNet-id ``classes`` to ImageNet
    class ids (class-conditional UNets); ``conditioning``: a latent UNet's cross-attention input."""
    table = tinyimagenet_class_map(list(classes)) if class_map == "tinyimagenet" else None
    teacher = load_teacher(source, layer=layer, noise=noise, class_map=table, image_size=image_size,
                           conditioning=conditioning)
    if tuple(teacher.sample_size) != (image_size, image_size) or teacher.in_channels != in_chans:
        raise ConfigError(
            f"teacher {source!r} takes {teacher.in_channels}x{teacher.sample_size[0]}x{teacher.sample_size[1]} images "
            f"but the data is {in_chans}x{image_size}x{image_size}; set --image_size "
            f"{teacher.sample_size[0]} --in_chans {teacher.in_channels} or use a teacher trained at this size"
        )
    return teacher
