"""OpenAI guided-diffusion (ADM) UNet checkpoints -> diffusers `UNet2DModel`; Tiny-ImageNet class map.

The whole UNet converts exactly (encoder, middle block, decoder and output head), for the
ADM family the paper used (the ImageNet 64x64 model's flags: ``--attention_resolutions 32,16,8
--class_cond True --diffusion_steps 1000 --dropout 0.1 --image_size 64 --learn_sigma True
--noise_schedule cosine --num_channels 192 --num_head_channels 64 --num_res_blocks 3
--resblock_updown True --use_new_attention_order True --use_fp16 True --use_scale_shift_norm True``):

- time embedding: ADM's ``[cos, sin]`` sinusoid = diffusers ``Timesteps(flip_sin_to_cos=True, freq_shift=0)``;
- ``ResBlock`` = ``ResnetBlock2D`` (GroupNorm 32, eps 1e-5, ``scale_shift`` or ``default`` time
  conditioning, 1x1 skip conv); ``resblock_updown`` = ``downsample_type/upsample_type="resnet"``
  (average-pool / nearest up-sampling inside the resnet, as ADM does);
- ``AttentionBlock`` = diffusers ``Attention`` (the fused ``qkv`` 1x1 conv is split into
  ``to_q/to_k/to_v``; both the new (QKVAttention) and the legacy head order are handled);
- ``label_emb`` = ``class_embedding`` (``num_class_embeds``).

Not expressible (a ConfigError says so): ``channel_mult[0] != 1`` (the 512 px model: diffusers
ties the sinusoid width to ``block_out_channels[0]``), and ``num_heads > 1`` with
``num_head_channels == -1`` when attention layers of different widths exist (diffusers has one
head width for all blocks). ``use_fp16`` models are converted to fp32 weights (ADM keeps its
master weights in fp32; only the torso runs in fp16 there).

The learned-sigma output (6 channels) is kept as ``out_channels=6``; the teacher never uses it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file
from timm.data import ImageNetInfo

from ..errors import ConfigError, InputError, TeacherNotFoundError, UnsafeWeightsError, WeightsMismatchError

__all__ = [
    "ADMConfig",
    "ADM_IMAGENET64",
    "adm_unet_config",
    "convert_adm_state_dict",
    "convert_adm_checkpoint",
    "imagenet_wnids",
    "tinyimagenet_class_map",
]


@dataclass(frozen=True)
class ADMConfig:
    """guided-diffusion's ``create_model`` flags (``script_util.model_and_diffusion_defaults`` names)."""

    image_size: int = 64
    num_channels: int = 192
    num_res_blocks: int = 3
    channel_mult: tuple[float, ...] = ()
    learn_sigma: bool = True
    class_cond: bool = True
    num_classes: int = 1000
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    num_heads: int = 4
    num_head_channels: int = 64
    use_scale_shift_norm: bool = True
    dropout: float = 0.1
    resblock_updown: bool = True
    use_new_attention_order: bool = True
    conv_resample: bool = True
    diffusion_steps: int = 1000
    noise_schedule: str = "cosine"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mult(self) -> tuple[float, ...]:
        if self.channel_mult:
            return tuple(self.channel_mult)
        defaults = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
        if self.image_size not in defaults:
            raise ConfigError(f"ADM image_size {self.image_size} has no default channel_mult: pass channel_mult")
        return defaults[self.image_size]


#: the ImageNet 64x64 class-conditional ADM (64x64_diffusion.pt) the paper used for Tiny-ImageNet
ADM_IMAGENET64 = ADMConfig()


