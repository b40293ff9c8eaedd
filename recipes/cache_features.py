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

import _process_env  # noqa: F401  (first: OpenMP's wait, set before torch loads)

import sys

from repfusion_zoo.errors import run_program
from repfusion_zoo.pipelines.cache_features import main

if __name__ == "__main__":
    sys.exit(run_program("cache_features.py", main, doc=__doc__))
