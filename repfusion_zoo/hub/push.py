"""Push a saved folder to the Hugging Face Hub and return the commit sha to pin in the zoo registry."""
from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from ..errors import ConfigError, UnsafeWeightsError
from .card import build_model_card
from .format import CARD_NAME, CONFIG_NAME, PICKLE_SUFFIXES, WEIGHTS_NAME, read_config
from .weights import check_safetensors_file

__all__ = ["push_to_hub", "check_folder"]


def check_folder(folder: str | Path) -> Path:
    """A folder ready to publish: the three files of the format, safetensors weights, no pickle."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{str(folder)!r} is not a folder; write one with repfusion_zoo.save_pretrained.")
    missing = [name for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"{str(folder)!r} lacks {missing}; write it with repfusion_zoo.save_pretrained.")
    pickles = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise UnsafeWeightsError(
            f"{str(folder)!r} holds pickle files {pickles}: only safetensors weights are published. Remove them."
        )
    check_safetensors_file(folder / WEIGHTS_NAME)
    return folder


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> str:
    """Upload ``folder`` (from `save_pretrained`) to model repo ``repo_id``; return the commit sha.

    Creates the repo if needed (``exist_ok``) and the branch ``revision`` if given. Prints the
    pinned id ``repo_id@sha`` to put in the zoo entry's ``hf_hub_id``.

    Args:
        folder: the saved folder.
        repo_id: ``"org/name"``.
        revision: the branch to commit to (default ``main``).
        private: create the repo private.
        commit_message: default ``"Upload <zoo name> (repfusion-zoo)"``.
        token, endpoint: passed to `huggingface_hub.HfApi` (default: the logged-in token, ``HF_ENDPOINT``).
    """
    folder = check_folder(folder)
    config = read_config(folder)
    name = config.get("repfusion", {}).get("name", folder.name)
    api = HfApi(endpoint=endpoint, token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    # the folder as saved, with this repo's id in config.json and in the card's snippet (the local
    # folder is left as it is). HfApi, not timm's push_to_hf_hub: that one re-saves from a model
    # object; here the folder is already the published format.
    config.setdefault("repfusion", {})["hub_repo"] = repo_id
    info = api.create_commit(
        repo_id=repo_id,
        revision=revision,
        commit_message=commit_message or f"Upload {name} (repfusion-zoo)",
        operations=[
            CommitOperationAdd(WEIGHTS_NAME, str(folder / WEIGHTS_NAME)),
            CommitOperationAdd(CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode()),
            CommitOperationAdd(CARD_NAME, build_model_card(config).encode()),
        ],
    )
    sha = info.oid
    print(f"pushed {name}: hf_hub_id='{repo_id}@{sha}'")
    return sha
