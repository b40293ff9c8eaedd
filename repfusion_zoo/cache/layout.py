"""The on-disk layout of a teacher-feature cache: file names, shard geometry and sizes.

A cache folder holds
- ``build_spec.json``: the build's settings, written first (a resumed build must match it);
- ``indices.npy``: the dataset indices cached, in row order (only for a subset of the split);
- ``shard-00000.npy`` ...: `.npy` arrays ``[rows, num_views, num_t, *feature_shape]``, each
  written under a hidden temp name and renamed when finished (a finished shard is complete);
- ``manifest.json``: written last, once every shard exists: the cache is complete.

Row r of the cache is shard ``r // shard_rows``, row ``r % shard_rows`` there; view 0 is the
identity, view 1 the horizontal flip; the t axis follows the sorted time steps.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "MANIFEST", "BUILD_SPEC", "INDICES", "VIEWS", "DTYPES", "shard_name", "shard_bounds",
    "row_bytes", "auto_shard_rows", "images_per_chunk", "human_bytes",
]

MANIFEST = "manifest.json"
BUILD_SPEC = "build_spec.json"
INDICES = "indices.npy"
#: the views a cache may hold, in their order on the view axis
VIEWS = ("identity", "hflip")
#: the feature dtypes a cache may store
DTYPES = ("float16", "float32")
#: a shard's target size in bytes, and the most teacher inputs (image x view x t) one shard costs
SHARD_BYTES = 128 * 2**20
SHARD_INPUTS = 2**16


def shard_name(index: int) -> str:
    """``shard-00007.npy`` for shard 7."""
    return f"shard-{index:05d}.npy"


def shard_bounds(num_rows: int, shard_rows: int) -> list[tuple[int, int]]:
    """``[(first_row, end_row), ...]`` of every shard; the last one may be shorter."""
    return [(start, min(start + shard_rows, num_rows)) for start in range(0, num_rows, shard_rows)]


def row_bytes(num_views: int, num_t: int, feature_shape: Sequence[int], dtype: str) -> int:
    """Bytes of one cached item: every view x t feature."""
    return num_views * num_t * math.prod(feature_shape) * np.dtype(dtype).itemsize


def images_per_chunk(batch_size: int, inputs_per_image: int) -> int:
    """Images decoded together so that their ``images x inputs_per_image`` teacher inputs fill
    whole batches of ``batch_size``: ``lcm / inputs_per_image`` (at most ``batch_size``), or, when
    that chunk would span more than 8 batches, ``batch_size // inputs_per_image`` (at least 1)."""
    whole = math.lcm(batch_size, inputs_per_image) // inputs_per_image
    if whole * inputs_per_image <= 8 * batch_size:
        return whole
    return max(1, batch_size // inputs_per_image)


def auto_shard_rows(num_rows: int, bytes_per_row: int, inputs_per_image: int, chunk: int) -> int:
    """Rows per shard: about `SHARD_BYTES` and at most `SHARD_INPUTS` teacher inputs, a multiple of
    `chunk` where that is possible, never more than `num_rows`."""
    rows = max(1, min(SHARD_BYTES // max(1, bytes_per_row), SHARD_INPUTS // max(1, inputs_per_image)))
    if rows >= chunk:
        rows -= rows % chunk
    return max(1, min(rows, num_rows))


def human_bytes(size: float) -> str:
    """``1536 -> '1.5 KiB'`` (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} TiB"
