"""The file names of the one weight format (a Hub repo's files, as timm and huggingface_hub expect
them) and the reader of its ``config.json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["WEIGHTS_NAME", "CONFIG_NAME", "CARD_NAME", "PICKLE_SUFFIXES", "read_config"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
#: weight files that are pickles: never opened by any unpickler, refused with the way to convert them
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pth.tar", ".ckpt", ".pkl", ".pickle", ".tar")


def read_config(folder: str | Path) -> dict[str, Any]:
    """``folder/config.json`` as a dict."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} is missing: {str(folder)!r} is not a saved repfusion-zoo/timm folder.")
    return json.loads(path.read_text(encoding="utf-8"))
