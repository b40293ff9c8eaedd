"""The zoo: one timm-registered name per backbone of the paper, and `create_model` / `list_models`.

Each zoo name (``<architecture>_repfusion_<dataset>``) is a timm entrypoint that builds a plain
architecture (timm's ``resnet18`` / ``resnet50`` / ``hrnet_w18``, or ours from
``repfusion_zoo.models``) with the zoo entry's pretrained cfg. Where the facts live:

* timm's ``PretrainedCfg`` (``timm.models.get_pretrained_cfg(name)``, ``model.pretrained_cfg``):
  ``hf_hub_id`` (``repfusion-zoo/<name>@<commit>`` once published, None until then),
  ``hf_hub_filename`` (``model.safetensors``: the weight file in the Hub repo; timm's own ``file``
  field means a LOCAL path, so it stays empty), ``input_size``, ``mean``, ``std``, ``num_classes``
  (0: the weights are a backbone without classifier; pass ``num_classes=N`` for a new head),
  ``license``, ``paper_ids``, ``origin_url``, ``description``.
* The facts timm's dataclass has no field for (teacher, dataset, recipe, ...) are in `ZOO` and
  `zoo_info(name)` returns everything as one dict (the ``repfusion`` key).
* Publishing a weight = one line in `PUBLISHED` (name -> ``repfusion-zoo/<name>@<commit>``), then
  regenerate the MODEL_CARD.md table.

A built model's ``pretrained_cfg["architecture"]`` is the PLAIN architecture (as for timm's
``resnet18.a1_in1k``), so a ``config.json`` written from it loads in plain timm wherever the
architecture is timm's. The registry's cfg (``timm.models.get_pretrained_cfg(name)``) keeps the
zoo name.

Mean / std: CelebA-HQ entries use 0.5 / 0.5, i.e. the student sees ``x * 2 - 1`` exactly as the
DDPM teacher does (one tensor feeds both); CIFAR-10 and Tiny-ImageNet entries use their dataset
statistics. `model_table()` prints the MODEL_CARD.md table:
``repfusion-zoo models`` (or
``python -c "from repfusion_zoo.zoo import model_table; print(model_table(), end='')"``).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn
from timm.models import generate_default_cfgs, model_entrypoint, resolve_pretrained_cfg
from timm.models._pretrained import PretrainedCfg

from .errors import (
    ConfigError,
    PretrainedUnavailableError,
    UnknownModelError,
    UnsafeWeightsError,
    WeightsMismatchError,
)
from .atomic import describe_leftovers
from .hub import WEIGHTS_NAME
from .models import CIFAR10_MEAN, CIFAR10_STD, register_new_model
from .version import __version__

__all__ = ["ZOO", "ZooEntry", "create_model", "list_models", "zoo_info", "model_table"]

PAPER_ID = "arXiv:2308.10916"
PAPER_NAME = "Diffusion Model as Representation Learner (Yang & Wang, ICCV 2023)"
ORIGIN_URL = "https://github.com/Adamdad/Repfusion"
HUB_ORG = "repfusion-zoo"
RECIPE = "accelerate launch recipes/distill.py --config recipes/configs/{config}"
#: where a pip-only user gets recipes/: the wheel holds the library only, the source distribution
#: on the same index also holds recipes/ (MANIFEST.in); one command fetches and unpacks it
GET_RECIPES = ("pip download repfusion-zoo=={version} --no-deps --no-binary repfusion-zoo && "
               "tar xzf repfusion_zoo-{version}.tar.gz && cd repfusion_zoo-{version}")

HALF = (0.5, 0.5, 0.5)
TINYIMAGENET_MEAN = (0.4802, 0.4481, 0.3975)
TINYIMAGENET_STD = (0.2302, 0.2265, 0.2262)

CELEBAHQ_LICENSE_NOTE = (
    "Distilled on CelebA-HQ images: the CelebA agreement allows non-commercial research use only, "
    "and these weights carry that restriction (teacher google/ddpm-ema-celebahq-256: apache-2.0)."
)
TINYIMAGENET_LICENSE_NOTE = (
    "Distilled on Tiny-ImageNet (an ImageNet subset): ImageNet's terms allow non-commercial research "
    "and education only, and these weights carry that restriction (teacher ADM: MIT)."
)
CIFAR10_LICENSE_NOTE = "Distilled on CIFAR-10 from google/ddpm-cifar10-32 (apache-2.0)."

TEACHER_CELEBAHQ = "google/ddpm-ema-celebahq-256"
TEACHER_CIFAR10 = "google/ddpm-cifar10-32"
TEACHER_IMAGENET64 = "openai/guided-diffusion 64x64_diffusion.pt (ADM, class-conditional ImageNet 64x64)"


@dataclass(frozen=True)
class ZooEntry:
    """One backbone of the paper: what it is, where it comes from, how to make it."""

    name: str
    architecture: str  # the plain timm-registered architecture it builds
    teacher: str
    dataset: str
    config: str  # recipes/configs/<config>
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    license: str
    license_note: str
    first_conv: str
    classifier: str
    paper_table: str
    hf_hub_id: str | None = None  # "repfusion-zoo/<name>@<commit>" once published

    @property
    def recipe(self) -> str:
        return RECIPE.format(config=self.config)

    @property
    def hub_repo(self) -> str:
        return f"{HUB_ORG}/{self.name}"


def _celebahq(name: str, architecture: str, config: str, table: str, classifier: str = "fc") -> ZooEntry:
    return ZooEntry(
        name, architecture, TEACHER_CELEBAHQ, "CelebA-HQ 256x256", config, (3, 256, 256), HALF, HALF,
        "other", CELEBAHQ_LICENSE_NOTE, "conv1", classifier, table,
    )


def _cifar10(name: str, architecture: str, config: str, table: str, first_conv: str, classifier: str) -> ZooEntry:
    return ZooEntry(
        name, architecture, TEACHER_CIFAR10, "CIFAR-10", config, (3, 32, 32), CIFAR10_MEAN, CIFAR10_STD,
        "apache-2.0", CIFAR10_LICENSE_NOTE, first_conv, classifier, table,
    )


def _tinyimagenet(
    name: str, architecture: str, config: str, table: str, first_conv: str, classifier: str
) -> ZooEntry:
    return ZooEntry(
        name, architecture, TEACHER_IMAGENET64, "Tiny-ImageNet 64x64", config, (3, 64, 64),
        TINYIMAGENET_MEAN, TINYIMAGENET_STD, "other", TINYIMAGENET_LICENSE_NOTE, first_conv, classifier, table,
    )


# Published weights, pinned: zoo name -> "repfusion-zoo/<name>@<commit sha>" (the sha push_to_hub
# returns). Empty until a recipe has produced and pushed a weight; MODEL_CARD.md follows this table.
PUBLISHED: dict[str, str] = {}

_ENTRIES = (
    _celebahq("resnet18_repfusion_celebahq", "resnet18", "celebahq_resnet18.yaml", "Tables 1, 2 (BiSeNetV1)"),
    _celebahq("resnet50_repfusion_celebahq", "resnet50", "celebahq_resnet50.yaml", "Tables 1, 2, 3"),
    _celebahq("hrnet_w18_repfusion_celebahq", "hrnet_w18", "celebahq_hrnet_w18.yaml", "Table 3 (WFLW)",
              classifier="classifier"),
    _cifar10("resnet18_repfusion_cifar10", "resnet18_cifar", "cifar10_resnet18_hint.yaml", "Table 4",
             "conv1", "fc"),
    _cifar10("wrn28_2_repfusion_cifar10", "wrn28_2", "cifar10_wrn28_2_hint.yaml", "Table 4", "stem", "head.fc"),
    _cifar10("mobilenetv2_repfusion_cifar10", "mobilenetv2_cifar", "cifar10_mobilenetv2_hint.yaml",
             "Sec. 5.2.3 (student list)", "conv_stem", "classifier"),
    _tinyimagenet("resnet18_repfusion_tinyimagenet", "resnet18_cifar", "tinyimagenet_resnet18_hint.yaml",
                  "Table 5", "conv1", "fc"),
    _tinyimagenet("mobilenetv2_repfusion_tinyimagenet", "mobilenetv2_cifar", "tinyimagenet_mobilenetv2_hint.yaml",
                  "Table 5", "conv_stem", "classifier"),
)
ZOO: dict[str, ZooEntry] = {e.name: dataclasses.replace(e, hf_hub_id=PUBLISHED.get(e.name)) for e in _ENTRIES}
if set(PUBLISHED) - set(ZOO):
    unknown = sorted(set(PUBLISHED) - set(ZOO))
    raise ConfigError(f"zoo.PUBLISHED names unknown zoo entries {unknown}; fix the names.")


def _pool_size(entry: ZooEntry) -> tuple[int, int]:
    """The spatial size of ``forward_features`` at the entry's input size (timm's ``pool_size``),
    from the architecture's own cfg: its reduction is ``input_size / pool_size`` there."""
    arch = timm.models.get_pretrained_cfg(entry.architecture)
    reduction = [size // pool for size, pool in zip(arch.input_size[-2:], arch.pool_size)]
    return tuple(size // r for size, r in zip(entry.input_size[-2:], reduction))  # type: ignore[return-value]


def _pretrained_cfg(entry: ZooEntry) -> dict[str, Any]:
    """The timm pretrained cfg of a zoo entry (backbone weights: num_classes 0)."""
    return dict(
        hf_hub_id=entry.hf_hub_id,
        hf_hub_filename=WEIGHTS_NAME,
        num_classes=0,
        input_size=entry.input_size,
        pool_size=_pool_size(entry),
        crop_pct=1.0,
        interpolation="bilinear",
        mean=entry.mean,
        std=entry.std,
        first_conv=entry.first_conv,
        classifier=entry.classifier,
        license=entry.license,
        description=(
            f"RepFusion {entry.architecture} backbone distilled from {entry.teacher} on {entry.dataset} "
            f"(zoo name {entry.name})."
        ),
        origin_url=ORIGIN_URL,
        paper_name=PAPER_NAME,
        paper_ids=PAPER_ID,
        notes=(entry.license_note, f"Produced by: {entry.recipe}"),
    )


default_cfgs = generate_default_cfgs({name: _pretrained_cfg(entry) for name, entry in ZOO.items()})


def recipes_command() -> str:
    """The shell command that fetches and unpacks this version's recipes/ (for a pip-only install)."""
    return GET_RECIPES.format(version=__version__)


def _unpublished_error(entry: ZooEntry) -> PretrainedUnavailableError:
    return PretrainedUnavailableError(
        f"No weight is published yet for {entry.name!r} (its pretrained cfg has no hf_hub_id). "
        f"Produce it with its recipe. The recipes are not in the installed package; pip fetches them "
        f"(the project's source distribution) with:\n    {recipes_command()}\n"
        f"then, there (or in a clone of the project's repository):\n    {entry.recipe}\n"
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


def _create_zoo_model(
    name: str,
    pretrained: bool = False,
    pretrained_cfg: str | dict[str, Any] | PretrainedCfg | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build zoo entry ``name``: its plain architecture, with the zoo cfg (plus any overlay).

    With ``pretrained=True`` and nothing to load (no hf_hub_id, file or state_dict), fails at
    once, before any network use. Hub loads go through `guarded_pretrained_load` (fast, clear
    failure without network).
    """
    entry = ZOO[name]
    cfg = resolve_pretrained_cfg(name, pretrained_cfg, pretrained_cfg_overlay)
    cfg = dataclasses.replace(cfg, architecture=entry.architecture, tag=None)
    build = model_entrypoint(entry.architecture)
    if not pretrained:
        return build(pretrained=False, pretrained_cfg=cfg, **kwargs)
    if not cfg.has_weights and cfg.state_dict is None:
        raise _unpublished_error(entry)
    _check_local_file(name, cfg)
    from .hub.network import guarded_pretrained_load

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
    from huggingface_hub import hf_hub_download

    from .hub.network import split_hub_id

    repo_id, revision = split_hub_id(cfg.hf_hub_id)
    return hf_hub_download(repo_id, cfg.hf_hub_filename or WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                           local_files_only=local_files_only)


# --- timm entrypoints: one per zoo entry (default_cfgs above, as timm requires) ---------------

@register_new_model
def resnet18_repfusion_celebahq(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 distilled from DDPM CelebA-HQ 256 (face parsing, Tables 1-2)."""
    return _create_zoo_model("resnet18_repfusion_celebahq", pretrained, **kwargs)


@register_new_model
def resnet50_repfusion_celebahq(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 distilled from DDPM CelebA-HQ 256 (face parsing, landmarks, Tables 1-3)."""
    return _create_zoo_model("resnet50_repfusion_celebahq", pretrained, **kwargs)


@register_new_model
def hrnet_w18_repfusion_celebahq(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """HRNet-W18 distilled from DDPM CelebA-HQ 256 (WFLW landmarks, Table 3)."""
    return _create_zoo_model("hrnet_w18_repfusion_celebahq", pretrained, **kwargs)


@register_new_model
def resnet18_repfusion_cifar10(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 (CIFAR stem) distilled from DDPM CIFAR-10 32 (Table 4)."""
    return _create_zoo_model("resnet18_repfusion_cifar10", pretrained, **kwargs)


@register_new_model
def wrn28_2_repfusion_cifar10(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """WRN-28-2 distilled from DDPM CIFAR-10 32 (Table 4)."""
    return _create_zoo_model("wrn28_2_repfusion_cifar10", pretrained, **kwargs)


@register_new_model
def mobilenetv2_repfusion_cifar10(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 (CIFAR strides) distilled from DDPM CIFAR-10 32."""
    return _create_zoo_model("mobilenetv2_repfusion_cifar10", pretrained, **kwargs)


@register_new_model
def resnet18_repfusion_tinyimagenet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 (CIFAR stem, 64 px) distilled from ADM ImageNet 64 (Table 5)."""
    return _create_zoo_model("resnet18_repfusion_tinyimagenet", pretrained, **kwargs)


@register_new_model
def mobilenetv2_repfusion_tinyimagenet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 (CIFAR strides, 64 px) distilled from ADM ImageNet 64 (Table 5)."""
    return _create_zoo_model("mobilenetv2_repfusion_tinyimagenet", pretrained, **kwargs)


# --- the package API ----------------------------------------------------------------------------

def list_models(pattern: str = "*") -> list[str]:
    """Zoo names matching the shell-style ``pattern``, sorted."""
    return sorted(name for name in ZOO if fnmatch.fnmatch(name, pattern))


def zoo_info(name: str) -> dict[str, Any]:
    """Everything known about zoo entry ``name``.

    Returns timm's pretrained cfg as a dict (hf_hub_id, hf_hub_filename, input_size, mean, std,
    num_classes, license, paper_ids, ...) plus ``file`` (the weight file name in the Hub repo) and
    ``repfusion``: architecture, teacher, dataset, license, license_note, paper, recipe, config,
    hub_repo, paper_table, published.
    """
    if name not in ZOO:
        raise _unknown_model_error(name)
    entry = ZOO[name]
    cfg = timm.models.get_pretrained_cfg(name).to_dict(remove_null=False)
    cfg.pop("state_dict", None)
    repfusion = dict(
        architecture=entry.architecture,
        teacher=entry.teacher,
        dataset=entry.dataset,
        license=entry.license,
        license_note=entry.license_note,
        paper=PAPER_ID,
        recipe=entry.recipe,
        config=f"recipes/configs/{entry.config}",
        hub_repo=entry.hub_repo,
        paper_table=entry.paper_table,
        published=entry.hf_hub_id is not None,
    )
    return dict(cfg, file=WEIGHTS_NAME, repfusion=repfusion)


def _unknown_model_error(name: str) -> UnknownModelError:
    close = difflib.get_close_matches(name, list(ZOO), n=3, cutoff=0.4)
    if not close:
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if os.sep in name or name.startswith("local-dir:"):
        folder = name.removeprefix("local-dir:")
        note = describe_leftovers(Path(folder).expanduser())
        hint = f" No folder {folder!r} exists.{' ' + note if note else ''}{hint}"
    return UnknownModelError(
        f"Unknown model {name!r}: not a repfusion zoo name, a timm name, 'hf-hub:org/repo' or a folder "
        f"holding config.json.{hint} Zoo names: repfusion_zoo.list_models(); timm names: timm.list_models()."
    )


def _local_folder(name: str) -> Path | None:
    """``name`` as an existing folder (``local-dir:`` prefix optional), or None."""
    path = Path(name.removeprefix("local-dir:")).expanduser()
    looks_like_path = os.sep in name or name.startswith(("local-dir:", ".", "~"))
    if not looks_like_path and timm.is_model(name.split(".", 1)[0]):
        return None  # a model name wins over a same-named folder in the working directory
    return path if path.is_dir() else None  # read only: a load never heals or changes the disk


def create_model(name: str | os.PathLike[str], pretrained: bool = False, **timm_kwargs: Any) -> nn.Module:
    """Create a backbone by name, exactly like ``timm.create_model``.

    Args:
        name: a zoo name (`list_models()`), any timm name (``resnet18.a1_in1k``),
            ``hf-hub:org/repo[@revision]``, or a local folder holding ``config.json``
            (+ ``model.safetensors``).
        pretrained: load the weight. For a zoo entry with no published weight this fails at
            once (`PretrainedUnavailableError`, no network use) and names the recipe command.
            For a folder or ``hf-hub:`` it loads ``model.safetensors`` through
            `repfusion_zoo.hub.load_pretrained` (safetensors only, strict keys); without it
            the architecture and cfg come from ``config.json`` (timm's ``local-dir:`` / ``hf-hub:``).
        **timm_kwargs: anything ``timm.create_model`` takes (num_classes, features_only,
            out_indices, in_chans, pretrained_cfg_overlay=dict(file=...), cache_dir, ...).

    Raises:
        UnknownModelError: ``name`` is none of the above; suggests the closest zoo names.
    """
    name = os.fspath(name)
    folder = _local_folder(name)
    if folder is not None:
        if not (folder / "config.json").is_file():
            raise UnknownModelError(
                f"Folder {str(folder)!r} holds no config.json; save a model there with "
                f"repfusion_zoo.save_pretrained(model, folder, architecture=...) or pass a model name."
            )
        if pretrained:
            from .hub import load_pretrained

            return load_pretrained(folder, **timm_kwargs)
        return timm.create_model(f"local-dir:{folder}", pretrained=False, **timm_kwargs)
    if name.startswith(("hf-hub:", "hf_hub:")):
        return _create_from_hub("hf-hub:" + name.split(":", 1)[1], pretrained, **timm_kwargs)
    base = name.split(".", 1)[0]
    if not timm.is_model(base):
        raise _unknown_model_error(name)
    return timm.create_model(name, pretrained=pretrained, **timm_kwargs)


def _create_from_hub(name: str, pretrained: bool, **timm_kwargs: Any) -> nn.Module:
    """``hf-hub:org/repo[@rev]``: config (and weight) from the Hub, failing fast without network."""
    from .hub import load_pretrained
    from .hub.network import guarded_pretrained_load

    from huggingface_hub import hf_hub_download

    from .hub.network import split_hub_id

    if pretrained:
        return load_pretrained(name, **timm_kwargs)
    repo_id, revision = split_hub_id(name)

    def build(local_files_only: bool) -> nn.Module:
        config = hf_hub_download(repo_id, "config.json", revision=revision, cache_dir=timm_kwargs.get("cache_dir"),
                                 local_files_only=local_files_only)
        return timm.create_model(f"local-dir:{Path(config).parent}", pretrained=False, **timm_kwargs)

    return guarded_pretrained_load(name, name.removeprefix("hf-hub:"), build, filename="config.json",
                                   cache_dir=timm_kwargs.get("cache_dir"))


# --- the MODEL_CARD.md table --------------------------------------------------------------------

def _count_parameters(name: str) -> int:
    model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def model_table() -> str:
    """The zoo table of MODEL_CARD.md (markdown), parameters counted by building each model."""
    header = (
        "| name | architecture | parameters (backbone) | input | teacher | dataset | license | "
        "recipe | measured metrics | weight exists |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name in list_models():
        entry = ZOO[name]
        size = "x".join(str(s) for s in entry.input_size[1:])
        rows.append(
            f"| `{name}` | `{entry.architecture}` | {_count_parameters(name) / 1e6:.2f} M | {size} | "
            f"`{entry.teacher}` | {entry.dataset} | {entry.license} | `{entry.recipe}` | "
            f"{'see the model card on the Hub' if entry.hf_hub_id else 'not trained yet'} | "
            f"{'yes: `' + entry.hf_hub_id + '`' if entry.hf_hub_id else 'no'} |"
        )
    return header + "\n".join(rows) + "\n"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``repfusion-zoo models``: print the zoo table (the one in MODEL_CARD.md)."""
    parser = subparsers.add_parser("models", help="print the zoo table of MODEL_CARD.md")
    parser.set_defaults(func=lambda args: print(model_table(), end="") or 0)
