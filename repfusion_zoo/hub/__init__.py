"""The one weight format: ``model.safetensors`` + ``config.json`` (timm's) + ``README.md`` (model card).

* `save_pretrained` / `load_pretrained` / `load_state_dict_strict` / `update_card_metrics` /
  `update_card_fields` (folder.py)
* `atomic_folder` / `replace_text` / `recover`: atomic writes that heal after a kill (atomic.py)
* `build_model_card` (card.py), `push_to_hub` (push.py)
* `guarded_pretrained_load` and `NoNetworkError` handling (network.py)
* ``repfusion-zoo prefetch NAME...`` (prefetch.py)

Names are imported on first use, so ``import repfusion_zoo.hub.network`` stays light and free of
import cycles with the zoo.
"""
from __future__ import annotations

import importlib
from typing import Any

# the file names of the format (the Hub repo's files, as timm and huggingface_hub expect them)
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"

_EXPORTS: dict[str, str] = {
    "save_pretrained": "folder",
    "load_pretrained": "folder",
    "load_state_dict_strict": "folder",
    "load_safetensors": "folder",
    "update_card_metrics": "folder",
    "update_card_fields": "folder",
    "build_model_card": "card",
    "push_to_hub": "push",
    "guarded_pretrained_load": "network",
    "prefetch": "prefetch",
    "check_safetensors_file": "folder",
    "atomic_folder": "atomic",
    "recover": "atomic",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
