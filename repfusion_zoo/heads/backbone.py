"""The backbone side of the dense heads: a `features_only` zoo/timm model (its input normalisation is
`repfusion_zoo.normalize.InputNormalize`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import timm
from torch import nn

from ..errors import ConfigError
from ..zoo import create_model


def create_feature_backbone(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A zoo/timm name, `hf-hub:` id or Hub-ready folder as a `features_only` model (list of maps).

    A folder and an `hf-hub:` id always bring their weights.
    """
    folder = Path(str(name)).expanduser()
    if folder.is_dir():
        name, pretrained = str(folder), True
    elif str(name).startswith(("hf-hub:", "hf_hub:")):
        pretrained = True
    return create_model(str(name), pretrained=pretrained, features_only=True, **kwargs)


#: kwargs that only shape the features_only wrapper, not the architecture
_FEATURE_KWARGS = ("features_only", "out_indices", "feature_location", "feature_cls", "feature_cfg")


def export_plain_backbone(features: nn.Module, model_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """The fine-tuned trunk of a `features_only` backbone as a plain timm model with no classifier.

    What `repfusion_zoo.save_pretrained` writes (it needs a full timm model): the architecture in
    the backbone's `pretrained_cfg`, `num_classes=0`, every trunk weight copied. Modules the
    features model lacks (e.g. HRNet's classification-head `incre_modules` / `final_layer`) keep
    their fresh initialisation; a weight the plain model does not have is a `ConfigError`.
    """
    cfg = dict(getattr(features, "pretrained_cfg", None) or {})
    architecture = cfg.get("architecture")
    if not architecture or not timm.is_model(architecture):
        raise ConfigError(f"cannot tell the backbone's timm architecture from its pretrained_cfg ({architecture!r})")
    kwargs = {k: v for k, v in dict(model_kwargs or {}).items() if k not in _FEATURE_KWARGS and k != "num_classes"}
    plain = timm.create_model(architecture, pretrained=False, num_classes=0, **kwargs)
    result = plain.load_state_dict(features.state_dict(), strict=False)
    if result.unexpected_keys:
        raise ConfigError(
            f"the fine-tuned {architecture} backbone has weights a plain {architecture} lacks: "
            f"{result.unexpected_keys[:10]}"
        )
    plain.pretrained_cfg = {**plain.pretrained_cfg, **{k: cfg[k] for k in ("mean", "std") if k in cfg}}
    plain.eval()
    return plain


def feature_index(backbone: nn.Module, reduction: int) -> int:
    """Position (in the backbone's output list) of the last feature map at stride `reduction`."""
    reductions = list(backbone.feature_info.reduction())
    if reduction not in reductions:
        raise ConfigError(f"the backbone has no stride-{reduction} feature map (strides {reductions})")
    return len(reductions) - 1 - reductions[::-1].index(reduction)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
