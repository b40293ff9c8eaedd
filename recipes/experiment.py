#!/usr/bin/env python
"""An experiment grid: does a RepFusion backbone beat the same backbone from scratch?

    python recipes/experiment.py --config recipes/configs/experiments/cifar10_cpu.yaml --dataset /path/to/cifar10
    python recipes/experiment.py --config recipes/configs/experiments/cifar10_gpu.yaml --launcher "accelerate launch --mixed_precision bf16"
    python recipes/experiment.py --help

One teacher-feature cache, then for every label budget, seed and arm (scratch, rl, fixed t,
random, probe): distil from the cache on the train images (decoder g and the policy's reward see
only the seed's labelled subset), fine-tune on that labelled subset, evaluate once on the test
split, and score the frozen backbone by kNN. Rerun the same command to resume: finished
arm-seeds are kept, a killed one continues from its recipes' last checkpoints. Results:
`<output_dir>/<name>.json|.md|.png`, copied to `results_dir` (docs/results).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Sequence

from repfusion_zoo.experiments import ExperimentConfig, run_experiment
from repfusion_zoo.training.config import format_help, load_config, wants_help
from repfusion_zoo.training.threads import configure_cpu_threads

RECIPES = Path(__file__).resolve().parent


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if wants_help(args):
        print(format_help(ExperimentConfig, "python recipes/experiment.py", __doc__))
        return 0
    cfg = load_config(ExperimentConfig, args)
    configure_cpu_threads()  # the cache build and the kNN passes run in this process
    command = shlex.join(["python", "recipes/experiment.py", *args])
    for path in run_experiment(cfg, recipes_dir=RECIPES, command=command):
        print(f"[experiment] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
