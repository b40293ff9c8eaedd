#!/usr/bin/env python
"""Teacher-feature cache: a frozen diffusion teacher's features for every item, view and time step, once.

    accelerate launch recipes/cache_features.py --teacher ../shared/teachers/cifar10-ddpm32-small \\
        --dataset data/cifar10 --timesteps 0,10,50,100,200,300,500,999 --output_dir caches/cifar10-mid
    accelerate launch --multi_gpu --num_processes 2 recipes/cache_features.py ...   # shards split over 2 processes
    python recipes/cache_features.py --help                                           # every key

The teacher sees the clean image (x * 2 - 1) with t only as its time embedding, is frozen and in
eval mode: its feature is a function of (image, flip, t, layer), so distillation with flips only
and t from a finite set can read it from here (`accelerate launch recipes/distill.py
--teacher_cache DIR`). Writes `.npy` shards `[rows, views, t, C, h, w]` (or `[.., C]` pooled)
and a `manifest.json` naming teacher (weights sha256), layer, t set, views, dataset
fingerprint, sizes and dtype. Prints the store's size first and refuses when the disk cannot
hold it; killed, the same command resumes (finished shards are kept).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

from repfusion_zoo.errors import ConfigError
from repfusion_zoo.training.config import format_help, load_config, opt, wants_help
from repfusion_zoo.training.threads import configure_cpu_threads


@dataclass
class CacheConfig:
    """Keys of recipes/cache_features.py."""

    teacher: str = opt("", "Hub id or local folder of the diffusion teacher (required)")
    teacher_layer: str = opt("mid", "teacher layer: mid | mid_resnet2_conv2 | down.<i>")
    teacher_class_map: str = opt("", "class-conditional teachers: 'tinyimagenet' maps WordNet-id classes to ImageNet ids", choices=["", "tinyimagenet"])
    dataset: str = opt("digits", "repfusion_zoo.data.build_dataset spec (digits | imagefolder:<path> | <path> | hf:<id>)")
    split: str = opt("train", "dataset split to cache")
    image_size: int = opt(32, "image side in pixels (must equal the teacher's sample_size)")
    in_chans: int = opt(3, "image channels (must equal the teacher's in_channels)")
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


def build_teacher(cfg: CacheConfig, classes: Sequence[str]) -> Any:
    """The DiffusionTeacher of `cfg.teacher`, its input size checked against the data's."""
    from repfusion_zoo.teachers import DiffusionTeacher

    if not cfg.teacher:
        raise ConfigError("--teacher is required: a Hub id or a local teacher folder (e.g. ../shared/teachers/cifar10-ddpm32-small)")
    class_map = None
    if cfg.teacher_class_map == "tinyimagenet":
        from repfusion_zoo.teachers import tinyimagenet_class_map

        class_map = tinyimagenet_class_map(list(classes))
    teacher = DiffusionTeacher(cfg.teacher, layer=cfg.teacher_layer, class_map=class_map)
    if tuple(teacher.sample_size) != (cfg.image_size, cfg.image_size) or teacher.in_channels != cfg.in_chans:
        raise ConfigError(
            f"teacher {cfg.teacher!r} takes {teacher.in_channels}x{teacher.sample_size[0]}x{teacher.sample_size[1]} images "
            f"but the data is {cfg.in_chans}x{cfg.image_size}x{cfg.image_size}; set --image_size "
            f"{teacher.sample_size[0]} --in_chans {teacher.in_channels}"
        )
    return teacher


def cache_features(cfg: CacheConfig) -> str:
    """Build (or resume, or find complete) the cache of `cfg`; returns its folder."""
    from accelerate import PartialState

    from repfusion_zoo.cache import build_feature_cache
    from repfusion_zoo.data import build_dataset
    from repfusion_zoo.data.subsets import per_class_subset
    from repfusion_zoo.distributed import multi_process_cpu

    configure_cpu_threads(cfg.cpu_threads)
    state = PartialState(cpu=multi_process_cpu())
    dataset = build_dataset(cfg.dataset, split=cfg.split, image_size=cfg.image_size, in_chans=cfg.in_chans,
                            augment=False, seed=cfg.seed)
    teacher = build_teacher(cfg, dataset.classes)
    indices = per_class_subset(dataset.labels, cfg.images_per_class, cfg.subset_seed) if cfg.images_per_class > 0 else None
    folder = build_feature_cache(teacher, dataset, cfg.output_dir, timesteps=cfg.timesteps, dataset_spec=cfg.dataset,
                                 split=cfg.split, indices=indices, views=cfg.views, dtype=cfg.dtype, pooled=cfg.pooled,
                                 batch_size=cfg.batch_size, teacher_source=cfg.teacher, state=state,
                                 shard_rows=cfg.shard_rows, num_workers=cfg.dataloader_num_workers)
    return str(folder)


def main(argv: Sequence[str] | None = None) -> int:
    if wants_help(argv):
        print(format_help(CacheConfig, "accelerate launch recipes/cache_features.py", __doc__))
        return 0
    cache_features(load_config(CacheConfig, argv))
    from accelerate import PartialState

    PartialState().destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
