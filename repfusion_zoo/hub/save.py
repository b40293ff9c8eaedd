"""Writing the one weight format: a folder with ``model.safetensors``, ``config.json``, ``README.md``.

``config.json`` is timm's Hub format (``architecture``, ``num_classes``, ``num_features``,
``pretrained_cfg``, ``model_args``) naming a plain architecture, so
``timm.create_model("hf-hub:org/repo", pretrained=True)`` loads a published folder, plus a
``repfusion`` section (zoo name, teacher, dataset, license, paper, recipe, metrics). Every write
is atomic (`repfusion_zoo.atomic`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import timm
from torch import nn

from ..atomic import atomic_folder, recover, replace_text, write_text
from ..errors import ConfigError, UnknownModelError
from . import card as _card
from .format import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, read_config
from .weights import unshared_state_dict

__all__ = ["save_folder", "add_repfusion_info", "update_card_metrics", "update_card_fields"]

_INHERITED_KEYS = ("tag", "origin_url", "paper_name", "paper_ids", "notes", "description", "license")


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _save_timm_files(model: nn.Module, folder: Path, architecture: str, label_names: Sequence[str] | None) -> dict[str, Any]:
    """``model.safetensors`` + ``config.json`` written by timm's own exporter (`timm.models.save_for_hf`),
    naming ``architecture`` (and ``label_names``, timm's class names); returns the config."""
    model_config: dict[str, Any] = {"pretrained_cfg": {"architecture": architecture, "hf_hub_filename": WEIGHTS_NAME}}
    if label_names:
        model_config["label_names"] = [str(n) for n in label_names]
    try:
        with unshared_state_dict(model):
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
    zoo_cfg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """timm's ``config`` plus the ``repfusion`` section (zoo entry + ``card`` fields, local paths
    removed: a card is published) and the zoo entry's licence / paper in ``pretrained_cfg``.

    ``zoo_cfg``: the zoo entry of ``model_name`` (`repfusion_zoo.zoo.zoo_info`: timm's cfg plus the
    ``repfusion`` dict), {} / None for a name outside the zoo.
    """
    architecture = config["architecture"]
    card = dict(card or {})
    task = card.pop("task", "classification")
    input_size = card.pop("input_size", None)  # the size the weights were trained at, if not the zoo entry's
    zoo_cfg = dict(zoo_cfg or {})
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


def save_folder(model: nn.Module, folder: str | Path, *, architecture: str, model_name: str | None = None,
                metrics: dict[str, float] | None = None, card: dict[str, Any] | None = None,
                label_names: Sequence[str] | None = None, zoo_cfg: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a Hub-ready folder (``model.safetensors``, ``config.json``, ``README.md``) in a
    temp folder beside ``folder``, then rename it into place (`repfusion_zoo.atomic.atomic_folder`: a
    kill leaves the old or the new folder; timm's `save_for_hf` has no such guarantee, so it writes
    into the temp folder). The arguments are `repfusion_zoo.save_pretrained`'s (which documents
    them), plus ``zoo_cfg``: the zoo entry of ``model_name`` (`repfusion_zoo.zoo.zoo_info`), whose
    teacher, dataset, licence and recipe fill the card.
    """
    folder = Path(folder)
    _check_architecture(architecture)
    with atomic_folder(folder) as tmp:
        config = add_repfusion_info(_save_timm_files(model, tmp, architecture, label_names), model_name, metrics, card, zoo_cfg)
        write_text(tmp / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        write_text(tmp / CARD_NAME, _card.build_model_card(config))
    return folder


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


def _update_info(folder: str | Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """``change(config["repfusion"])`` in place, then config.json and the card rewritten atomically."""
    folder = recover(folder)
    config = read_config(folder)
    info = config.setdefault("repfusion", {})
    change(info)
    info.update(_card.public_fields(info))  # the card is published: no local path
    replace_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    replace_text(folder / CARD_NAME, _card.build_model_card(config))
    return folder
