"""Building a zoo entry, with its weight where one is asked for (the body of every zoo entrypoint).

With ``pretrained=True`` and nothing to load (no ``hf_hub_id``, file or state dict) it fails at
once, before any network use, naming the recipe that makes the weight and the command that
fetches the recipes for a pip-only install. Every key of a weight is checked (timm loads
non-strictly when ``num_classes`` differs, so the head is reset after a strict load). Hub loads go
through `guarded_pretrained_load` (fast, clear failure without network).
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn
from huggingface_hub import hf_hub_download
from timm.models import model_entrypoint, resolve_pretrained_cfg
from timm.models._pretrained import PretrainedCfg

from ..errors import PretrainedUnavailableError, UnknownModelError, UnsafeWeightsError, WeightsMismatchError
from ..hub import WEIGHTS_NAME, guarded_pretrained_load, split_hub_id
from .entry import ZooEntry, recipes_source

__all__ = ["create_entry_model", "unknown_model_error"]


def _unpublished_error(entry: ZooEntry) -> PretrainedUnavailableError:
    return PretrainedUnavailableError(
        f"No weight is published yet for {entry.name!r} (its pretrained cfg has no hf_hub_id). "
        f"Produce it with its recipe. {recipes_source()}\n"
        f"There, with the data where the command says (or point its data flag elsewhere; the teacher "
        f"{entry.teacher} is the one its config names):\n"
        f"    {entry.recipe}\n"
        f"then load the weight you made:\n"
        f"  - a file: create_model({entry.name!r}, pretrained=True, "
        f"pretrained_cfg_overlay=dict(file='/path/to/{WEIGHTS_NAME}'))\n"
        f"  - a folder holding config.json + {WEIGHTS_NAME} (repfusion_zoo.save_pretrained writes one): "
        f"create_model('/path/to/folder', pretrained=True) or repfusion_zoo.load_pretrained('/path/to/folder')\n"
        f"or use pretrained=False for random initial weights."
    )


def _check_local_file(name: str, cfg: PretrainedCfg) -> None:
    """A ``file`` weight (not a ``local-dir`` folder) must be an existing ``.safetensors`` file."""
    if not cfg.file or cfg.source == "local-dir":
        return
    path = Path(cfg.file)
    if path.suffix != ".safetensors":
        raise UnsafeWeightsError(
            f"Weight file {str(path)!r} offered for {name!r} is not safetensors; only .safetensors files are "
            f"loaded (no pickle). Convert it with safetensors.torch.save_file(state_dict, 'model.safetensors')."
        )
    if not path.is_file():
        raise PretrainedUnavailableError(
            f"Weight file {str(path)!r} offered for {name!r} does not exist. Pass the path of a .safetensors file "
            f"in pretrained_cfg_overlay=dict(file=...)."
        )


def _build_strict(build: Any, cfg: PretrainedCfg, **kwargs: Any) -> nn.Module:
    """Build with weights, every key checked: timm loads non-strictly when ``num_classes`` differs
    from the weight's, so load at the weight's ``num_classes`` (strict) and then reset the head."""
    wanted = kwargs.get("num_classes")
    if wanted is None or wanted == cfg.num_classes or kwargs.get("features_only"):
        return build(pretrained=True, pretrained_cfg=cfg, **kwargs)
    model = build(pretrained=True, pretrained_cfg=cfg, **{**kwargs, "num_classes": cfg.num_classes})
    model.reset_classifier(wanted)
    model.pretrained_cfg = {**model.pretrained_cfg, "num_classes": wanted}
    return model


def create_entry_model(
    entry: ZooEntry,
    pretrained: bool = False,
    pretrained_cfg: str | dict[str, Any] | PretrainedCfg | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build zoo entry ``entry`` (a timm entrypoint's body): its plain architecture, with the zoo cfg
    (plus any overlay) that timm registered under its name.

    With ``pretrained=True`` and nothing to load (no hf_hub_id, file or state_dict), fails at
    once, before any network use. Hub loads go through `guarded_pretrained_load` (fast, clear
    failure without network).
    """
    name = entry.name
    cfg = resolve_pretrained_cfg(name, pretrained_cfg, pretrained_cfg_overlay)
    cfg = dataclasses.replace(cfg, architecture=entry.architecture, tag=None)
    build = model_entrypoint(entry.architecture)
    if not pretrained:
        return build(pretrained=False, pretrained_cfg=cfg, **kwargs)
    if not cfg.has_weights and cfg.state_dict is None:
        raise _unpublished_error(entry)
    _check_local_file(name, cfg)
    from_hub = cfg.state_dict is None and not cfg.file and not cfg.url and cfg.source != "local-dir"
    source = f"file {cfg.file!r}" if cfg.file else f"hf-hub:{cfg.hf_hub_id}" if from_hub else "a state_dict"

    def load(local_files_only: bool) -> nn.Module:
        weights = cfg
        if from_hub:  # the file through huggingface_hub (local_files_only per call), then timm loads that file
            weights = dataclasses.replace(cfg, file=_hub_file(cfg, kwargs.get("cache_dir"), local_files_only))
        try:
            return _build_strict(build, weights, **kwargs)
        except RuntimeError as error:
            if "Error(s) in loading state_dict" not in str(error):
                raise
            raise WeightsMismatchError(
                f"The weight for {name!r} from {source} does not fit {entry.architecture}: {error}"
            ) from error

    return guarded_pretrained_load(
        name,
        cfg.hf_hub_id if from_hub else None,
        load,
        filename=cfg.hf_hub_filename or WEIGHTS_NAME,
        cache_dir=kwargs.get("cache_dir"),
    )


def _hub_file(cfg: PretrainedCfg, cache_dir: str | None, local_files_only: bool) -> str:
    """The weight file of ``cfg.hf_hub_id`` (``org/repo@rev``) from the Hub or its cache."""
    repo_id, revision = split_hub_id(cfg.hf_hub_id)
    return hf_hub_download(repo_id, cfg.hf_hub_filename or WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                           local_files_only=local_files_only)


def unknown_model_error(name: str, zoo_names: list[str]) -> UnknownModelError:
    """The error for a name that is neither a zoo nor a timm name: the closest names it may mean."""
    close = difflib.get_close_matches(name, zoo_names, n=3, cutoff=0.4)
    if not close:
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownModelError(
        f"Unknown model {name!r}: not a repfusion zoo name, a timm name, 'hf-hub:org/repo' or a folder "
        f"holding config.json.{hint} Zoo names: repfusion_zoo.list_models(); timm names: timm.list_models()."
    )
