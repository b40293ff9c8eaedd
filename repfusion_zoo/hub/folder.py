"""Save / load the one weight format: a folder with ``model.safetensors``, ``config.json``, ``README.md``.

``config.json`` is timm's Hub format (``architecture``, ``num_classes``, ``num_features``,
``pretrained_cfg``, ``model_args``) naming a plain architecture, so
``timm.create_model("hf-hub:org/repo", pretrained=True)`` loads a published folder, plus a
``repfusion`` section (zoo name, teacher, dataset, license, paper, recipe, metrics).

Only safetensors are ever read: a pickle (``.bin``/``.pt``/``.pth``/...) offered as weights
raises `UnsafeWeightsError` without being opened by any unpickler.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import safetensors.torch
import timm
import torch
from safetensors import safe_open
from torch import nn

from ..errors import ConfigError, UnknownModelError, UnsafeWeightsError, WeightsMismatchError
from . import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from . import card as _card
from .atomic import atomic_folder, describe_leftovers, recover, replace_text, write_text

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pth.tar", ".ckpt", ".pkl", ".pickle", ".tar")
_INHERITED_KEYS = ("tag", "origin_url", "paper_name", "paper_ids", "notes", "description", "license")
_SOURCE_KEYS = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source")

__all__ = [
    "save_pretrained",
    "load_pretrained",
    "load_state_dict_strict",
    "load_safetensors",
    "update_card_metrics",
    "read_config",
    "check_safetensors_file",
]


# --------------------------------------------------------------------------------------------
# safetensors in, strict state-dict load
# --------------------------------------------------------------------------------------------
def check_safetensors_file(path: str | Path) -> Path:
    """Raise `UnsafeWeightsError` unless ``path`` is a safetensors file (header checked, nothing unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weight file {str(path)!r} does not exist.")
    fix = (
        "Only safetensors weights are loaded. Convert it once, where you trust the file: "
        "`safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')`."
    )
    if path.name.lower().endswith(PICKLE_SUFFIXES):
        raise UnsafeWeightsError(f"{str(path)!r} is a pickle-based checkpoint ({path.suffix}), not safetensors. {fix}")
    try:  # safetensors' own reader parses the header only (never unpickles)
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as error:  # noqa: BLE001  (SafetensorError, or an OSError / ValueError for junk)
        raise UnsafeWeightsError(f"{str(path)!r} is not a safetensors file ({error}). {fix}") from error
    return path


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """``path`` (checked to be safetensors) -> state dict on CPU."""
    return safetensors.torch.load_file(str(check_safetensors_file(path)), device="cpu")


def _safetensors_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def _mismatch(
    own: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape mismatches as ``key: checkpoint [..] vs model [..]``)."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {list(state_dict[k].shape)} vs model {list(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    return missing, unexpected, shapes


def _list(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "") if keys else "none"


def mismatch_error(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    source: str,
    own: dict[str, torch.Tensor] | None = None,
) -> WeightsMismatchError | None:
    """The `WeightsMismatchError` for loading ``state_dict`` into ``model`` (or into ``own``, its
    state dict with keys left out), or None when they match."""
    missing, unexpected, shapes = _mismatch(model.state_dict() if own is None else own, state_dict)
    if not (missing or unexpected or shapes):
        return None
    return WeightsMismatchError(
        f"The weights in {source} do not match {type(model).__name__}: "
        f"{len(missing)} missing key(s): {_list(missing)}; "
        f"{len(unexpected)} unexpected key(s): {_list(unexpected)}; "
        f"{len(shapes)} shape mismatch(es): {_list(shapes)}. Nothing was loaded. Check that the "
        "architecture and its arguments (num_classes, in_chans, ...) are the ones the weights were saved with."
    )


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state_dict`` into ``model`` or raise `WeightsMismatchError` (no partial load)."""
    error = mismatch_error(model, state_dict, source)
    if error is not None:
        raise error
    model.load_state_dict(state_dict, strict=True)
    return model


# --------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------
def _unshared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own storage (safetensors refuses shared tensors).

    Tied weights are saved under every key (as torch's state_dict lists them), so a strict load
    by plain timm finds them all.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu")
        ptr = tensor.untyped_storage().data_ptr()
        if tensor.numel() == 0 or ptr in seen or not tensor.is_contiguous():
            tensor = tensor.contiguous().clone()
        else:
            seen.add(ptr)
        out[key] = tensor
    return out


def _zoo_cfg(model_name: str | None) -> dict[str, Any]:
    """`repfusion_zoo.zoo.zoo_info` of a zoo name (timm cfg + ``repfusion`` dict), {} for other names."""
    from .. import zoo

    return zoo.zoo_info(model_name) if model_name in zoo.ZOO else {}


def _zoo_info(model_name: str | None) -> dict[str, Any]:
    """The zoo entry's ``repfusion`` metadata (teacher, dataset, license, recipe, ...), {} for other names."""
    return dict(_zoo_cfg(model_name).get("repfusion", {}))


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


@contextlib.contextmanager
def _unshared_state_dict(model: nn.Module) -> Iterator[None]:
    """Inside the block ``model.state_dict()`` returns `_unshared` tensors (safetensors refuses shared
    storage; timm's exporter saves ``model.state_dict()`` as it is)."""
    register = getattr(model, "register_state_dict_post_hook", None) or model._register_state_dict_hook

    def unshare(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, local_metadata: Any) -> None:
        state_dict.update(_unshared(dict(state_dict)))

    handle = register(unshare)
    try:
        yield
    finally:
        handle.remove()


def _save_timm_files(model: nn.Module, folder: Path, architecture: str, label_names: Sequence[str] | None) -> dict[str, Any]:
    """``model.safetensors`` + ``config.json`` written by timm's own exporter (`timm.models.save_for_hf`),
    naming ``architecture`` (and ``label_names``, timm's class names); returns the config."""
    model_config: dict[str, Any] = {"pretrained_cfg": {"architecture": architecture, "hf_hub_filename": WEIGHTS_NAME}}
    if label_names:
        model_config["label_names"] = [str(n) for n in label_names]
    try:
        with _unshared_state_dict(model):
            timm.models.save_for_hf(model, str(folder), model_config=model_config, safe_serialization=True)
    except (AttributeError, KeyError, TypeError) as error:
        raise ConfigError(
            f"Cannot write timm's config.json for {type(model).__name__}: {error}. Save the full "
            "timm model (not a features_only wrapper) created by timm/repfusion_zoo.create_model."
        ) from error
    return read_config(folder)


def _check_architecture(architecture: str) -> None:
    if not timm.is_model(architecture):
        raise UnknownModelError(
            f"architecture {architecture!r} is not a timm model name (after `import repfusion_zoo`). "
            "Pass the plain architecture the weights belong to, e.g. 'resnet18' or 'resnet18_cifar'."
        )


def add_repfusion_info(
    config: dict[str, Any],
    model_name: str | None = None,
    metrics: dict[str, float] | None = None,
    card: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """timm's ``config`` plus the ``repfusion`` section (zoo entry + ``card`` fields, local paths
    removed: a card is published) and the zoo entry's licence / paper in ``pretrained_cfg``."""
    architecture = config["architecture"]
    card = dict(card or {})
    task = card.pop("task", "classification")
    input_size = card.pop("input_size", None)  # the size the weights were trained at, if not the zoo entry's
    zoo_cfg = _zoo_cfg(model_name)
    info = {**zoo_cfg.get("repfusion", {}), **card}
    info.pop("published", None)  # registry state, not a property of these weights
    info.update(name=model_name or info.get("name") or architecture, architecture=architecture)
    # whether plain timm (without this package) can build the architecture
    info["timm_native"] = timm.models.model_entrypoint(architecture).__module__.startswith("timm.")
    info.update(_card.public_fields(info))
    dataset = info.get("dataset") or "unknown"
    info["metrics"] = {_card.hub_task_type(task): {dataset: dict(metrics)}} if metrics else info.get("metrics", {})
    config["repfusion"] = _json_safe(info)
    pretrained_cfg = config["pretrained_cfg"]
    for key in _INHERITED_KEYS:  # they describe the weights the model was created from: take the zoo entry's
        pretrained_cfg.pop(key, None)
        if zoo_cfg.get(key) is not None:
            pretrained_cfg[key] = _json_safe(zoo_cfg[key])
    if input_size is not None:
        pretrained_cfg["input_size"] = [int(v) for v in input_size]
    if info.get("license"):
        pretrained_cfg["license"] = info["license"]
    if info.get("paper"):
        pretrained_cfg["paper_ids"] = _card.arxiv_ref(info["paper"])
    return config


def save_pretrained(
    model: nn.Module,
    folder: str | Path,
    *,
    architecture: str,
    model_name: str | None = None,
    metrics: dict[str, float] | None = None,
    card: dict[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` as a Hub-ready folder (``model.safetensors``, ``config.json``, ``README.md``).

    Args:
        model: a timm model (e.g. from ``repfusion_zoo.create_model``).
        folder: the target folder; written in a temp folder beside it, then renamed into place
            (`repfusion_zoo.hub.atomic.atomic_folder`: a kill leaves the old or the new folder;
            timm's `save_for_hf` has no such guarantee, so it writes into the temp folder).
        architecture: the plain timm architecture of the weights (``"resnet18"``, ``"resnet18_cifar"``).
        model_name: the zoo name (``"resnet18_repfusion_cifar10"``); its zoo metadata fills the card.
        metrics: ``{metric: value}`` measured for ``card["task"]`` (default classification) on
            ``card["dataset"]`` (default: the zoo entry's dataset).
        card: extra card fields: ``teacher``, ``dataset``, ``license``, ``paper``, ``recipe``,
            ``description``, ``tags``, ``task``, and ``input_size`` ``(C, H, W)`` where the weights
            were trained at another size than the zoo entry's (it goes into ``pretrained_cfg``).
            A ``dataset`` that is a local path is published as its folder name only; a Hub dataset
            (``hf:org/name``) becomes the card's ``datasets`` entry.
        label_names: the class names of the classifier (timm's ``label_names`` in ``config.json``).

    Returns:
        the folder path.
    """
    folder = Path(folder)
    _check_architecture(architecture)
    with atomic_folder(folder) as tmp:
        config = add_repfusion_info(_save_timm_files(model, tmp, architecture, label_names), model_name, metrics, card)
        write_text(tmp / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        write_text(tmp / CARD_NAME, _card.build_model_card(config))
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    """``folder/config.json`` as a dict."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} is missing: {str(folder)!r} is not a saved repfusion-zoo/timm folder.")
    return json.loads(path.read_text(encoding="utf-8"))


def update_card_metrics(folder: str | Path, metrics: dict[str, float], *, task: str, dataset: str) -> Path:
    """Merge ``metrics`` for ``task`` on ``dataset`` into ``config.json`` and regenerate ``README.md``.

    Each file is replaced atomically (config first, then the card generated from it); what a
    killed save or update left beside the folder or the files is healed first (`recover`).
    """
    def merge(info: dict[str, Any]) -> None:
        per_task = info.setdefault("metrics", {}).setdefault(_card.hub_task_type(task), {})
        public = _card.public_dataset(dataset)  # the card is published: no local path
        per_task.setdefault(public, {}).update({k: float(v) for k, v in metrics.items()})

    return _update_info(folder, merge)


def update_card_fields(folder: str | Path, fields: dict[str, Any]) -> Path:
    """Set the card fields ``fields`` (e.g. ``recipe``, ``seed``, ``description``) in ``config.json``'s
    ``repfusion`` entry and regenerate ``README.md``; atomic like `update_card_metrics`."""
    return _update_info(folder, lambda info: info.update(fields))


def _update_info(folder: str | Path, change: Any) -> Path:
    """``change(config["repfusion"])`` in place, then config.json and the card rewritten atomically."""
    folder = recover(folder)
    config = read_config(folder)
    info = config.setdefault("repfusion", {})
    change(info)
    info.update(_card.public_fields(info))  # the card is published: no local path
    replace_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    replace_text(folder / CARD_NAME, _card.build_model_card(config))
    return folder


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------
def _pretrained_cfg_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(timm.models.PretrainedCfg)}


def _create_with_weights(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str, **kwargs: Any
) -> nn.Module:
    """Build ``config["architecture"]`` with timm and load ``state_dict`` through timm's pretrained path.

    timm's semantics hold (``num_classes`` different from the saved one drops the classifier,
    ``features_only``, ``in_chans`` adaptation); any other mismatch is a `WeightsMismatchError`.
    """
    import repfusion_zoo  # noqa: F401  (registers the architectures timm lacks)

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
    meta = _safetensors_metadata(path)
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


def _load_file(path: Path, architecture: str | None, **kwargs: Any) -> nn.Module:
    check_safetensors_file(path)
    config = _config_for_file(path, architecture)
    return _create_with_weights(config, load_safetensors(path), f"file {str(path)!r}", **kwargs)


def _load_folder(folder: Path, architecture: str | None, **kwargs: Any) -> nn.Module:
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


def _load_hub(source: str, architecture: str | None, cache_dir: str | Path | None = None, **kwargs: Any) -> nn.Module:
    from huggingface_hub import snapshot_download

    from .network import guarded_pretrained_load, split_hub_id

    repo_id, revision = split_hub_id(source)

    def download(local_files_only: bool) -> Path:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))

    folder = guarded_pretrained_load(source, source.removeprefix("hf-hub:"), download, cache_dir=cache_dir,
                                     filename=(CONFIG_NAME, WEIGHTS_NAME))
    return _load_folder(folder, architecture, **kwargs)


def load_pretrained(source: str | Path, **kwargs: Any) -> nn.Module:
    """A model with weights from ``source``.

    Args:
        source: a zoo (or timm) name, ``"hf-hub:org/repo[@revision]"``, a folder holding
            ``config.json`` + ``model.safetensors``, or a single ``.safetensors`` file.
        **kwargs: timm keyword arguments (``num_classes``, ``features_only``, ...), and
            ``architecture=`` for a single file without metadata; ``cache_dir=`` for the Hub.

    Raises:
        UnsafeWeightsError: a pickle offered as weights. WeightsMismatchError: keys or shapes
        differ. NoNetworkError: a Hub source without network and not cached.
    """
    architecture = kwargs.pop("architecture", None)
    if isinstance(source, str) and source.startswith("hf-hub:"):
        return _load_hub(source, architecture, **kwargs)
    path = Path(source)
    if path.is_file():
        return _load_file(path, architecture, **kwargs)
    looks_like_path = os.sep in str(source) or str(source).lower().endswith((".safetensors", *PICKLE_SUFFIXES))
    if path.is_dir():  # read only: healing a killed save is the writer's job (or `repfusion-zoo recover`)
        return _load_folder(path, architecture, **kwargs)
    if isinstance(source, Path) or looks_like_path:
        note = describe_leftovers(path)
        raise FileNotFoundError(
            f"{str(source)!r} does not exist (expected a folder or a .safetensors file).{' ' + note if note else ''}"
        )
    import repfusion_zoo

    return repfusion_zoo.create_model(str(source), pretrained=True, **kwargs)
