"""The zoo's registry: one timm-registered name per backbone of the paper, its pretrained cfg, its facts.

Each zoo name (``<architecture>_repfusion_<dataset>``) is a timm entrypoint that builds a plain
architecture (timm's ``resnet18`` / ``resnet50`` / ``hrnet_w18``, or ours from
``repfusion_zoo.models``) with the zoo entry's pretrained cfg (`default_cfgs` stands before the
entrypoints, as timm requires). Publishing a weight = one line in `PUBLISHED` (name ->
``repfusion-zoo/<name>@<commit>``), then regenerate the MODEL_CARD.md table.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

import timm
import torch.nn as nn
from timm.models import generate_default_cfgs

from ..errors import ConfigError
from ..hub import WEIGHTS_NAME
from ..models import CIFAR10_MEAN, CIFAR10_STD, register_new_model
from ..weights import SHIPPED
from .entry import ORIGIN_URL, PAPER_ID, PAPER_NAME, ZooEntry
from .pretrained import create_entry_model, unknown_model_error

__all__ = ["ZOO", "PUBLISHED", "default_cfgs", "list_models", "zoo_info"]

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


def _celebahq(name: str, architecture: str, config: str, table: str, classifier: str = "fc") -> ZooEntry:
    return ZooEntry(
        name, architecture, TEACHER_CELEBAHQ, "CelebA-HQ 256x256", config, (3, 256, 256), HALF, HALF,
        "other", CELEBAHQ_LICENSE_NOTE, "conv1", classifier, table, "--data_root data/CelebAMask-HQ",
    )


def _cifar10(name: str, architecture: str, config: str, table: str, first_conv: str, classifier: str) -> ZooEntry:
    return ZooEntry(
        name, architecture, TEACHER_CIFAR10, "CIFAR-10", config, (3, 32, 32), CIFAR10_MEAN, CIFAR10_STD,
        "apache-2.0", CIFAR10_LICENSE_NOTE, first_conv, classifier, table, "--dataset data/cifar10",
    )


def _tinyimagenet(
    name: str, architecture: str, config: str, table: str, first_conv: str, classifier: str
) -> ZooEntry:
    return ZooEntry(
        name, architecture, TEACHER_IMAGENET64, "Tiny-ImageNet 64x64", config, (3, 64, 64),
        TINYIMAGENET_MEAN, TINYIMAGENET_STD, "other", TINYIMAGENET_LICENSE_NOTE, first_conv, classifier, table,
        "--dataset data/tiny-imagenet-200",
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


# --- timm entrypoints: one per zoo entry (default_cfgs above, as timm requires) ---------------

@register_new_model
def resnet18_repfusion_celebahq(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 distilled from DDPM CelebA-HQ 256 (face parsing, Tables 1-2)."""
    return create_entry_model(ZOO["resnet18_repfusion_celebahq"], pretrained, **kwargs)


@register_new_model
def resnet50_repfusion_celebahq(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 distilled from DDPM CelebA-HQ 256 (face parsing, landmarks, Tables 1-3)."""
    return create_entry_model(ZOO["resnet50_repfusion_celebahq"], pretrained, **kwargs)


@register_new_model
def hrnet_w18_repfusion_celebahq(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """HRNet-W18 distilled from DDPM CelebA-HQ 256 (WFLW landmarks, Table 3)."""
    return create_entry_model(ZOO["hrnet_w18_repfusion_celebahq"], pretrained, **kwargs)


@register_new_model
def resnet18_repfusion_cifar10(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 (CIFAR stem) distilled from DDPM CIFAR-10 32 (Table 4)."""
    return create_entry_model(ZOO["resnet18_repfusion_cifar10"], pretrained, **kwargs)


@register_new_model
def wrn28_2_repfusion_cifar10(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """WRN-28-2 distilled from DDPM CIFAR-10 32 (Table 4)."""
    return create_entry_model(ZOO["wrn28_2_repfusion_cifar10"], pretrained, **kwargs)


@register_new_model
def mobilenetv2_repfusion_cifar10(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 (CIFAR strides) distilled from DDPM CIFAR-10 32."""
    return create_entry_model(ZOO["mobilenetv2_repfusion_cifar10"], pretrained, **kwargs)


@register_new_model
def resnet18_repfusion_tinyimagenet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 (CIFAR stem, 64 px) distilled from ADM ImageNet 64 (Table 5)."""
    return create_entry_model(ZOO["resnet18_repfusion_tinyimagenet"], pretrained, **kwargs)


@register_new_model
def mobilenetv2_repfusion_tinyimagenet(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """MobileNetV2 (CIFAR strides, 64 px) distilled from ADM ImageNet 64 (Table 5)."""
    return create_entry_model(ZOO["mobilenetv2_repfusion_tinyimagenet"], pretrained, **kwargs)


# --- the registry's facts ----------------------------------------------------------------------

def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Zoo names matching the shell-style ``pattern``, sorted.

    ``pretrained=True`` lists, as timm's ``list_models(pretrained=True)`` does, the names that load a
    weight: the published zoo names and the weights shipped inside the package
    (``<architecture>.<tag>``, `repfusion_zoo.weights`: they load offline).
    """
    names = [n for n, e in ZOO.items() if e.hf_hub_id] + list(SHIPPED) if pretrained else list(ZOO)
    return sorted(name for name in names if fnmatch.fnmatch(name, pattern))


def zoo_info(name: str) -> dict[str, Any]:
    """Everything known about zoo entry ``name``.

    Returns timm's pretrained cfg as a dict (hf_hub_id, hf_hub_filename, input_size, mean, std,
    num_classes, license, paper_ids, ...) plus ``file`` (the weight file name in the Hub repo) and
    ``repfusion``: architecture, teacher, dataset, license, license_note, paper, recipe, config,
    hub_repo, paper_table, published.
    """
    if name not in ZOO:
        raise unknown_model_error(name, list(ZOO))
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
