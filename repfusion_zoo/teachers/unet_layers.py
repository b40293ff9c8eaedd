"""The named layers of a diffusers UNet and how a teacher reads one: the model's own forward, stopped.

Layers: ``mid`` (the mid block's output), ``mid_resnet2_conv2`` (the authors' layer: the second mid
resnet's ``conv2`` output, before its residual add), ``down.{i}`` / ``up.{i}`` (down / up block
``i``'s output, after its down- / up-sampler). `check_layer` names the ones a UNet has, `layer_shape`
gives a layer's (C', h, w): one set of names and shapes for the pixel-space and the latent teacher.

Rather than a hand-written copy of the UNet's forward, a teacher runs the model's own ``forward`` and
stops it once the layer's module has given its output (`output_of`): an encoder layer costs the
encoder half, a decoder layer (DDAE, Xiang et al., 2023, finds a DDPM's most linearly separable
features there) the forward up to that block.
"""
from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["BLOCK_LAYER", "AUTHORS_LAYER", "block_of", "layer_names", "check_layer", "layer_shape", "layer_module",
           "output_of"]

#: ``down.{i}`` / ``up.{i}``: the output of down / up block ``i`` (after its down- / up-sampler, if any)
BLOCK_LAYER = re.compile(r"^(down|up)\.(\d+)$")
#: the authors' layer: the second mid resnet's ``conv2`` output, before its residual add
AUTHORS_LAYER = "mid_resnet2_conv2"


def block_of(layer: str) -> tuple[str, int] | None:
    """``("down", i)`` / ``("up", i)`` of a block layer name, else None."""
    match = BLOCK_LAYER.match(layer)
    return (match.group(1), int(match.group(2))) if match else None


def layer_names(unet: nn.Module) -> list[str]:
    """The layers a diffusers UNet (``UNet2DModel``, ``UNet2DConditionModel``) has, in the order of its forward."""
    names = [f"down.{i}" for i in range(len(unet.down_blocks))]
    if unet.mid_block is not None:
        resnets = getattr(unet.mid_block, "resnets", [])
        names += ["mid", AUTHORS_LAYER] if len(resnets) >= 2 and hasattr(resnets[1], "conv2") else ["mid"]
    return names + [f"up.{i}" for i in range(len(unet.up_blocks))]


def check_layer(unet: nn.Module, layer: str, what: str = "UNet") -> str:
    """``layer`` if ``unet`` has it, else a ConfigError naming the choices (``what``: the model, for the message)."""
    names = layer_names(unet)
    if layer not in names:
        raise ConfigError(f"layer {layer!r} does not exist in this {what}; choose one of {names}")
    return layer


def layer_shape(unet: nn.Module, layer: str, side: tuple[int, int]) -> tuple[int, int, int]:
    """(C', h, w) of ``layer`` in a UNet fed ``side = (H, W)`` (its input: latents for a latent UNet).

    Every down block but the last halves the side; every up block but the last doubles it back.
    """
    channels = [int(c) for c in unet.config.block_out_channels]
    downs = len(channels) - 1
    block = block_of(layer)
    if block is None:  # the mid block, at the encoder's smallest side
        width = int(unet.mid_block.resnets[1].conv2.out_channels) if layer == AUTHORS_LAYER else channels[-1]
        halvings = downs
    elif block[0] == "down":
        width, halvings = channels[block[1]], min(block[1] + 1, downs)
    else:
        width, halvings = channels[::-1][block[1]], downs - min(block[1] + 1, downs)
    return (width, side[0] // 2**halvings, side[1] // 2**halvings)


def layer_module(unet: nn.Module, layer: str) -> nn.Module:
    """The submodule of a diffusers UNet whose output is the feature at ``layer`` (a name the teacher has checked)."""
    if layer == "mid":
        return unet.mid_block
    if layer == AUTHORS_LAYER:
        return unet.mid_block.resnets[1].conv2
    kind, index = block_of(layer)
    return (unet.up_blocks if kind == "up" else unet.down_blocks)[index]


class _Reached(Exception):
    """Raised by `output_of`'s hook to end the forward once the module's output is in hand."""


def output_of(module: nn.Module, run: Callable[[], object]) -> torch.Tensor:
    """The output of ``module`` during ``run()`` (a forward of the model that holds it), the rest of that forward skipped.

    A module returning a tuple (diffusers' skip up blocks: ``(hidden_states, skip_sample)``) gives its first item.
    """
    captured: list[torch.Tensor] = []

    def stop(_module: nn.Module, _args: object, output: object) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _Reached

    handle = module.register_forward_hook(stop)
    try:
        run()
    except _Reached:
        return captured[0]
    finally:
        handle.remove()
    raise RuntimeError(f"the forward never ran {type(module).__name__}, so it has no output to return")
