"""Gaussian heatmap targets and their sub-pixel decoding (top-down landmark estimation).

Coordinates: a pixel's centre sits at its integer index (x = column, y = row). A point in the
network input (e.g. 256 px) maps to the heatmap (e.g. 64 px) by `x * heatmap_size / input_size`.

`encode` draws an *unbiased* Gaussian centred at the exact sub-pixel location (as in DARK,
Zhang et al. 2020), not at the rounded pixel, so that `decode` can return to it:
`decode(method="dark")` takes the argmax, smooths the map with a Gaussian, and refines the
argmax by one Newton (second-order Taylor) step on the log-heatmap; `method="quarter"` is the
classic SimpleBaseline rule (argmax + a quarter pixel towards the higher neighbour).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError


def points_to_heatmap_coords(points: torch.Tensor, input_size: int, heatmap_size: int) -> torch.Tensor:
    """Input-pixel points `[..., 2]` -> heatmap-pixel points `[..., 2]`."""
    return points * (heatmap_size / input_size)


def heatmap_coords_to_points(coords: torch.Tensor, input_size: int, heatmap_size: int) -> torch.Tensor:
    """Heatmap-pixel points `[..., 2]` -> input-pixel points `[..., 2]`."""
    return coords * (input_size / heatmap_size)


def encode(points: torch.Tensor, size: int | tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """Gaussian heatmaps for points in heatmap pixels: `[K, 2]` -> `[K, h, w]` (peak 1 at each point).

    Points far outside the map give (near) all-zero maps.
    """
    if points.ndim != 2 or points.shape[-1] != 2:
        raise InputError(f"encode expects points [K, 2]; got {tuple(points.shape)}")
    height, width = (size, size) if isinstance(size, int) else size
    points = points.to(torch.float32)
    xs = torch.arange(width, dtype=torch.float32)
    ys = torch.arange(height, dtype=torch.float32)
    gx = torch.exp(-((xs[None, :] - points[:, 0:1]) ** 2) / (2 * sigma**2))  # [K, w]
    gy = torch.exp(-((ys[None, :] - points[:, 1:2]) ** 2) / (2 * sigma**2))  # [K, h]
    return gy[:, :, None] * gx[:, None, :]


def _argmax_2d(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """heatmaps `[B, K, h, w]` -> integer x `[B, K]`, y `[B, K]`, peak value `[B, K]`."""
    width = heatmaps.shape[-1]
    values, index = heatmaps.flatten(2).max(dim=-1)
    return index % width, torch.div(index, width, rounding_mode="floor"), values


def _gather(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """maps `[B, K, h, w]`, integer x, y `[B, K]` (clamped to the map) -> values `[B, K]`."""
    height, width = maps.shape[-2:]
    x = x.clamp(0, width - 1)
    y = y.clamp(0, height - 1)
    return maps.flatten(2).gather(-1, (y * width + x).unsqueeze(-1)).squeeze(-1)


def _gaussian_blur(heatmaps: torch.Tensor, kernel: int) -> torch.Tensor:
    """Per-channel Gaussian smoothing `[B, K, h, w]` (sigma from the kernel size, as in DARK)."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    offsets = torch.arange(kernel, dtype=heatmaps.dtype, device=heatmaps.device) - (kernel - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    batch, channels, height, width = heatmaps.shape
    flat = heatmaps.reshape(batch * channels, 1, height, width)
    pad = kernel // 2
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="replicate"), weights.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="replicate"), weights.view(1, 1, -1, 1))
    return flat.reshape(batch, channels, height, width)


def decode(heatmaps: torch.Tensor, method: str = "dark", blur_kernel: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps `[B, K, h, w]` -> (points `[B, K, 2]` in heatmap pixels, peak scores `[B, K]`).

    method: "dark" (argmax + Newton step on the smoothed log-heatmap), "quarter" (argmax +
    0.25 px towards the higher neighbour) or "argmax". DARK's smoothing (`blur_kernel` 11, as
    mmpose uses with sigma-2 targets) pads by replication, which biases points closer than about
    4 px to the border by up to a few tenths of a pixel; argmax on the border is not refined.
    """
    if heatmaps.ndim != 4:
        raise InputError(f"decode expects heatmaps [B, K, h, w]; got {tuple(heatmaps.shape)}")
    if method not in ("dark", "quarter", "argmax"):
        raise InputError(f"unknown heatmap decoding {method!r}; use 'dark', 'quarter' or 'argmax'")
    heatmaps = heatmaps.detach().to(torch.float32)
    x, y, scores = _argmax_2d(heatmaps)
    coords = torch.stack([x, y], dim=-1).to(torch.float32)
    if method == "argmax":
        return coords, scores
    height, width = heatmaps.shape[-2:]
    inside = (x >= 1) & (x <= width - 2) & (y >= 1) & (y <= height - 2)
    if method == "quarter":
        dx = _gather(heatmaps, x + 1, y) - _gather(heatmaps, x - 1, y)
        dy = _gather(heatmaps, x, y + 1) - _gather(heatmaps, x, y - 1)
        offset = 0.25 * torch.stack([torch.sign(dx), torch.sign(dy)], dim=-1)
        return coords + offset * inside.unsqueeze(-1), scores
    smooth = _gaussian_blur(heatmaps, blur_kernel) if blur_kernel > 1 else heatmaps
    logs = torch.log(smooth.clamp_min(1e-10))
    at = lambda dx, dy: _gather(logs, x + dx, y + dy)  # noqa: E731
    center = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2 * center + at(-1, 0)
    hyy = at(0, 1) - 2 * center + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    usable = inside & (det > 1e-12) & (hxx < 0) & (hyy < 0)
    safe_det = torch.where(usable, det, torch.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe_det
    oy = -(hxx * gy - hxy * gx) / safe_det
    offset = torch.stack([ox, oy], dim=-1).clamp(-1.0, 1.0) * usable.unsqueeze(-1)
    return coords + offset, scores

