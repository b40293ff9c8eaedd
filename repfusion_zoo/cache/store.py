"""Reading a finished teacher-feature cache: `FeatureCache(path).lookup(index, flip, t)`.

The shards are opened as read-only numpy memmaps (nothing is loaded whole into memory); a
lookup is one fancy-indexing read per shard touched, then one conversion to float32 on the
device of `index`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import IncompleteCacheError, InputError
from .layout import shard_bounds
from .manifest import CacheManifest, short_list, read_manifest

__all__ = ["FeatureCache"]


def _open_shard(folder: Path, name: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """One finished shard as a read-only memmap, its shape and dtype checked against the manifest."""
    file = folder / name
    if not file.is_file():
        raise IncompleteCacheError(
            f"the teacher cache at {folder} lacks shard {name} although its manifest lists it; "
            "rerun the same cache command; it resumes (it rebuilds missing shards only)"
        )
    array = np.load(file, mmap_mode="r", allow_pickle=False)
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise IncompleteCacheError(
            f"shard {file} holds {array.dtype}{list(array.shape)} but the manifest says {dtype}{list(shape)}; "
            "delete that shard and rerun the same cache command; it resumes"
        )
    return array


def _look_up(table: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """``table[values]`` where a value lies inside the table, -1 elsewhere (``-1`` in the table: absent);
    and the sorted values that found nothing."""
    inside = (values >= 0) & (values < len(table))
    found = np.where(inside, table[np.clip(values, 0, len(table) - 1)], -1)
    return found, sorted(set(values[found < 0].tolist()))


class FeatureCache:
    """A finished teacher-feature cache, read-only.

    Attributes: `manifest` (`CacheManifest`), `timesteps` (sorted list), `views`,
    `feature_shape` (``(C, h, w)`` spatial or ``(C,)`` pooled); ``len(cache)`` is the number of
    cached items. `IncompleteCacheError` when the manifest or a shard is missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.manifest: CacheManifest = read_manifest(self.path)
        m = self.manifest
        self.timesteps: list[int] = [int(t) for t in m.timesteps]
        self.views: list[str] = list(m.views)
        self.feature_shape: tuple[int, ...] = tuple(int(s) for s in m.feature_shape)
        self._shards = [
            _open_shard(self.path, name, (end - start, len(self.views), len(self.timesteps), *self.feature_shape), m.dtype)
            for name, (start, end) in zip(m.shards, shard_bounds(m.num_items, m.shard_rows))
        ]
        self._row_of = np.full(m.dataset_size, -1, dtype=np.int64)  # dataset index -> row
        self._row_of[m.cached_indices()] = np.arange(m.num_items, dtype=np.int64)
        self._t_pos = np.full(max(self.timesteps) + 1, -1, dtype=np.int64)  # t value -> position on the t axis
        self._t_pos[self.timesteps] = np.arange(len(self.timesteps), dtype=np.int64)

    def __len__(self) -> int:
        return self.manifest.num_items

    def __repr__(self) -> str:
        m = self.manifest
        return (f"FeatureCache({str(self.path)!r}: {len(self)} items x {len(self.views)} views x "
                f"{len(self.timesteps)} t x {list(self.feature_shape)} {m.dtype}, teacher {m.teacher!r} layer {m.layer!r})")

    # ------------------------------------------------------------------ positions
    def rows(self, index: np.ndarray) -> np.ndarray:
        """Cache rows of dataset indices ``int64[B]``; `InputError` naming any index not cached."""
        rows, bad = _look_up(self._row_of, index)
        if bad:
            raise InputError(
                f"dataset indices {short_list(bad)} are not in the teacher cache at {self.path}, which holds {len(self)} "
                f"of the {self.manifest.dataset_size} items of {self.manifest.dataset!r} split {self.manifest.split!r}; "
                "rebuild the cache for these items or look up only cached ones"
            )
        return rows

    def t_positions(self, t: np.ndarray) -> np.ndarray:
        """Positions on the t axis of time-step values ``int64[B]``; `InputError` naming any t not cached."""
        pos, bad = _look_up(self._t_pos, t)
        if bad:
            raise InputError(
                f"time steps {short_list(bad)} are not in the teacher cache at {self.path}, which holds timesteps "
                f"{short_list(self.timesteps, 20)}; use --timesteps within that set or rebuild the cache with them"
            )
        return pos

    def view_positions(self, flip: np.ndarray) -> np.ndarray:
        """0 (identity) or 1 (hflip) per sample; `InputError` when a flip is asked of a cache without flips."""
        if flip.any() and "hflip" not in self.views:
            raise InputError(
                f"a flipped view was looked up but the teacher cache at {self.path} holds views {self.views}; "
                "rebuild it with --views identity,hflip or turn flips off"
            )
        return flip.astype(np.int64)

    # ------------------------------------------------------------------ reading
    def read(self, rows: np.ndarray, views: np.ndarray, t_pos: np.ndarray) -> np.ndarray:
        """Stored features ``[B, *feature_shape]`` (the cache's dtype) at cache positions."""
        shard_rows = self.manifest.shard_rows
        shard, offset = np.divmod(rows, shard_rows)
        out = np.empty((len(rows), *self.feature_shape), dtype=self.manifest.dtype)
        for s in np.unique(shard):
            pick = np.flatnonzero(shard == s)
            out[pick] = self._shards[s][offset[pick], views[pick], t_pos[pick]]
        return out

    def lookup(self, index: torch.Tensor, flip: torch.Tensor, t: torch.Tensor,
               device: torch.device | str | None = None) -> torch.Tensor:
        """The teacher features of dataset items `index` ``LongTensor[B]``, view `flip` ``BoolTensor[B]``
        (True = horizontally flipped) at time steps `t` ``LongTensor[B]`` (values, not positions)
        -> ``FloatTensor[B, *feature_shape]`` (float32) on `device` (default ``index.device``).

        The stored dtype travels to the device and becomes float32 there (an fp16 cache moves half
        the bytes; fp16 -> fp32 is exact, so the values are the same either way).
        """
        index_np = index.detach().to("cpu", torch.int64).numpy().reshape(-1)
        flip_np = flip.detach().to("cpu", torch.bool).numpy().reshape(-1)
        t_np = t.detach().to("cpu", torch.int64).numpy().reshape(-1)
        if not (len(index_np) == len(flip_np) == len(t_np)):
            raise InputError(f"index, flip and t must have the same length B, got {len(index_np)}, {len(flip_np)}, {len(t_np)}")
        features = torch.from_numpy(self.read(self.rows(index_np), self.view_positions(flip_np), self.t_positions(t_np)))
        target = torch.device(device) if device is not None else index.device
        if target.type == "cpu":
            return features.to(torch.float32)
        return features.to(target).to(torch.float32)
