"""Decoder g: maps the teacher's feature to the label space; its per-sample task loss is the reward.

RepFusion (Section 4.2) trains g jointly with the time-step policy on the **detached** teacher
feature ``z(t)``: reward = -task loss of g(z(t)). Decoders here:

- :class:`LinearDecoder`: global average pool + linear (the paper, classification).
- :class:`MLPDecoder`: global average pool + 3-layer MLP (the authors' code).
- :class:`FCNDecoder`: a small FCN head (conv-BN-ReLU x N, dropout, 1x1 classifier) for dense
  labels (segmentation; heatmaps); its logits stay at the feature's size and are upsampled to the
  label's size in :func:`decoder_task_loss`.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from repfusion_zoo.errors import ConfigError, InputError
from repfusion_zoo.losses.matching import pool, resize_to

__all__ = [
    "DECODER_KINDS",
    "LinearDecoder",
    "MLPDecoder",
    "FCNDecoder",
    "build_decoder",
    "decoder_task_loss",
    "IGNORE_INDEX",
]

IGNORE_INDEX = 255


def _pool(feature: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w] -> [B, C]`` (global average); ``[B, C]`` passes through; else :class:`InputError`."""
    return pool(feature, "a pooled decoder", InputError)


class LinearDecoder(nn.Module):
    """Global average pool + linear: ``[B, C, h, w] -> [B, num_classes]`` (the paper's g)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.fc(_pool(feature))


class MLPDecoder(nn.Module):
    """Global average pool + 3-layer MLP: ``[B, C, h, w] -> [B, num_classes]`` (the authors' g)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.mlp(_pool(feature))


class FCNDecoder(nn.Module):
    """A small FCN head (after mmseg's FCNHead): ``[B, C, h, w] -> [B, num_classes, h, w]``.

    ``num_convs`` x (3x3 conv, BatchNorm, ReLU) at ``channels`` width, dropout, 1x1 classifier.
    The logits keep the feature's size; :func:`decoder_task_loss` upsamples them to the labels.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 128,
        num_convs: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        prev = in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(prev, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            prev = channels
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(prev, num_classes, 1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        if feature.dim() != 4:
            raise InputError(
                f"FCNDecoder takes a feature map [B, C, h, w]; got {tuple(feature.shape)} "
                "(a pooled feature has no spatial layout; use the 'linear' or 'mlp' decoder)."
            )
        return self.classifier(self.dropout(self.convs(feature)))


_DECODERS: dict[str, type[nn.Module]] = {"linear": LinearDecoder, "mlp": MLPDecoder, "fcn": FCNDecoder}
#: the kinds `build_decoder` knows
DECODER_KINDS = tuple(_DECODERS)


def build_decoder(kind: str, in_channels: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """``kind`` in ``"linear"`` (paper), ``"mlp"`` (authors' code), ``"fcn"`` (dense labels)."""
    if kind not in _DECODERS:
        raise ConfigError(f"unknown decoder {kind!r}; use one of {sorted(_DECODERS)}.")
    return _DECODERS[kind](in_channels, num_classes, **kwargs)


def _dense_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Per-sample mean CE over valid pixels; logits upsampled (bilinear) to the labels' ``[H, W]``."""
    if logits.dim() != 4:
        raise InputError(
            f"dense labels {tuple(labels.shape)} need logits [B, K, h, w]; got {tuple(logits.shape)} "
            "(use the 'fcn' decoder for segmentation)."
        )
    logits = resize_to(logits, labels)
    pixel = F.cross_entropy(logits.float(), labels.long(), ignore_index=ignore_index, reduction="none")  # [B, H, W]
    valid = (labels != ignore_index).flatten(1).to(pixel.dtype)
    return (pixel.flatten(1) * valid).sum(1) / valid.sum(1).clamp(min=1.0)


def _heatmap_mse(logits: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE to heatmaps ``[B, K, h, w]``; logits upsampled (bilinear) to the heatmaps' size."""
    if logits.dim() != 4 or logits.shape[1] != heatmaps.shape[1]:
        raise InputError(
            f"heatmap labels {tuple(heatmaps.shape)} need logits [B, K={heatmaps.shape[1]}, h, w]; "
            f"got {tuple(logits.shape)}."
        )
    return (resize_to(logits, heatmaps).float() - heatmaps.float()).pow(2).flatten(1).mean(1)


def decoder_task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor | Mapping[str, torch.Tensor],
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Per-sample task loss ``[B]`` of decoder g (its negation is the policy's reward).

    - classification: ``logits [B, K]``, ``labels LongTensor[B]`` -> cross-entropy per sample;
    - segmentation: ``logits [B, K, h, w]``, ``labels LongTensor[B, H, W]`` (``ignore_index`` = 255)
      -> logits bilinearly upsampled to ``[H, W]``, CE averaged over each sample's valid pixels
      (a sample with no valid pixel gets 0);
    - landmarks: ``labels`` a dict with ``heatmaps [B, K, h, w]`` -> per-sample MSE.
    """
    if isinstance(labels, Mapping):
        if "heatmaps" not in labels:
            raise InputError(f"dict labels need a 'heatmaps' entry [B, K, h, w]; got keys {sorted(labels)}.")
        return _heatmap_mse(logits, labels["heatmaps"])
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"labels must be a LongTensor [B] or [B, H, W]; got {type(labels).__name__}.")
    if logits.shape[0] != labels.shape[0]:
        raise InputError(
            f"decoder logits {tuple(logits.shape)} and labels {tuple(labels.shape)} have different batch sizes."
        )
    if labels.dim() == 1:
        if logits.dim() != 2:
            raise InputError(
                f"class labels {tuple(labels.shape)} need logits [B, K]; got {tuple(logits.shape)} "
                "(use the 'linear' or 'mlp' decoder for classification)."
            )
        return F.cross_entropy(logits.float(), labels.long(), reduction="none")
    if labels.dim() == 3:
        return _dense_ce(logits, labels, ignore_index)
    raise InputError(
        f"labels must be LongTensor [B] (classes) or [B, H, W] (segmentation); got {tuple(labels.shape)}."
    )