def _head_dim(cfg: ADMConfig, attention_widths: Iterable[int]) -> int | None:
    if cfg.num_head_channels != -1:
        return cfg.num_head_channels
    dims = {width // cfg.num_heads for width in attention_widths}
    if cfg.num_heads == 1:
        return None  # diffusers: head width = the block's channels, one head
    if len(dims) != 1:
        raise ConfigError(
            f"ADM num_heads={cfg.num_heads} with num_head_channels=-1 gives head widths {sorted(dims)}: "
            "diffusers' UNet2DModel has one head width for all blocks, so this model cannot be converted exactly"
        )
    return dims.pop()


def adm_unet_config(cfg: ADMConfig = ADM_IMAGENET64) -> dict[str, Any]:
    """The `UNet2DModel` config that reproduces an ADM UNet layer for layer."""
    mult = cfg.mult
    if mult[0] != 1:
        raise ConfigError(
            f"ADM channel_mult {mult} starts with {mult[0]} != 1: diffusers ties the time sinusoid width to "
            "block_out_channels[0], ADM to num_channels; this model cannot be converted exactly"
        )
    ds_with_attention = {cfg.image_size // res for res in cfg.attention_resolutions}
    attention = [2**level in ds_with_attention for level in range(len(mult))]
    widths = [int(m * cfg.num_channels) for m in mult]
    plain_down = "ResnetDownsampleBlock2D" if cfg.resblock_updown else "DownBlock2D"
    plain_up = "ResnetUpsampleBlock2D" if cfg.resblock_updown else "UpBlock2D"
    return {
        "sample_size": cfg.image_size,
        "in_channels": 3,
        "out_channels": 6 if cfg.learn_sigma else 3,
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "down_block_types": [("AttnDownBlock2D" if a else plain_down) for a in attention],
        "up_block_types": [("AttnUpBlock2D" if a else plain_up) for a in reversed(attention)],
        "block_out_channels": widths,
        "layers_per_block": cfg.num_res_blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": 1,
        "downsample_type": "resnet" if cfg.resblock_updown else "conv",
        "upsample_type": "resnet" if cfg.resblock_updown else "conv",
        "dropout": cfg.dropout,
        "act_fn": "silu",
        "attention_head_dim": _head_dim(cfg, [w for w, a in zip(widths, attention) if a] + [widths[-1]]),
        "norm_num_groups": 32,
        "attn_norm_num_groups": 32,
        "norm_eps": 1e-5,
        "resnet_time_scale_shift": "scale_shift" if cfg.use_scale_shift_norm else "default",
        "add_attention": True,
        "num_class_embeds": cfg.num_classes if cfg.class_cond else None,
        "num_train_timesteps": cfg.diffusion_steps,
    }


# ---------------------------------------------------------------------------- state-dict mapping
def _resnet(dst: str, src: str) -> dict[str, str]:
    pairs = {
        "norm1": "in_layers.0",
        "conv1": "in_layers.2",
        "time_emb_proj": "emb_layers.1",
        "norm2": "out_layers.0",
        "conv2": "out_layers.3",
        "conv_shortcut": "skip_connection",
    }
    return {f"{dst}.{d}": f"{src}.{s}" for d, s in pairs.items()}


def _attention(out: dict[str, torch.Tensor], adm: Mapping[str, torch.Tensor], dst: str, src: str, heads: int, new_order: bool) -> None:
    """ADM's fused qkv 1x1 conv -> to_q / to_k / to_v linears (new or legacy head order)."""
    for suffix in ("weight", "bias"):
        qkv = adm[f"{src}.qkv.{suffix}"]
        proj = adm[f"{src}.proj_out.{suffix}"]
        if suffix == "weight":  # Conv1d [out, in, 1] -> Linear [out, in]
            qkv, proj = qkv[..., 0], proj[..., 0]
        width = qkv.shape[0] // 3
        if new_order:  # QKVAttention: [q (all heads); k; v]
            q, k, v = qkv.chunk(3, dim=0)
        else:  # QKVAttentionLegacy: per head [q_h; k_h; v_h]
            per_head = qkv.reshape(heads, 3, width // heads, *qkv.shape[1:])
            q, k, v = (per_head[:, i].reshape(width, *qkv.shape[1:]) for i in range(3))
        out[f"{dst}.to_q.{suffix}"], out[f"{dst}.to_k.{suffix}"], out[f"{dst}.to_v.{suffix}"] = q, k, v
        out[f"{dst}.to_out.0.{suffix}"] = proj
        out[f"{dst}.group_norm.{suffix}"] = adm[f"{src}.norm.{suffix}"]


def _copy(out: dict[str, torch.Tensor], adm: Mapping[str, torch.Tensor], names: Mapping[str, str]) -> None:
    for dst, src in names.items():
        for suffix in ("weight", "bias"):
            if f"{src}.{suffix}" in adm:
                out[f"{dst}.{suffix}"] = adm[f"{src}.{suffix}"]


def convert_adm_state_dict(adm: Mapping[str, torch.Tensor], cfg: ADMConfig, unet: UNet2DModel) -> dict[str, torch.Tensor]:
    """ADM ``UNetModel`` state dict -> the `UNet2DModel` state dict of ``unet`` (built from `adm_unet_config`)."""
    out: dict[str, torch.Tensor] = {}
    names = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "class_embedding": "label_emb",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }

    def attention(dst: str, src: str, module) -> None:
        _attention(out, adm, dst, src, module.heads, cfg.use_new_attention_order)

    def layer(dst: str, j: int, block, src: str) -> None:
        """Resnet ``j`` of a diffusers block (+ its attention) <- ADM's ``src.0`` (+ ``src.1``)."""
        names.update(_resnet(f"{dst}.resnets.{j}", f"{src}.0"))
        if getattr(block, "attentions", None):
            attention(f"{dst}.attentions.{j}", f"{src}.1", block.attentions[j])

    def resampler(dst: str, src: str, conv: str) -> None:
        """A down/up-sampler: an ADM ResBlock (``resblock_updown``) or a plain conv (``src.conv``)."""
        if cfg.resblock_updown:
            names.update(_resnet(dst, src))
        else:
            names[f"{dst}.conv"] = f"{src}.{conv}"

    src = 1
    for level, block in enumerate(unet.down_blocks):
        for j, _ in enumerate(block.resnets):
            layer(f"down_blocks.{level}", j, block, f"input_blocks.{src}")
            src += 1
        if block.downsamplers is not None:
            resampler(f"down_blocks.{level}.downsamplers.0", f"input_blocks.{src}.0", "op")
            src += 1
    names.update(_resnet("mid_block.resnets.0", "middle_block.0"))
    attention("mid_block.attentions.0", "middle_block.1", unet.mid_block.attentions[0])
    names.update(_resnet("mid_block.resnets.1", "middle_block.2"))
    src = 0
    for level, block in enumerate(unet.up_blocks):
        for j, _ in enumerate(block.resnets):
            layer(f"up_blocks.{level}", j, block, f"output_blocks.{src}")
            if j == len(block.resnets) - 1 and block.upsamplers is not None:
                last = 2 if getattr(block, "attentions", None) else 1
                resampler(f"up_blocks.{level}.upsamplers.0", f"output_blocks.{src}.{last}", "conv")
            src += 1
    _copy(out, adm, names)
    return {key: value.float() for key, value in out.items()}


def _load_adm_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise TeacherNotFoundError(f"ADM checkpoint {path} not found: expected guided-diffusion's .pt (e.g. 64x64_diffusion.pt)")
    if path.suffix == ".safetensors":
        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses anything but tensors / plain containers
        raise UnsafeWeightsError(
            f"{path} is not a plain tensor state dict (torch.load(weights_only=True) refused it: {error})"
        ) from error
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise UnsafeWeightsError(f"{path} does not hold a flat state dict of tensors (guided-diffusion's UNet .pt does)")
    return dict(state)


def convert_adm_checkpoint(
    checkpoint: str | Path | Mapping[str, torch.Tensor], cfg: ADMConfig = ADM_IMAGENET64, out_dir: str | Path | None = None
) -> UNet2DModel:
    """An ADM ``.pt`` (or its state dict) -> `UNet2DModel`; ``out_dir`` also saves it (safetensors) with its scheduler.

    The saved folder is a pipeline folder (``unet/`` + ``scheduler/``) that `DiffusionTeacher` loads;
    the scheduler is the ADM's (``squaredcos_cap_v2`` for ``noise_schedule="cosine"``).
    """
    adm = checkpoint if isinstance(checkpoint, Mapping) else _load_adm_file(checkpoint)
    unet = UNet2DModel(**adm_unet_config(cfg))
    state = convert_adm_state_dict(adm, cfg, unet)
    expected = unet.state_dict()
    missing = sorted(set(expected) - set(state))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or shapes:
        raise WeightsMismatchError(
            f"ADM checkpoint does not fit the ADMConfig {cfg}: missing {missing[:8]}{'...' if len(missing) > 8 else ''}; "
            f"shape mismatches {shapes[:8]}. Check image_size / num_channels / num_res_blocks / class_cond / learn_sigma"
        )
    unet.load_state_dict(state, strict=True)
    unet.eval()
    if out_dir is not None:
        schedule = {"cosine": "squaredcos_cap_v2", "linear": "linear"}[cfg.noise_schedule]
        scheduler = DDPMScheduler(num_train_timesteps=cfg.diffusion_steps, beta_schedule=schedule)
        out_dir = Path(out_dir)
        unet.save_pretrained(out_dir / "unet", safe_serialization=True)
        scheduler.save_pretrained(out_dir / "scheduler")
    return unet


# ---------------------------------------------------------------------------- class map
def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (sorted; timm's copy)."""
    return list(ImageNetInfo("imagenet-1k").label_names())


def tinyimagenet_class_map(wnids: list[str]) -> torch.Tensor:
    """LongTensor[len(wnids)]: Tiny-ImageNet label i (its wnid ``wnids[i]``) -> ImageNet-1k class index.

    ``wnids`` is the dataset's class order (e.g. the sorted ``wnids.txt``, as an ImageFolder
    orders them). The authors fed the raw 0..199 labels, which name other ImageNet classes.
    """
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    unknown = [w for w in wnids if w not in index]
    if unknown:
        raise InputError(
            f"{len(unknown)} WordNet ids are not ImageNet-1k classes: {unknown[:5]}; pass the dataset's class "
            "WordNet ids in label order (e.g. Tiny-ImageNet's sorted wnids.txt), not names or label numbers"
        )
    return torch.tensor([index[w] for w in wnids], dtype=torch.long)
