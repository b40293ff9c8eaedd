#!/usr/bin/env python
"""A grid's fine-tuned models on a larger held-out split of train: every train image outside the
distilled set and the validation subset (29,000 for the cifar10_cpu_converged grids), beside the
test and validation top-1 their results hold. Reads the run folders on this machine (the grid ran
here); for every seed prints each arm's (test, val, held-out) top-1 and each distilled arm's
difference to scratch on all three. A check of how noisy the validation subset is, not a choice:
nothing is selected on it.

    python scripts/heldout_top1.py --config recipes/configs/experiments/cifar10_cpu_converged_lpc25_seeds345.yaml \\
        --dataset /path/to/cifar10
"""
from __future__ import annotations

import sys
from pathlib import Path

from torch.utils.data import Subset

from repfusion_zoo.config import load_config
from repfusion_zoo.data import build_dataset
from repfusion_zoo.data.subsets import read_indices
from repfusion_zoo.experiments.config import ExperimentConfig, arm_seeds, run_dir
from repfusion_zoo.experiments.evaluation import validation_top1
from repfusion_zoo.experiments.result import RESULT_FILE, ArmSeedResult
from repfusion_zoo.experiments.subsets import ExperimentSubsets
from repfusion_zoo.training import configure_cpu_threads


def main(argv: list[str]) -> int:
    configure_cpu_threads()
    cfg = load_config(ExperimentConfig, argv)
    subsets = ExperimentSubsets.of(Path(cfg.output_dir) / "subsets")
    train = build_dataset(cfg.dataset, split="train", image_size=cfg.image_size, in_chans=cfg.in_chans)
    used = set(read_indices(subsets.distill_images)) | set(read_indices(subsets.val))
    held = Subset(train, [i for i in range(len(train)) if i not in used])
    print(f"held-out images: {len(held)}", flush=True)
    for lpc in cfg.labels_per_class:
        for seed in cfg.seeds:
            row = {}
            for arm in (a for a in cfg.arms if seed in arm_seeds(cfg, a)):
                folder = run_dir(cfg, lpc, arm, seed)
                if (folder / RESULT_FILE).is_file():
                    done = ArmSeedResult.read(folder / RESULT_FILE)
                    row[arm] = (done.top1, done.val_top1, validation_top1(cfg, folder / "finetune" / "model", held))
            cells = [f"{arm} {' / '.join(f'{v:.2f}' for v in values)}" for arm, values in row.items()]
            deltas = [f"{arm} − scratch {' / '.join(f'{v - s:+.2f}' for v, s in zip(values, row['scratch']))}"
                      for arm, values in row.items() if arm != "scratch" and "scratch" in row]
            print(f"{lpc} labels, seed {seed} (test / val / held-out): " + "; ".join(cells + deltas), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
