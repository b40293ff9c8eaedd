"""LatentUNetTeacher: a latent diffusion model (the Stable Diffusion family) as a frozen feature teacher.

image ``[B, 3, H, W]`` in [-1, 1] -> the VAE encoder's latent mean (minus ``shift_factor`` where the
VAE has one, times ``scaling_factor``: what the denoiser was trained on) ``[B, 4, H/8, W/8]`` ->
a diffusers `UNet2DConditionModel`'s own forward, its cross-attention attending to a fixed
conditioning, stopped once the layer's block has given its output (`unet_layers.output_of`): an
encoder layer never runs the up blocks or ``conv_out``. The VAE decoder never runs.

The conditioning (``[1, L, D]``, recorded in ``conditioning_source``):
- ``"stored"``: ``conditioning.safetensors`` beside the pipeline's folders (key
  ``encoder_hidden_states``), e.g. written once by `save_conditioning`;
- ``"empty-prompt"``: the pipeline's text encoder applied once to the empty prompt (needs
  ``transformers``, the ``latent`` extra);
- ``"zeros"``: zeros of the UNet's cross-attention width, ``L = 77`` tokens.

Layers: those of `unet_layers` (``"mid"``, the authors' ``"mid_resnet2_conv2"``, ``"down.{i}"``,
``"up.{i}"``), as for `DiffusionTeacher`. Same interface as `DiffusionTeacher`: ``forward(x, t) -> [B, C', h, w]``,
``feature``, ``to_input``, ``num_train_timesteps``, ``feature_shape``; clean input only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file

from ..errors import ConfigError, MissingExtraError, TeacherNotFoundError
from .frozen import FrozenTeacher
from .inputs import InputChecks
from .unet_layers import check_layer, layer_module, layer_shape, output_of

__all__ = ["LatentUNetTeacher", "encode_latents", "save_conditioning", "CONDITIONING_FILE", "CONDITIONINGS"]

#: the stored conditioning of a latent teacher, beside its pipeline's folders
CONDITIONING_FILE = "conditioning.safetensors"
#: how a latent teacher's cross-attention conditioning is made ("auto": stored, else empty-prompt, else zeros)
CONDITIONINGS = ("auto", "stored", "empty-prompt", "zeros")
#: tokens of the zeros conditioning (CLIP's context length, what SD's cross-attention usually sees)
ZERO_TOKENS = 77


def encode_latents(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> the latent the denoiser sees, ``(mean - shift) * scale`` ``[B, c, H/f, W/f]``."""
    latents = vae.encode(x.to(vae.dtype)).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None)
    if shift is not None:
        latents = latents - shift
    return latents * vae.config.scaling_factor


def save_conditioning(folder: str | Path, encoder_hidden_states: torch.Tensor) -> Path:
    """Store ``[1, L, D]`` as the conditioning of the latent teacher in ``folder`` (its ``"stored"`` source)."""
    path = Path(folder) / CONDITIONING_FILE
    save_file({"encoder_hidden_states": encoder_hidden_states.detach().float().contiguous().cpu()}, str(path))
    return path


