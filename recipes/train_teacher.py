#!/usr/bin/env python
"""Train a DDPM teacher (diffusers `UNet2DModel` + `DDPMScheduler`, EMA weights) on unlabelled images.

For domains with no public diffusion model, and for machines that cannot download one. The
result is a diffusers pipeline folder (`model_index.json`, `unet/`, `scheduler/`, written by
`DDPMPipeline.save_pretrained` with the EMA weights) that `repfusion_zoo.teachers.DiffusionTeacher`
loads; it is written to a temp folder and renamed, so a killed run never leaves half a teacher.

    accelerate launch recipes/train_teacher.py                       # digits, 16 px, ~2 min on 2 CPU cores
    accelerate launch --multi_gpu --num_processes 2 recipes/train_teacher.py   # 2 processes (gloo on CPU)
    accelerate launch --mixed_precision bf16 recipes/train_teacher.py \
        --config recipes/configs/teacher_cifar10.yaml --dataset /data/cifar10   # the ddpm-cifar10-32 architecture
    python recipes/train_teacher.py --help                           # every key, its default and meaning

Every YAML key is also a flag (`--key value`); an unknown key is an error listing the valid ones.
In Python: `from repfusion_zoo.pipelines.train_teacher import TeacherConfig, train_teacher; train_teacher(TeacherConfig(...))`.
Labels are ignored. The keys are those of the other recipes (and of diffusers' example
scripts). `train_batch_size`
is the global batch of one optimiser step: each process takes train_batch_size / (processes x
gradient_accumulation_steps) per micro-batch. `--resume_from_checkpoint latest` continues from
the newest complete `<output_dir>.run/checkpoint-<step>` (written every `checkpointing_steps`).
Mixed precision comes from the launcher (`accelerate launch --mixed_precision bf16`) unless
`--mixed_precision` is given here. `--reuse true` returns an existing teacher trained with the
same config instead of training again.
"""

import _process_env  # noqa: F401  (first: OpenMP's wait, set before torch loads)

import sys
from pathlib import Path

from repfusion_zoo.errors import run_program
from repfusion_zoo.pipelines.train_teacher import main

CONFIGS = Path(__file__).resolve().parent / "configs"

if __name__ == "__main__":
    sys.exit(run_program("train_teacher.py", main, doc=__doc__, configs=CONFIGS))
