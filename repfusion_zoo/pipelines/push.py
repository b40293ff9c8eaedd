"""Publishing a Hub-ready folder: the body of ``recipes/push_to_hub.py`` (its docstring is the command
line's help). The work is `repfusion_zoo.hub.push_to_hub`; here its keys and checks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from ..hub import push_to_hub
from ..config import format_help, load_config, opt, wants_help

__all__ = ["PushConfig", "push", "main"]


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
    folder = Path(cfg.folder).expanduser()
    if not cfg.folder or not cfg.hub_model_id:
        raise ConfigError("give --folder PATH and --hub_model_id org/name")
    if not ((folder / "model.safetensors").is_file() and (folder / "config.json").is_file()):
        raise ConfigError(f"{str(folder)!r} is not a Hub-ready folder (needs model.safetensors and config.json); "
                          "write one with recipes/distill.py, recipes/finetune.py or repfusion_zoo.save_pretrained")
    sha = push_to_hub(folder, cfg.hub_model_id, revision=cfg.revision or None, private=cfg.hub_private_repo,
                      commit_message=cfg.commit_message or None)
    return f"{cfg.hub_model_id}@{sha}"


def main(argv: Sequence[str] | None = None, *, doc: str = __doc__) -> int:
    """``recipes/push_to_hub.py``: ``--help`` (with the recipe's `doc`), or the push; prints ``org/name@sha``."""
    if wants_help(argv):
        print(format_help(PushConfig, "python recipes/push_to_hub.py", doc))
        return 0
    print(push(load_config(PushConfig, argv)), flush=True)
    return 0
