"""TransformerTeacher: a diffusion transformer (DiT) as a frozen feature teacher.

image ``[B, 3, H, W]`` in [-1, 1] -> the VAE's latent where the pipeline has a VAE (DiT works on
Stable Diffusion's latents; see `repfusion_zoo.teachers.latent.encode_latents`), else the image
itself -> the patch embedding (``pos_embed``) and the first K transformer blocks of a diffusers
`DiTTransformer2DModel` (or a `Transformer2DModel` on patches with DiT's ``ada_norm_zero``: the
same path), at time step t; tokens ``[B, N, D]`` reshaped to a feature map ``[B, D, h, w]`` (``h =
H_latent / patch_size``). A class-conditional DiT gets its null class (the label it was trained
to take for classifier-free guidance), so the features do not depend on a class. The rest of the
blocks, the final norm and the unpatchify never run.

Layers: ``"blocks.{K}"`` (after the first K blocks, 1 <= K <= the model's) and ``"mid"`` (= half of them).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel, Transformer2DModel
from torch import nn

from ..errors import ConfigError, TeacherNotFoundError
from .frozen import FrozenTeacher
from .inputs import InputChecks
from .latent import encode_latents

__all__ = ["TransformerTeacher"]

_BLOCKS = re.compile(r"^blocks\.(\d+)$")


class TransformerTeacher(FrozenTeacher):
    """A frozen DiT (and its VAE, if any) run to ``layer``. ``image_size``: the image side it is fed
    (default: the transformer's ``sample_size`` times the VAE's down-sampling)."""

    kind = "transformer"

    def __init__(self, transformer: nn.Module, vae: AutoencoderKL | None = None, *, layer: str = "mid",
                 scheduler: Any = None, image_size: int | None = None, source: str = "") -> None:
        super().__init__()
        if not isinstance(transformer, (DiTTransformer2DModel, Transformer2DModel)):
            raise ConfigError(f"TransformerTeacher takes a diffusers DiTTransformer2DModel, got {type(transformer).__name__}")
        if getattr(transformer, "is_input_patches", True) is False or transformer.config.norm_type != "ada_norm_zero":
            raise ConfigError("TransformerTeacher takes DiT-style transformers (patch input, ada_norm_zero); this one "
                              f"(norm_type {transformer.config.norm_type!r}) needs another conditioning path")
        self.transformer, self.vae, self.source = transformer, vae, source
        self.blocks = self._check_layer(layer)
        self.layer = layer
        self._null_class  # noqa: B018  (a DiT without a null class is refused here, not at the first batch)
        self.scheduler = scheduler or DDPMScheduler(num_train_timesteps=1000)
        self.vae_factor = 1 if vae is None else 2 ** (len(vae.config.block_out_channels) - 1)
        size = int(image_size or transformer.config.sample_size * self.vae_factor)
        self.sample_size = (size, size)
        channels = transformer.config.in_channels if vae is None else vae.config.in_channels
        self.check_input = InputChecks(channels, self.vae_factor * transformer.config.patch_size,
                                       self.num_train_timesteps, self.sample_size)
        self.requires_grad_(False)
        super().train(False)

    @classmethod
    def from_folder(cls, root: str | Path, *, layer: str = "mid", image_size: int | None = None,
                    source: str = "") -> TransformerTeacher:
        """From a pipeline folder (``transformer/``, optional ``vae/``, ``scheduler/``, as
        DiTPipeline.save_pretrained writes) or a bare transformer folder; safetensors only."""
        root = Path(root)
        folder = root / "transformer" if (root / "transformer" / "config.json").is_file() else root
        if not (folder / "config.json").is_file():
            raise TeacherNotFoundError(f"no diffusion transformer in {root}: expected transformer/config.json (a DiT pipeline folder)")
        name = json.loads((folder / "config.json").read_text()).get("_class_name")
        model_cls = Transformer2DModel if name == "Transformer2DModel" else DiTTransformer2DModel
        transformer = model_cls.from_pretrained(folder, use_safetensors=True)
        vae = AutoencoderKL.from_pretrained(root / "vae", use_safetensors=True) if (root / "vae" / "config.json").is_file() else None
        scheduler_file = root / "scheduler" / "scheduler_config.json"
        scheduler = DDPMScheduler.from_config(json.loads(scheduler_file.read_text())) if scheduler_file.is_file() else None
        teacher = cls(transformer, vae, layer=layer, scheduler=scheduler, image_size=image_size, source=source or str(root))
        teacher.root = root
        return teacher

    # -------------------------------------------------------------- properties
    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def in_channels(self) -> int:
        return self.check_input.in_channels

    @property
    def num_layers(self) -> int:
        return len(self.transformer.transformer_blocks)

    @property
    def feature_channels(self) -> int:
        return int(self.transformer.inner_dim)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(D, h, w) at ``sample_size``: one position per patch of the latent."""
        side = self.sample_size[0] // self.vae_factor // self.transformer.config.patch_size
        return (self.feature_channels, side, side)

    def describe(self) -> dict[str, Any]:
        """What a cache manifest records of this teacher."""
        vae = "none (pixel space)" if self.vae is None else f"AutoencoderKL, latent x{self.vae_factor} down"
        return {"kind": self.kind, "vae": vae, "conditioning": "null class" if self._null_class is not None else "none",
                "layer": f"blocks.{self.blocks} of {self.num_layers}"}

    def _check_layer(self, layer: str) -> int:
        count = len(self.transformer.transformer_blocks)
        if layer == "mid":
            return max(1, count // 2)
        match = _BLOCKS.match(layer)
        if match and 1 <= int(match.group(1)) <= count:
            return int(match.group(1))
        raise ConfigError(f"layer {layer!r} does not exist in this transformer; choose 'mid' or 'blocks.K' with 1 <= K <= {count}")

    @property
    def _null_class(self) -> int | None:
        """The label id of 'no class' (the classifier-free guidance embedding), None for an unconditional DiT."""
        embedder = getattr(self.transformer.transformer_blocks[0].norm1, "emb", None)
        labels = getattr(embedder, "class_embedder", None)
        if labels is None:
            return None
        if not labels.dropout_prob > 0:
            raise ConfigError("this class-conditional DiT was trained without label dropout: it has no null class, "
                              "so its features cannot be taken without a class")
        return int(labels.num_classes)

    # -------------------------------------------------------------- forward
    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, H, W]`` in [-1, 1], ``t [B]`` -> the tokens after ``blocks`` blocks as ``[B, D, h, w]``."""
        t = self.check_input(x, t)
        model = self.transformer
        latents = x if self.vae is None else encode_latents(self.vae, x)
        latents = latents.to(model.dtype)
        height, width = (side // model.config.patch_size for side in latents.shape[-2:])
        tokens = model.pos_embed(latents)
        null = None if self._null_class is None else torch.full_like(t, self._null_class)
        for block in model.transformer_blocks[: self.blocks]:
            tokens = block(tokens, timestep=t, class_labels=null)
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, height, width)
