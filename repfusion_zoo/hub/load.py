"""Reading the one weight format back into a timm model: a saved folder, one ``.safetensors`` file or
a Hub repo. The public loader is `repfusion_zoo.create_model` (and its alias `load_pretrained`),
which hands sources that are not names to the functions here.

timm's semantics hold (a ``num_classes`` other than the saved one drops the classifier,
``features_only``, ``in_chans`` adaptation); any other mismatch is a `WeightsMismatchError`, and a
pickle offered as weights an `UnsafeWeightsError`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub import snapshot_download
from torch import nn

from .. import models  # noqa: F401  (registers the architectures timm lacks, which saved folders may name)
from ..atomic import describe_leftovers
from ..errors import ConfigError, UnknownModelError, UnsafeWeightsError
from .format import CONFIG_NAME, PICKLE_SUFFIXES, WEIGHTS_NAME, read_config
from .network import guarded_pretrained_load, split_hub_id
from .weights import check_safetensors_file, load_safetensors, mismatch_error, safetensors_metadata

__all__ = ["load_folder", "load_file", "load_hub_repo"]

_SOURCE_KEYS = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source")


def _pretrained_cfg_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(timm.models.PretrainedCfg)}


def _create_with_weights(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str, **kwargs: Any
) -> nn.Module:
    """Build ``config["architecture"]`` with timm and load ``state_dict`` through timm's pretrained path.

    timm's semantics hold (``num_classes`` different from the saved one drops the classifier,
    ``features_only``, ``in_chans`` adaptation); any other mismatch is a `WeightsMismatchError`.
    """
    architecture = config["architecture"]
    if not timm.is_model(architecture):
        raise UnknownModelError(f"{source} names architecture {architecture!r}, which is not a timm model name.")
    fields = _pretrained_cfg_fields()
    cfg = {k: v for k, v in (config.get("pretrained_cfg") or {}).items() if k in fields and k not in _SOURCE_KEYS}
    cfg.update(architecture=architecture, custom_load=False, state_dict=state_dict)
    if config.get("num_classes") is not None:
        cfg["num_classes"] = config["num_classes"]
    model_kwargs = {**(config.get("model_args") or {}), **kwargs}
    if "num_classes" in kwargs and kwargs["num_classes"] != cfg.get("num_classes"):
        # timm then drops the classifier and loads non-strictly: check everything else first
        _check_all_but_classifier(architecture, cfg, state_dict, source, model_kwargs)
    try:
        model = timm.create_model(architecture, pretrained=True, pretrained_cfg=cfg, **model_kwargs)
    except RuntimeError as error:
        if "state_dict" not in str(error):
            raise
        raise (mismatch_error(_reference_model(architecture, model_kwargs), state_dict, source) or error) from error
    for holder in (getattr(model, "pretrained_cfg", None), getattr(model, "default_cfg", None)):
        if isinstance(holder, dict):  # do not keep a second reference to the weights
            holder.pop("state_dict", None)
            holder.setdefault("source", source)
    return model


def _reference_model(architecture: str, model_kwargs: dict[str, Any]) -> nn.Module:
    """The full model (not features_only) the weights must fit, to compare keys and shapes with."""
    plain_kwargs = {k: v for k, v in model_kwargs.items() if k not in ("features_only", "out_indices")}
    try:
        with torch.device("meta"):  # shapes only: no memory, no init compute
            return timm.create_model(architecture, pretrained=False, **plain_kwargs)
    except Exception:  # noqa: BLE001  (some models cannot be built on meta: build them for real)
        return timm.create_model(architecture, pretrained=False, **plain_kwargs)


def _check_all_but_classifier(
    architecture: str, cfg: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str, model_kwargs: dict
) -> None:
    """Raise `WeightsMismatchError` for any mismatch outside the classifier (which a new num_classes replaces)."""
    reference = _reference_model(architecture, model_kwargs)
    classifiers = cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    head = {f"{c}.{p}" for c in classifiers for p in ("weight", "bias")}
    own = {k: v for k, v in reference.state_dict().items() if k not in head}
    stripped = {k: v for k, v in state_dict.items() if k not in head}
    error = mismatch_error(reference, stripped, source, own=own)
    if error is not None:
        raise error


def _config_for_file(path: Path, architecture: str | None) -> dict[str, Any]:
    if architecture:
        return {"architecture": architecture}
    meta = safetensors_metadata(path)
    if "timm_config" in meta:
        return json.loads(meta["timm_config"])
    if "architecture" in meta:
        return {"architecture": meta["architecture"]}
    if (path.parent / CONFIG_NAME).is_file():
        return read_config(path.parent)
    raise ConfigError(
        f"Cannot tell the architecture of {str(path)!r}: it carries no metadata and no config.json is beside it. "
        "Pass it: load_pretrained(path, architecture='resnet18')."
    )


def load_file(path: Path, architecture: str | None = None, **kwargs: Any) -> nn.Module:
    """A model with the weights of one ``.safetensors`` file (architecture: the argument, the file's
    metadata or a ``config.json`` beside it)."""
    check_safetensors_file(path)
    config = _config_for_file(path, architecture)
    return _create_with_weights(config, load_safetensors(path), f"file {str(path)!r}", **kwargs)


def load_folder(folder: Path, architecture: str | None = None, **kwargs: Any) -> nn.Module:
    """A model with the weights of a saved folder (``config.json`` + ``model.safetensors``). Read only:
    healing a killed save is the writers' job (or ``repfusion-zoo recover``)."""
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES))
        if pickles:
            raise UnsafeWeightsError(
                f"{str(folder)!r} holds {pickles} but no {WEIGHTS_NAME}: only safetensors weights are loaded. "
                "Convert once where you trust the file: safetensors.torch.save_file(torch.load(f, "
                f"weights_only=True), '{WEIGHTS_NAME}')."
            )
        raise ConfigError(f"{str(folder)!r} has no {WEIGHTS_NAME}; save it with repfusion_zoo.save_pretrained.")
    try:
        config = read_config(folder) if (folder / CONFIG_NAME).is_file() else _config_for_file(weights, architecture)
        state_dict = load_safetensors(weights)
    except FileNotFoundError as error:  # another process swapped the folder between our reads
        raise FileNotFoundError(
            f"{str(folder)!r} changed while it was being read ({error}). {describe_leftovers(folder) or 'Retry.'}"
        ) from error
    if architecture:
        config["architecture"] = architecture
    return _create_with_weights(config, state_dict, f"folder {str(folder)!r}", **kwargs)


def load_hub_repo(source: str, architecture: str | None = None, cache_dir: str | Path | None = None,
                  **kwargs: Any) -> nn.Module:
    """A model with the weights of ``hf-hub:org/repo[@revision]`` (its ``config.json`` +
    ``model.safetensors``), downloaded or from the Hub cache, failing fast without network."""
    repo_id, revision = split_hub_id(source)

    def download(local_files_only: bool) -> Path:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))

    folder = guarded_pretrained_load(source, source.removeprefix("hf-hub:"), download, cache_dir=cache_dir,
                                     filename=(CONFIG_NAME, WEIGHTS_NAME))
    return load_folder(folder, architecture, **kwargs)
