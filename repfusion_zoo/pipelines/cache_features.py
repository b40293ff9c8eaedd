"""The teacher-feature cache of a dataset: the body of ``recipes/cache_features.py`` (its docstring is
the command line's help). The work is `repfusion_zoo.cache.build_feature_cache`; here its keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

from ..cache import build_feature_cache
from ..data import build_dataset
from ..data.settings import DataSettings
from ..data.subsets import per_class_subset
from ..distributed import process_state
from ..errors import ConfigError
from ..config import format_help, load_config, opt, wants_help
from ..teachers import TeacherSettings, build_teacher
from ..training import configure_cpu_threads
from .shared import end_processes

__all__ = ["CacheConfig", "cache_teacher", "cache_features", "main"]


@dataclass
class CacheConfig(DataSettings, TeacherSettings):
    """Keys of recipes/cache_features.py (the images': `DataSettings`; the teacher's: `TeacherSettings`)."""

    split: str = opt("train", "dataset split to cache")
    seed: int = opt(0, "seed of the train/test cut of one-split datasets (digits): the distill run's --seed")
    timesteps: str = opt("0,10,50,100,200,300,500,999", "time steps to cache: all | start:stop:step | 0,10,50")
    views: list[str] = opt(["identity", "hflip"], "views per image: identity,hflip (flips) or identity")
    dtype: str = opt("float16", "stored dtype", choices=["float16", "float32"])
    pooled: bool = opt(False, "store the spatial mean [C] instead of the map [C, h, w]")
    batch_size: int = opt(256, "teacher inputs (image x view x t) per forward")
    images_per_class: int = opt(0, "cache a seeded class-balanced subset of this many images per class (0 = all)")
    subset_seed: int = opt(0, "seed of that subset (repfusion_zoo.data.subsets.per_class_subset)")
    shard_rows: int = opt(0, "images per shard file (0 = automatic, about 128 MiB a shard)")
    dataloader_num_workers: int = opt(0, "data-loader workers decoding images")
    cpu_threads: int = opt(0, "torch threads on a CPU (0 = the usable cores split among local processes)")
    output_dir: str = opt("outputs/teacher_cache", "the cache folder (a rerun resumes it)")


def cache_teacher(cfg: CacheConfig, classes: Sequence[str]) -> nn.Module:
    """The diffusion teacher whose features the cache holds (`cfg.teacher`), its input size checked against the data's."""
    if not cfg.teacher:
        raise ConfigError("--teacher is required: a Hub id or a local teacher folder (e.g. ../shared/teachers/cifar10-ddpm32-small)")
    return build_teacher(cfg, image_size=cfg.image_size, in_chans=cfg.in_chans, classes=classes)


def cache_features(cfg: CacheConfig) -> str:
    """Build (or resume, or find complete) the cache of `cfg`; returns its folder."""
    configure_cpu_threads(cfg.cpu_threads)
    state = process_state()
    dataset = build_dataset(cfg.dataset, split=cfg.split, image_size=cfg.image_size, in_chans=cfg.in_chans,
                            augment=False, seed=cfg.seed)
    teacher = cache_teacher(cfg, dataset.classes)
    indices = per_class_subset(dataset.labels, cfg.images_per_class, cfg.subset_seed) if cfg.images_per_class > 0 else None
    folder = build_feature_cache(teacher, dataset, cfg.output_dir, timesteps=cfg.timesteps, dataset_spec=cfg.dataset,
                                 split=cfg.split, indices=indices, views=cfg.views, dtype=cfg.dtype, pooled=cfg.pooled,
                                 batch_size=cfg.batch_size, teacher_source=cfg.teacher, state=state,
                                 shard_rows=cfg.shard_rows, num_workers=cfg.dataloader_num_workers)
    return str(folder)


def main(argv: Sequence[str] | None = None, *, doc: str = __doc__) -> int:
    """``recipes/cache_features.py``: ``--help`` (with the recipe's `doc`), or the build, then the processes end."""
    if wants_help(argv):
        print(format_help(CacheConfig, "accelerate launch recipes/cache_features.py", doc))
        return 0
    cache_features(load_config(CacheConfig, argv))
    end_processes()
    return 0