class LatentUNetTeacher(FrozenTeacher):
    """A frozen VAE + `UNet2DConditionModel`, run to ``layer`` with a fixed ``conditioning`` ``[1, L, D]``.

    ``image_size``: the image side it is fed (any multiple of the VAE's and the UNet's down-sampling;
    default the VAE's ``sample_size``). ``source``: a name for records (the folder or Hub id).
    """

    kind = "latent-unet"

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, *, conditioning: torch.Tensor,
                 conditioning_source: str, layer: str = "mid", scheduler: Any = None, image_size: int | None = None,
                 source: str = "") -> None:
        super().__init__()
        if unet.config.addition_embed_type or unet.config.class_embed_type or unet.config.num_class_embeds:
            raise ConfigError("LatentUNetTeacher takes UNets conditioned on text only (Stable Diffusion 1.x / 2.x); this one "
                              "needs added or class embeddings (e.g. SDXL's text_time): not supported")
        if conditioning.dim() != 3 or conditioning.shape[0] != 1 or conditioning.shape[-1] != unet.config.cross_attention_dim:
            raise ConfigError(f"the conditioning must be [1, L, {unet.config.cross_attention_dim}] (the UNet's cross-attention "
                              f"width), got {tuple(conditioning.shape)}")
        self.unet, self.vae, self.source, self.conditioning_source = unet, vae, source, conditioning_source
        self.register_buffer("conditioning", conditioning.to(unet.dtype))
        self.layer = check_layer(unet, layer, "latent UNet")
        self.scheduler = scheduler or DDPMScheduler(num_train_timesteps=1000)
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        size = int(image_size or vae.config.sample_size)
        self.sample_size = (size, size)
        self.check_input = InputChecks(vae.config.in_channels, self.vae_factor * 2 ** (len(unet.down_blocks) - 1),
                                       self.num_train_timesteps, self.sample_size)
        self.requires_grad_(False)
        super().train(False)

    # -------------------------------------------------------------- loading
    @classmethod
    def from_folder(cls, root: str | Path, *, layer: str = "mid", image_size: int | None = None,
                    conditioning: str = "auto", source: str = "") -> LatentUNetTeacher:
        """From a pipeline folder (``vae/``, ``unet/``, ``scheduler/``, optional ``text_encoder/`` +
        ``tokenizer/`` or ``conditioning.safetensors``), safetensors only."""
        root = Path(root)
        for part in ("vae", "unet"):
            if not (root / part / "config.json").is_file():
                raise TeacherNotFoundError(f"latent teacher {root} has no {part}/config.json: expected a pipeline folder "
                                           "with vae/, unet/ and scheduler/ (as StableDiffusionPipeline.save_pretrained writes)")
        unet = UNet2DConditionModel.from_pretrained(root / "unet", use_safetensors=True)
        vae = AutoencoderKL.from_pretrained(root / "vae", use_safetensors=True)
        scheduler_file = root / "scheduler" / "scheduler_config.json"
        scheduler = DDPMScheduler.from_config(json.loads(scheduler_file.read_text())) if scheduler_file.is_file() else None
        tensor, made = _conditioning(root, conditioning, unet.config.cross_attention_dim)
        teacher = cls(unet, vae, conditioning=tensor, conditioning_source=made, layer=layer, scheduler=scheduler,
                   image_size=image_size, source=source or str(root))
        teacher.root = root
        return teacher

    # -------------------------------------------------------------- properties
    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def in_channels(self) -> int:
        return int(self.vae.config.in_channels)

    @property
    def feature_channels(self) -> int:
        return self.feature_shape[0]

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C', h, w) at ``sample_size`` (the UNet sees latents ``vae_factor`` times smaller)."""
        return layer_shape(self.unet, self.layer, (self.sample_size[0] // self.vae_factor, self.sample_size[1] // self.vae_factor))

    def describe(self) -> dict[str, Any]:
        """What a cache manifest records of this teacher."""
        return {"kind": self.kind, "vae": f"AutoencoderKL, latent x{self.vae_factor} down, scaling {self.vae.config.scaling_factor}",
                "conditioning": self.conditioning_source, "layer": self.layer}

    # -------------------------------------------------------------- forward
    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, 3, H, W]`` in [-1, 1], ``t [B]`` -> the feature at ``layer``, ``[B, C', h, w]``."""
        t = self.check_input(x, t)
        unet = self.unet
        latents = encode_latents(self.vae, x).to(unet.dtype)
        context = self.conditioning.expand(x.shape[0], -1, -1)
        return output_of(layer_module(unet, self.layer), lambda: unet(latents, t, encoder_hidden_states=context))


def _conditioning(root: Path, choice: str, width: int) -> tuple[torch.Tensor, str]:
    """The fixed ``[1, L, width]`` conditioning of the pipeline in ``root`` and how it was made (`CONDITIONINGS`)."""
    if choice not in CONDITIONINGS:
        raise ConfigError(f"conditioning {choice!r} is not one of {list(CONDITIONINGS)}")
    stored = root / CONDITIONING_FILE
    if choice == "stored" or choice == "auto" and stored.is_file():
        if not stored.is_file():
            raise TeacherNotFoundError(f"{stored} does not exist: store one with repfusion_zoo.teachers.save_conditioning")
        return load_file(str(stored))["encoder_hidden_states"], "stored"
    has_text = (root / "text_encoder").is_dir() and (root / "tokenizer").is_dir()
    if choice == "empty-prompt" or choice == "auto" and has_text:
        if not has_text:
            raise TeacherNotFoundError(f"{root} has no text_encoder/ + tokenizer/ for the empty-prompt conditioning")
        return _empty_prompt(root), "empty-prompt"
    return torch.zeros(1, ZERO_TOKENS, width), "zeros"


@torch.no_grad()
def _empty_prompt(root: Path) -> torch.Tensor:
    """The pipeline's text encoder on the empty prompt, ``[1, L, D]`` (as the pipelines encode ``""``)."""
    try:
        from transformers import AutoTokenizer, CLIPTextModel  # optional: the latent extra (text encoders)
    except ImportError as error:
        raise MissingExtraError.of("transformers", "the empty-prompt conditioning of a latent teacher", extra="latent") from error
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(root / "text_encoder", use_safetensors=True).eval()
    tokens = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
    return encoder(tokens.input_ids)[0].float()
