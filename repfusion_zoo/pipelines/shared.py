"""What more than one recipe body needs: where the recipes' configs are, the architecture a saved
backbone records, and the end of a recipe's processes."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from accelerate import PartialState

__all__ = ["RECIPE_CONFIGS", "end_processes", "main_print", "architecture_of"]

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
