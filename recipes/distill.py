#!/usr/bin/env python
"""RepFusion distillation: a student learns a diffusion teacher's features at policy-chosen time steps.

    accelerate launch recipes/distill.py                      # the offline default (digits, under a minute on 2 CPU cores)
    accelerate launch recipes/distill.py --config recipes/configs/cifar10_resnet18_hint.yaml --dataset /data/cifar10
    accelerate launch --multi_gpu --num_processes 2 recipes/distill.py --num_train_epochs 1  # 2 CPU processes (gloo) where there is no CUDA
    accelerate launch --mixed_precision bf16 recipes/distill.py --config ...        # a GPU, bf16 autocast
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 recipes/distill.py --config ...

(accelerate 1.x's `--cpu --num_processes N` starts N processes only through mpirun; without it
one process runs. `--multi_gpu` on a machine without CUDA starts N torchrun workers, and the
recipe joins them in one gloo group.)
    python recipes/distill.py --help                          # every key, its default and meaning

Without `--config` the offline default (recipes/configs/offline_default.yaml, found relative to
this file, so any working directory works) is the base, and flags override any of its keys.
The run: (1) trains, or reuses, a small DDPM teacher with recipes/train_teacher.py when
`--teacher` is empty; (2) distills the student (student + policy + decoder g + connector under
one SGD, the paper's schedule by default); (3) saves the student BACKBONE (no classifier head,
`num_classes=0`) as a Hub-ready folder in `output_dir/backbone` (and `--push_to_hub
--hub_model_id org/name` publishes it, printing `org/name@<sha>`); (4) with `finetune: true`,
fine-tunes that backbone AND the same student from scratch (recipes/finetune.py, in-process)
and prints both accuracies. Per epoch it logs the losses, the policy's entropy and a histogram
of the sampled t; `output_dir/timesteps.png` shows the histograms at the end.
"""

import _process_env  # noqa: F401  (first: OpenMP's wait, set before torch loads)

import sys
from pathlib import Path

from repfusion_zoo.errors import run_program
from repfusion_zoo.pipelines.distill import main

CONFIGS = Path(__file__).resolve().parent / "configs"

if __name__ == "__main__":
    sys.exit(run_program("distill.py", main, doc=__doc__, configs=CONFIGS))
