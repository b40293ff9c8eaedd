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

import _process_env  # noqa: F401  (first: OpenMP's wait, set before torch loads)

import sys
from pathlib import Path

from repfusion_zoo.errors import run_program
from repfusion_zoo.experiments.command import main

if __name__ == "__main__":
    sys.exit(run_program("experiment.py", main, doc=__doc__, recipes_dir=Path(__file__).resolve().parent))
