"""Weights I/O: the one weight format, ``model.safetensors`` + ``config.json`` (timm's) + ``README.md``
(model card), and the Hub.

* format.py: the file names, `read_config`
* weights.py: safetensors in (`load_safetensors`, `check_safetensors_file`), `load_state_dict_strict`
* save.py: `save_folder` (behind `repfusion_zoo.save_pretrained`), `update_card_metrics`, `update_card_fields`
* load.py: `load_folder` / `load_file` / `load_hub_repo` (behind `repfusion_zoo.create_model`)
* card.py: `build_model_card`; push.py: `push_to_hub`
* network.py: `guarded_pretrained_load` (a fast `NoNetworkError` naming model, repo@rev, ways out)

The zoo's names are not known here: the zoo (`repfusion_zoo.zoo`) sits above and hands this
layer its entries' metadata.
"""
from __future__ import annotations

from .card import build_model_card
from .format import CARD_NAME, CONFIG_NAME, PICKLE_SUFFIXES, WEIGHTS_NAME, read_config
from .load import load_file, load_folder, load_hub_repo
from .network import guarded_pretrained_load, split_hub_id
from .push import check_folder, push_to_hub
from .save import save_folder, update_card_fields, update_card_metrics
from .weights import check_safetensors_file, load_safetensors, load_state_dict_strict, mismatch_error

__all__ = [
    "WEIGHTS_NAME", "CONFIG_NAME", "CARD_NAME", "PICKLE_SUFFIXES", "read_config", "build_model_card",
    "load_file", "load_folder", "load_hub_repo", "guarded_pretrained_load", "split_hub_id", "check_folder",
    "push_to_hub", "save_folder", "update_card_fields", "update_card_metrics", "check_safetensors_file", "load_safetensors",
    "load_state_dict_strict", "mismatch_error",
]
