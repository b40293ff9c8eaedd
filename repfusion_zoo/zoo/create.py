"""The one public loader, `create_model`, and the save that writes what it loads.

`create_model(source, pretrained=False, **timm_kwargs)` takes every source: a zoo name, any timm
name, ``hf-hub:org/repo[@revision]``, a folder holding ``config.json`` (+ ``model.safetensors``)
or a single ``.safetensors`` file. Names go to timm (the zoo's are timm entrypoints, see
`registry`); folders, files and Hub repos go to the weights I/O of `repfusion_zoo.hub`.
`load_pretrained(source, **kwargs)` is ``create_model(source, pretrained=True, **kwargs)``, kept as
the name of the weights' side (``save_pretrained`` / ``load_pretrained``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import timm
import torch.nn as nn
from huggingface_hub import hf_hub_download

from ..atomic import describe_leftovers
from ..errors import ConfigError, ModelSourceNotFoundError, UnknownModelError
from ..hub import (CONFIG_NAME, PICKLE_SUFFIXES, guarded_pretrained_load, load_file, load_folder, load_hub_repo,
                   save_folder, split_hub_id)
from .pretrained import unknown_model_error
from .registry import ZOO, zoo_info

__all__ = ["create_model", "load_pretrained", "save_pretrained"]


def _looks_like_path(source: str) -> bool:
    return (os.sep in source or source.startswith(("local-dir:", ".", "~"))
            or source.lower().endswith((".safetensors", *PICKLE_SUFFIXES)))


def _local_path(source: str, given_a_path: bool) -> Path | None:
    """``source`` as an existing folder or file (``local-dir:`` prefix optional), or None.

    A model name wins over a same-named folder in the working directory; nothing is changed on
    disk (a load never heals a killed save: the writers do, or ``repfusion-zoo recover``).
    """
    path = Path(source.removeprefix("local-dir:")).expanduser()
    if not (given_a_path or _looks_like_path(source)) and timm.is_model(source.split(".", 1)[0]):
        return None
    return path if path.exists() else None


def _missing_source_error(source: str) -> ModelSourceNotFoundError:
    path = Path(source.removeprefix("local-dir:")).expanduser()
    note = describe_leftovers(path)
    return ModelSourceNotFoundError(
        f"No folder or file {str(path)!r}: it does not exist (a model source is a zoo or timm name, "
        f"'hf-hub:org/repo[@revision]', a folder holding config.json + model.safetensors, or a .safetensors "
        f"file).{' ' + note if note else ''} Zoo names: repfusion_zoo.list_models()."
    )


def create_model(name: str | os.PathLike[str], pretrained: bool = False, **timm_kwargs: Any) -> nn.Module:
    """Create a backbone by name, exactly like ``timm.create_model``: the one loader of the package.

    Args:
        name: a zoo name (`list_models()`), any timm name (``resnet18.a1_in1k``),
            ``hf-hub:org/repo[@revision]``, a local folder holding ``config.json``
            (+ ``model.safetensors``), or a single ``.safetensors`` file (it always brings its weights).
        pretrained: load the weight. For a zoo entry with no published weight this fails at
            once (`PretrainedUnavailableError`, no network use) and names the recipe command.
            For a folder or ``hf-hub:`` it loads ``model.safetensors`` (safetensors only, strict
            keys); without it the architecture and cfg come from ``config.json``.
        **timm_kwargs: anything ``timm.create_model`` takes (num_classes, features_only,
            out_indices, in_chans, pretrained_cfg_overlay=dict(file=...), cache_dir, ...), and
            ``architecture=`` for weights that do not say it (a bare ``.safetensors`` file).

    Raises:
        UnknownModelError: ``name`` is none of the above; suggests the closest zoo names
        (`ModelSourceNotFoundError`, also a `FileNotFoundError`, for a path that does not exist).
        UnsafeWeightsError: a pickle offered as weights. WeightsMismatchError: keys or shapes
        differ. NoNetworkError: a Hub source without network and not cached.
    """
    given_a_path = isinstance(name, os.PathLike)
    source = os.fspath(name)
    architecture = timm_kwargs.pop("architecture", None)
    if source.startswith(("hf-hub:", "hf_hub:")):
        source = "hf-hub:" + source.split(":", 1)[1]
        if pretrained:
            return load_hub_repo(source, architecture, **timm_kwargs)
        return _create_from_hub_config(source, **timm_kwargs)
    path = _local_path(source, given_a_path)
    if path is not None and path.is_file():
        return load_file(path, architecture, **timm_kwargs)
    if path is not None:
        if pretrained:
            return load_folder(path, architecture, **timm_kwargs)
        if not (path / CONFIG_NAME).is_file():
            raise UnknownModelError(
                f"Folder {str(path)!r} holds no config.json; save a model there with "
                f"repfusion_zoo.save_pretrained(model, folder, architecture=...) or pass a model name."
            )
        return timm.create_model(f"local-dir:{path}", pretrained=False, **timm_kwargs)
    if given_a_path or _looks_like_path(source):
        raise _missing_source_error(source)
    if not timm.is_model(source.split(".", 1)[0]):
        raise unknown_model_error(source, list(ZOO))
    return timm.create_model(source, pretrained=pretrained, **timm_kwargs)


def load_pretrained(source: str | os.PathLike[str], **kwargs: Any) -> nn.Module:
    """A model with weights from ``source``: ``create_model(source, pretrained=True, **kwargs)``
    (a zoo or timm name, ``hf-hub:org/repo[@revision]``, a folder, or a ``.safetensors`` file with
    ``architecture=`` where it carries no metadata)."""
    return create_model(source, pretrained=True, **kwargs)


def _create_from_hub_config(name: str, **timm_kwargs: Any) -> nn.Module:
    """``hf-hub:org/repo[@rev]`` without weights: the architecture and cfg of its ``config.json``."""
    repo_id, revision = split_hub_id(name)

    def build(local_files_only: bool) -> nn.Module:
        config = hf_hub_download(repo_id, CONFIG_NAME, revision=revision, cache_dir=timm_kwargs.get("cache_dir"),
                                 local_files_only=local_files_only)
        return timm.create_model(f"local-dir:{Path(config).parent}", pretrained=False, **timm_kwargs)

    return guarded_pretrained_load(name, name.removeprefix("hf-hub:"), build, filename=CONFIG_NAME,
                                   cache_dir=timm_kwargs.get("cache_dir"))


def save_pretrained(
    model: nn.Module,
    folder: str | Path,
    *,
    architecture: str | None = None,
    model_name: str | None = None,
    metrics: dict[str, float] | None = None,
    card: dict[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` as a Hub-ready folder (``model.safetensors``, ``config.json``, ``README.md``).

    Args:
        model: a timm model (e.g. from ``repfusion_zoo.create_model``).
        folder: the target folder, written atomically (a kill leaves the old or the new folder).
        architecture: the plain timm architecture of the weights (``"resnet18"``, ``"resnet18_cifar"``);
            default: the model's own (``model.pretrained_cfg["architecture"]``, which every timm model has).
        model_name: the zoo name (``"resnet18_repfusion_cifar10"``); its zoo metadata fills the card.
        metrics: ``{metric: value}`` measured for ``card["task"]`` (default classification) on
            ``card["dataset"]`` (default: the zoo entry's dataset).
        card: extra card fields: ``teacher``, ``dataset``, ``license``, ``paper``, ``recipe``,
            ``description``, ``tags``, ``task``, ``origin`` (how the weights were made: ``random-init``,
            ``distilled``, ``fine-tuned``, ``trained``; the card says "not recorded" without it,
            never guesses), ``start`` (what a fine-tune started from), and ``input_size`` ``(C, H, W)`` where the weights
            were trained at another size than the zoo entry's (it goes into ``pretrained_cfg``).
            A ``dataset`` that is a local path is published as its folder name only; a Hub dataset
            (``hf:org/name``) becomes the card's ``datasets`` entry.
        label_names: the class names of the classifier (timm's ``label_names`` in ``config.json``).

    Returns:
        the folder path.
    """
    return save_folder(model, folder, architecture=architecture or model_architecture(model), model_name=model_name,
                       metrics=metrics, card=card, label_names=label_names,
                       zoo_cfg=zoo_info(model_name) if model_name in ZOO else {})


def model_architecture(model: nn.Module) -> str:
    """The plain timm architecture a model was built as (its ``pretrained_cfg["architecture"]``; a zoo name
    gives the architecture its weights belong to); `ConfigError` for a model timm did not build."""
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not architecture:
        raise ConfigError(f"{type(model).__name__} carries no pretrained_cfg['architecture'] (it was not built by timm); "
                          "pass architecture='<timm name>' to save_pretrained")
    return str(architecture)
