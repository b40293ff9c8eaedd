"""DiffusionTeacher: a frozen diffusers `UNet2DModel` run up to a named layer.

The teacher runs `UNet2DModel.forward` itself and stops it once the layer's module has given its
output (`unet_layers.output_of`): an encoder layer never runs the up path or ``conv_out``.

Layers:
- ``"mid"`` (default): the mid-block output ``[B, C_last, H / 2**n, W / 2**n]``.
- ``"mid_resnet2_conv2"``: the authors' layer, the second mid-block resnet's ``conv2`` output
  before its residual add (and before ``output_scale_factor``).
- ``"down.{i}"``: the output of down block ``i`` (after its down-sampler, if any).
- ``"up.{i}"``: the output of up block ``i`` (after its up-sampler, if any), in the decoder.

Input: images in [-1, 1] (``x * 2 - 1`` on [0, 1] images; never ImageNet normalisation), one
integer time step per sample in ``[0, num_train_timesteps)``. Clean input (the paper's
z(t) = s(x, t)) is the default; ``noise=True`` feeds ``x_t`` from the model's own scheduler.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from diffusers import DDPMScheduler, UNet2DModel
from torch import nn

from ..errors import ConfigError, InputError
from ..normalize import minus_one_one
from .inputs import InputChecks
from .identity import weights_sha256
from .unet_files import load_unet, teacher_root
from .unet_layers import check_layer, layer_module, layer_shape, output_of

__all__ = ["DiffusionTeacher", "load_unet"]


# ---------------------------------------------------------------------------- the teacher
def _as_class_map(class_map: torch.Tensor | Mapping[int, int] | None) -> torch.Tensor | None:
    """A LongTensor[num_dataset_classes]: dataset label -> model class id (-1 = unmapped)."""
    if class_map is None:
        return None
    if isinstance(class_map, Mapping):
        table = torch.full((max(int(k) for k in class_map) + 1,), -1, dtype=torch.long)
        for label, model_id in class_map.items():
            table[int(label)] = int(model_id)
        return table
    table = torch.as_tensor(class_map)
    if table.dim() != 1 or table.dtype.is_floating_point:
        raise ConfigError(f"class_map must be a 1-D integer tensor (dataset label -> model class id), got {tuple(table.shape)} {table.dtype}")
    return table.long()


class DiffusionTeacher(nn.Module):
    """A frozen diffusers UNet2DModel, run only up to ``layer``.

    Args:
        unet: a `UNet2DModel`, a local folder (pipeline folder with ``unet/``, bare UNet folder,
            or the legacy ``google/ddpm-*`` layout with the UNet config at the root), or a Hub id.
        layer: ``"mid"``, ``"mid_resnet2_conv2"``, ``"down.{i}"`` or ``"up.{i}"``.
        noise: feed ``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps`` instead of the clean image.
        scheduler: the DDPMScheduler for ``noise`` (default: the folder's own, else the default
            ``DDPMScheduler(num_train_timesteps=...)``).
        class_map: for class-conditional UNets only: dataset label -> model class id
            (LongTensor or Mapping). Never pass dataset labels unmapped: the authors fed
            Tiny-ImageNet's 0..199 as ImageNet ids, which name other classes.

    Forward: ``x [B, C, H, W]`` in [-1, 1], ``t LongTensor[B]`` in ``[0, T)``,
    ``class_labels LongTensor[B]`` (dataset labels; ignored by unconditional teachers)
    -> feature ``[B, C', h, w]``. Runs under ``torch.no_grad``: the teacher never gets gradients.
    """

    #: what `to_input` gives: [-1, 1]; the time step is part of its input
    expects = "minus_one_one"
    time_conditioned = True
    timesteps = None  # every one of 0..T-1

    def __init__(
        self,
        unet: Any,
        *,
        layer: str = "mid",
        noise: bool = False,
        scheduler: Any = None,
        class_map: torch.Tensor | Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        own_scheduler = None
        self.source = str(unet) if isinstance(unet, (str, Path)) else str(getattr(unet.config, "_name_or_path", "") or "")
        self.root: Path | None = None  # the folder its weights were read from (None: built from a module)
        if isinstance(unet, (str, Path)):
            self.root = teacher_root(unet)
            unet, own_scheduler = load_unet(self.root)
        if not isinstance(unet, UNet2DModel):
            raise ConfigError(f"DiffusionTeacher wraps a diffusers UNet2DModel (or its folder / Hub id), got {type(unet).__name__}")
        if unet.config.time_embedding_type == "fourier":
            raise ConfigError("DiffusionTeacher takes DDPM-style UNets (positional/learned time embedding), not Fourier (score-SDE) ones")
        self.unet = unet
        self.layer = check_layer(self.unet, layer)
        self.noise = bool(noise)
        self.scheduler = scheduler or own_scheduler or DDPMScheduler(
            num_train_timesteps=unet.config.num_train_timesteps or 1000
        )
        table = _as_class_map(class_map)
        if table is not None and not self.class_conditional:
            raise ConfigError("class_map was given but the UNet is unconditional (no num_class_embeds / class_embed_type)")
        num_classes = unet.config.num_class_embeds
        if table is not None and num_classes and int(table.max()) >= num_classes:
            raise ConfigError(f"class_map names model class {int(table.max())} but the UNet has {num_classes} classes")
        self.register_buffer("class_map", table, persistent=False)
        self.check_input = InputChecks(self.in_channels, 2**self.num_downsamples, self.num_train_timesteps, self.sample_size)
        self.unet.requires_grad_(False)
        super().train(False)

    # -------------------------------------------------------------- properties
    @property
    def class_conditional(self) -> bool:
        return self.unet.class_embedding is not None

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def weights_sha256(self) -> str:
        """The hash of the weight files it was read from (`identity.weights_sha256`), what a feature cache records."""
        return weights_sha256(self.root, self.source)

    @property
    def sample_size(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def in_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def num_downsamples(self) -> int:
        """How many times the encoder halves the image (every down block but the last)."""
        return len(self.unet.down_blocks) - 1

    @property
    def feature_channels(self) -> int:
        return self.feature_shape[0]

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C', h, w) of the feature at ``sample_size``."""
        return layer_shape(self.unet, self.layer, self.sample_size)

    def describe(self) -> dict[str, Any]:
        """What a cache manifest records of this teacher besides its weights."""
        return {"kind": "unet", "vae": "none (pixel space)", "layer": self.layer,
                "conditioning": "class map" if self.class_map is not None else "none"}

    def train(self, mode: bool = True) -> DiffusionTeacher:
        """Always eval: the teacher is frozen (dropout off)."""
        return super().train(False)

    # -------------------------------------------------------------- checks
    def _class_ids(self, class_labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if not self.class_conditional:
            return None  # unconditional teacher: dataset labels play no part
        if self.class_map is None:
            raise InputError(
                "this teacher is class-conditional: give DiffusionTeacher a class_map (dataset label -> model class id), "
                "e.g. repfusion_zoo.teachers.tinyimagenet_class_map(wnids) for Tiny-ImageNet on the ImageNet ADM. "
                "Dataset label ids are not the model's class ids (the authors' bug: Tiny-ImageNet 0..199 fed as ImageNet ids)"
            )
        if class_labels is None:
            raise InputError("this teacher is class-conditional: pass class_labels (dataset labels, LongTensor[B])")
        labels = torch.as_tensor(class_labels, device=self.class_map.device).long()
        if labels.shape != (batch,):
            raise InputError(f"class_labels must have shape [B]=[{batch}], got {tuple(labels.shape)}")
        outside = (labels < 0) | (labels >= len(self.class_map))
        if bool(outside.any()):
            raise InputError(
                f"class labels {labels[outside].unique().tolist()} are outside the class_map (covers 0..{len(self.class_map) - 1}); "
                "give a class_map with an entry for every dataset label"
            )
        ids = self.class_map[labels]
        if int(ids.min()) < 0:
            raise InputError(f"dataset labels {labels[ids < 0].unique().tolist()} have no entry in the class_map")
        return ids

    # -------------------------------------------------------------- forward
    def add_noise(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps with the model's own scheduler; ``[B, C, H, W]``."""
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.scheduler.add_noise(x, eps, t)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] dataset images -> the teacher's input, ``x * 2 - 1``."""
        return minus_one_one(images)

    def feature(self, images: torch.Tensor, t: torch.Tensor, *, labels: Any = None, index: torch.Tensor | None = None,
                flip: torch.Tensor | None = None) -> torch.Tensor:
        """The feature RepFusion distils, from what a training batch holds (every teacher has this method).

        ``images [B, C, H, W]`` in [-1, 1] as augmented, ``t [B]``; ``labels`` (dataset labels) reach
        a class-conditional UNet only; ``index`` / ``flip`` (for a feature cache) are not needed here.
        Returns ``[B, C', h, w]`` (no grad).
        """
        return self(images, t, labels if self.class_conditional else None)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, H, W]`` in [-1, 1], ``t [B]`` -> feature ``[B, C', h, w]``."""
        t = self.check_input(x, t)
        class_ids = self._class_ids(class_labels, x.shape[0])
        x = x.to(dtype=self.unet.dtype)  # e.g. a bf16 / fp16 teacher fed fp32 images
        if self.noise:
            x = self.add_noise(x, t)
        unet = self.unet
        if unet.config.center_input_sample:
            x = (x + 1) / 2  # such a UNet maps [0, 1] to 2x - 1 itself; x is already in [-1, 1]
        return output_of(layer_module(unet, self.layer), lambda: unet(x, t, class_labels=class_ids))
