"""What a cache build will hold, as a `CacheManifest`: checked settings plus the identities of the
teacher (its weight files' hash) and of the items (dataset fingerprint, cached indices)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..errors import ConfigError, DatasetError
from ..normalize import minus_one_one
from ..timesteps import parse_timesteps
from ..version import __version__
from .fingerprint import array_sha256, dataset_fingerprint
from .layout import DTYPES, INDICES, VIEWS
from .manifest import FORMAT_VERSION, CacheManifest

__all__ = ["CacheableTeacher", "describe_cache", "check_views", "indices_to_cache", "finished_now", "NORMALIZATION"]

#: how dataset images ([0, 1]) become teacher inputs
NORMALIZATION = "x*2-1"


@runtime_checkable
class CacheableTeacher(Protocol):
    """What a feature cache is built from: an online diffusion teacher (`repfusion_zoo.teachers`:
    `DiffusionTeacher`, `LatentUNetTeacher`, `TransformerTeacher`)."""

    #: T: the cached time steps lie in 0..T-1
    num_train_timesteps: int
    #: where the feature is taken
    layer: str
    #: feeds x_t instead of the clean image (then its features are random: no cache)
    noise: bool
    #: takes class labels (through ``class_map``, dataset label -> model class id)
    class_conditional: bool
    class_map: torch.Tensor | None
    #: where it was loaded from (a folder or Hub id), for records
    source: str

    def weights_sha256(self) -> str:
        """The hash of the weight files it was read from: the cache's name for it."""

    def describe(self) -> dict[str, Any]:
        """Kind, VAE, conditioning and layer: what a cache manifest records besides the weights' hash."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, C, H, W]`` in [-1, 1], ``t [B]`` -> ``[B, C', h, w]``."""


def check_views(views: Sequence[str]) -> list[str]:
    """``["identity"]`` or ``["identity", "hflip"]``; `ConfigError` otherwise."""
    views = [str(v).strip() for v in views]
    if views not in (list(VIEWS[:1]), list(VIEWS)):
        raise ConfigError(f"views {views} are not supported; use identity,hflip (flips, the distillation's only "
                          "augmentation) or identity (no flips)")
    return views


def indices_to_cache(indices: Sequence[int] | np.ndarray | None, dataset_size: int) -> np.ndarray | None:
    """The dataset indices to cache as ``int64[n]`` (None = every item, in order); each in range, once."""
    if indices is None:
        return None
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(array) == 0:
        raise ConfigError("indices is empty; give at least one dataset index, or None for the whole split")
    bad = array[(array < 0) | (array >= dataset_size)]
    if len(bad):
        raise DatasetError(f"indices {bad[:10].tolist()} lie outside the dataset's 0..{dataset_size - 1}")
    if len(np.unique(array)) != len(array):
        raise ConfigError("indices contains duplicates; give each dataset index once")
    if np.array_equal(array, np.arange(dataset_size)):
        return None
    return array


def _probe_feature(teacher: CacheableTeacher, image: torch.Tensor, t: int, pooled: bool) -> tuple[int, ...]:
    """Feature shape of one image at one t (one teacher pass)."""
    device = next(teacher.parameters()).device
    labels = torch.zeros(1, dtype=torch.long, device=device) if teacher.class_conditional else None
    feature = teacher(minus_one_one(image[None].to(device)), torch.tensor([t], device=device), class_labels=labels)
    return tuple(feature.shape[1:2]) if pooled else tuple(feature.shape[1:])


def _check_teacher(teacher: Any, dataset: Any) -> None:
    if not isinstance(teacher, CacheableTeacher):
        raise ConfigError(f"the teacher cache takes a diffusion teacher (repfusion_zoo.teachers.load_teacher), "
                          f"got {type(teacher).__name__}")
    if teacher.noise:
        raise ConfigError("the teacher adds noise (noise=True): its features are random, a cache cannot hold them; "
                          "build the cache with a clean-input teacher (--teacher_noise false, the paper's setting)")
    if getattr(dataset, "augmentation", None) is not None:
        raise ConfigError("the cache is built from the non-augmented dataset (build_dataset(..., augment=False)); "
                          "flips are the cache's views")


def describe_cache(
    teacher: CacheableTeacher,
    dataset: Any,
    *,
    timesteps: Any,
    dataset_spec: str,
    split: str,
    indices: np.ndarray | None,
    views: Sequence[str],
    dtype: str,
    pooled: bool,
    teacher_source: str | None,
) -> CacheManifest:
    """The manifest of the cache these settings build; ``shard_rows`` (0) is the builder's to set,
    ``created`` stays empty until the cache is finished."""
    _check_teacher(teacher, dataset)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not one of {list(DTYPES)}")
    t_values = parse_timesteps(timesteps, teacher.num_train_timesteps)
    first = dataset[0 if indices is None else int(indices[0])]["image"]
    count = len(dataset) if indices is None else len(indices)
    class_map = teacher.class_map
    return CacheManifest(
        format_version=FORMAT_VERSION, code_version=__version__,
        teacher=str(teacher_source or teacher.source or "in-memory teacher"),
        teacher_sha256=teacher.weights_sha256(), num_train_timesteps=int(teacher.num_train_timesteps),
        layer=str(teacher.layer), noise=False,
        class_conditional=bool(teacher.class_conditional),
        class_map=None if class_map is None else [int(v) for v in class_map.tolist()],
        timesteps=t_values, views=check_views(views), dataset=str(dataset_spec), split=str(split),
        dataset_fingerprint=dataset_fingerprint(dataset), dataset_size=len(dataset),
        indices=None if indices is None else {"file": INDICES, "sha256": array_sha256(indices), "count": len(indices)},
        image_size=int(first.shape[-1]), in_chans=int(first.shape[0]), normalization=NORMALIZATION,
        dtype=dtype, pooled=bool(pooled), feature_shape=list(_probe_feature(teacher, first, t_values[0], pooled)),
        num_items=count, shard_rows=0, created="", teacher_info=teacher.describe(), index_array=indices,
    )


def finished_now() -> str:
    """An ISO-8601 UTC time stamp for ``created``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
