"""Weights in and out as safetensors only, and the strict state-dict load.

Only safetensors are ever read: a pickle (``.bin``/``.pt``/``.pth``/...) offered as weights raises
`UnsafeWeightsError` without being opened by any unpickler. A state dict that does not fit a
model raises `WeightsMismatchError` listing missing / unexpected keys and shape mismatches, and
nothing is loaded.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import safetensors.torch
import torch
from safetensors import safe_open
from torch import nn

from ..errors import UnsafeWeightsError, WeightsMismatchError
from .format import PICKLE_SUFFIXES

__all__ = ["check_safetensors_file", "load_safetensors", "safetensors_metadata", "mismatch_error",
           "load_state_dict_strict", "unshared_state_dict"]


def check_safetensors_file(path: str | Path) -> Path:
    """Raise `UnsafeWeightsError` unless ``path`` is a safetensors file (header checked, nothing unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weight file {str(path)!r} does not exist.")
    fix = (
        "Only safetensors weights are loaded. Convert it once, where you trust the file: "
        "`safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')`."
    )
    if path.name.lower().endswith(PICKLE_SUFFIXES):
        raise UnsafeWeightsError(f"{str(path)!r} is a pickle-based checkpoint ({path.suffix}), not safetensors. {fix}")
    try:  # safetensors' own reader parses the header only (never unpickles)
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as error:  # noqa: BLE001  (SafetensorError, or an OSError / ValueError for junk)
        raise UnsafeWeightsError(f"{str(path)!r} is not a safetensors file ({error}). {fix}") from error
    return path


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """``path`` (checked to be safetensors) -> state dict on CPU."""
    return safetensors.torch.load_file(str(check_safetensors_file(path)), device="cpu")


def safetensors_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def _mismatch(
    own: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, shape mismatches as ``key: checkpoint [..] vs model [..]``)."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {list(state_dict[k].shape)} vs model {list(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    return missing, unexpected, shapes


def _list(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "") if keys else "none"


def mismatch_error(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    source: str,
    own: dict[str, torch.Tensor] | None = None,
) -> WeightsMismatchError | None:
    """The `WeightsMismatchError` for loading ``state_dict`` into ``model`` (or into ``own``, its
    state dict with keys left out), or None when they match."""
    missing, unexpected, shapes = _mismatch(model.state_dict() if own is None else own, state_dict)
    if not (missing or unexpected or shapes):
        return None
    return WeightsMismatchError(
        f"The weights in {source} do not match {type(model).__name__}: "
        f"{len(missing)} missing key(s): {_list(missing)}; "
        f"{len(unexpected)} unexpected key(s): {_list(unexpected)}; "
        f"{len(shapes)} shape mismatch(es): {_list(shapes)}. Nothing was loaded. Check that the "
        "architecture and its arguments (num_classes, in_chans, ...) are the ones the weights were saved with."
    )


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state_dict`` into ``model`` or raise `WeightsMismatchError` (no partial load)."""
    error = mismatch_error(model, state_dict, source)
    if error is not None:
        raise error
    model.load_state_dict(state_dict, strict=True)
    return model


def _unshared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own storage (safetensors refuses shared tensors).

    Tied weights are saved under every key (as torch's state_dict lists them), so a strict load
    by plain timm finds them all.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu")
        ptr = tensor.untyped_storage().data_ptr()
        if tensor.numel() == 0 or ptr in seen or not tensor.is_contiguous():
            tensor = tensor.contiguous().clone()
        else:
            seen.add(ptr)
        out[key] = tensor
    return out


@contextlib.contextmanager
def unshared_state_dict(model: nn.Module) -> Iterator[None]:
    """Inside the block ``model.state_dict()`` returns `_unshared` tensors (safetensors refuses shared
    storage; timm's exporter saves ``model.state_dict()`` as it is)."""
    register = getattr(model, "register_state_dict_post_hook", None) or model._register_state_dict_hook

    def unshare(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, local_metadata: Any) -> None:
        state_dict.update(_unshared(dict(state_dict)))

    handle = register(unshare)
    try:
        yield
    finally:
        handle.remove()
