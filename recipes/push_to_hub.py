#!/usr/bin/env python
"""Publish a Hub-ready folder (model.safetensors + config.json + README.md) with huggingface_hub.

    python recipes/push_to_hub.py --folder outputs/offline_default/backbone --hub_model_id org/resnet18_repfusion_digits
    python recipes/push_to_hub.py --folder F --hub_model_id org/name --revision main --hub_private_repo true

(`--repo_id` and `--private` are aliases of `--hub_model_id` and `--hub_private_repo`, the names
distill.py, finetune.py and diffusers' example scripts use.)

Prints `org/name@<commit sha>`: put it into the zoo entry's `hf_hub_id` to pin the weight.
The Hub endpoint is huggingface_hub's (`HF_ENDPOINT`); the token is huggingface_hub's (`HF_TOKEN`
or `huggingface-cli login`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from repfusion_zoo.errors import ConfigError
from repfusion_zoo.training.config import format_help, load_config, opt, wants_help


@dataclass
class PushConfig:
    """Keys of recipes/push_to_hub.py."""

    folder: str = opt("", "the Hub-ready folder to publish")
    hub_model_id: str = opt("", "org/name on the Hub")
    revision: str = opt("", "branch to push to (empty = the default branch)")
    hub_private_repo: bool = opt(False, "create the repo private")
    commit_message: str = opt("", "commit message (empty = a default)")


def push(cfg: PushConfig) -> str:
    """Push `cfg.folder` to `cfg.hub_model_id`; returns `hub_model_id@sha`."""
    from repfusion_zoo.hub import push_to_hub

    folder = Path(cfg.folder).expanduser()
    if not cfg.folder or not cfg.hub_model_id:
        raise ConfigError("give --folder PATH and --hub_model_id org/name")
    if not ((folder / "model.safetensors").is_file() and (folder / "config.json").is_file()):
        raise ConfigError(f"{str(folder)!r} is not a Hub-ready folder (needs model.safetensors and config.json); "
                          "write one with recipes/distill.py, recipes/finetune.py or repfusion_zoo.save_pretrained")
    sha = push_to_hub(folder, cfg.hub_model_id, revision=cfg.revision or None, private=cfg.hub_private_repo,
                      commit_message=cfg.commit_message or None)
    return f"{cfg.hub_model_id}@{sha}"


def main(argv: Sequence[str] | None = None) -> int:
    if wants_help(argv):
        print(format_help(PushConfig, "python recipes/push_to_hub.py", __doc__))
        return 0
    print(push(load_config(PushConfig, argv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
