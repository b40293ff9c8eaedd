"""A teacher-feature cache in the teacher's place: RepFusion reads `(index, flip, t)` instead of
running the UNet (docs/architecture.md, "cache").

The teacher sees the clean image, frozen, in eval mode: its feature is a function of (image,
flip, t) alone, so a cache built once by `recipes/cache_features.py` serves every epoch and every
arm (RL, fixed t, random t) exactly. `check_cache_for_run` refuses a cache built for another
teacher, layer, dataset, image size, view set, time-step set or image subset, naming the field
and both values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..cache import CacheManifest, FeatureCache, check_cache_matches, dataset_fingerprint
from ..errors import CacheMismatchError, InputError
from ..timesteps import means_all, parse_timesteps
from .frozen import FrozenTeacher
from .identity import source_weights_sha256

__all__ = ["CachedTeacher", "check_cache_for_run"]


class CachedTeacher(FrozenTeacher):
    """Teacher features read from a `FeatureCache` (a folder or an open cache).

    `feature(images, t, *, index, flip)` -> `[B, *feature_shape]` float32 on the images' device;
    the images only give the device (the cache was built from the same images). It has the
    attributes RepFusion sizes itself from, all read from the cache's manifest (the teacher is never
    built): `feature_channels`, `feature_shape`, `in_channels`, `sample_size`, `num_train_timesteps`,
    and `timesteps` (the cache's action set).
    """

    def __init__(self, cache: FeatureCache | str | Path) -> None:
        super().__init__()
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)

    @property
    def manifest(self) -> CacheManifest:
        return self.cache.manifest

    @property
    def timesteps(self) -> list[int]:
        return list(self.cache.timesteps)

    @property
    def layer(self) -> str:
        return str(self.manifest.layer)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.cache.feature_shape)

    @property
    def feature_channels(self) -> int:
        return int(self.feature_shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.manifest.in_chans)

    @property
    def sample_size(self) -> tuple[int, int]:
        return (int(self.manifest.image_size),) * 2

    @property
    def num_train_timesteps(self) -> int:
        """T of the teacher whose features these are (its scheduler's, from the manifest; the cache's set lies in 0..T-1)."""
        return int(self.manifest.num_train_timesteps)

    def weights_sha256(self) -> str:
        """The cached teacher's weight-files hash (the manifest's)."""
        return str(self.manifest.teacher_sha256)

    def feature(self, images: torch.Tensor, t: torch.Tensor, *, labels: Any = None, index: torch.Tensor | None = None,
                flip: torch.Tensor | None = None) -> torch.Tensor:
        """The cached feature of each item's view at its `t`: `[B, *feature_shape]` (float32)."""
        if index is None or flip is None:
            raise InputError(
                "a cached teacher reads each item's feature by (index, flip, t), but the batch has no 'index'/'flip'; "
                "build the dataset with repfusion_zoo.data.build_dataset (its items carry both)"
            )
        return self.cache.lookup(index, flip, t, device=images.device)

    def forward(self, index: torch.Tensor, flip: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """`lookup(index [B], flip [B], t [B])` -> `[B, *feature_shape]`."""
        return self.cache.lookup(index, flip, t)

    def extra_repr(self) -> str:
        return f"cache={self.cache.path}, layer={self.layer}, timesteps={len(self.timesteps)}"


def check_cache_for_run(cache: CachedTeacher, *, source: str, layer: str, noise: bool,
                        class_map: Sequence[int] | None, dataset: Any, timesteps: Any,
                        indices: Sequence[int] | None) -> None:
    """`CacheMismatchError` unless `cache` holds what this run will ask for; the teacher is never built.

    ``source`` is the run's teacher (a folder or Hub id: its weight files' hash must be the cache's),
    ``layer``, ``noise`` and ``class_map`` its settings, `dataset` the training set (its fingerprint,
    image size and augmentation: the cache holds the identity and flipped views only), `timesteps`
    the run's action set ('all' = the cache's), `indices` the dataset items it trains on.
    """
    augmentation = getattr(dataset, "augmentation", None)
    if augmentation is not None and not augmentation.flips_only:
        raise CacheMismatchError(
            f"the teacher cache at {cache.cache.path} holds the identity and mirrored views only, but this run augments "
            f"with {augmentation.name!r}; distil with flips only (crop_padding 0) or without --teacher_cache"
        )
    manifest = cache.manifest
    steps = manifest.timesteps if means_all(timesteps) else parse_timesteps(timesteps, cache.num_train_timesteps)
    image = dataset[0]["image"]
    expected: dict[str, Any] = {
        "teacher_sha256": source_weights_sha256(source),
        "layer": str(layer),
        "noise": bool(noise),
        "class_map": None if class_map is None else [int(v) for v in class_map],
        "image_size": int(image.shape[-1]),
        "in_chans": int(image.shape[0]),
        "split": "train",
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "timesteps": steps,
        "views": ["identity", "hflip"] if augmentation is not None else ["identity"],
    }
    if indices is not None:
        expected["indices"] = list(indices)
    check_cache_matches(manifest, expected)
