"""The named layers of a diffusers UNet and how a teacher reads one: the model's own forward, stopped.

Layers: ``mid`` (the mid block's output), ``mid_resnet2_conv2`` (the authors' layer: the second mid
resnet's ``conv2`` output, before its residual add), ``down.{i}`` / ``up.{i}`` (down / up block
``i``'s output, after its down- / up-sampler). Each teacher checks which its UNet has.

Rather than a hand-written copy of the UNet's forward, a teacher runs the model's own ``forward`` and
stops it once the layer's module has given its output (`output_of`): an encoder layer costs the
encoder half, a decoder layer (DDAE, Xiang et al., 2023, finds a DDPM's most linearly separable
features there) the forward up to that block.

Shapes of the decoder layers: up block ``i`` outputs ``reversed(block_out_channels)[i]`` channels at
the mid block's side times ``2 ** min(i + 1, n - 1)`` (every up block but the last up-samples), ``n`` blocks.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["UP_LAYER", "up_index", "up_feature_shape", "layer_module", "output_of"]

#: ``up.{i}``: the output of up block ``i`` (after its up-sampler, if any)
UP_LAYER = re.compile(r"^up\.(\d+)$")


def up_index(layer: str) -> int | None:
    """``i`` of an ``"up.{i}"`` layer name, else None."""
    match = UP_LAYER.match(layer)
    return int(match.group(1)) if match else None


def up_feature_shape(block_out_channels: Sequence[int], index: int, side: tuple[int, int]) -> tuple[int, int, int]:
    """(C', h, w) of up block ``index``'s output in a UNet fed ``side = (H, W)`` (its input, latents for a latent UNet)."""
    blocks = len(block_out_channels)
    halvings = blocks - 1 - min(index + 1, blocks - 1)
    return (int(list(reversed(block_out_channels))[index]), side[0] // 2**halvings, side[1] // 2**halvings)


def layer_module(unet: nn.Module, layer: str) -> nn.Module:
    """The submodule of a diffusers UNet whose output is the feature at ``layer`` (a name the teacher has checked)."""
    if layer == "mid":
        return unet.mid_block
    if layer == "mid_resnet2_conv2":
        return unet.mid_block.resnets[1].conv2
    kind, index = layer.split(".")
    return (unet.up_blocks if kind == "up" else unet.down_blocks)[int(index)]


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
