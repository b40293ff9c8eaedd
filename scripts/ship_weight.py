#!/usr/bin/env python
"""Ship a published weight inside the package: copy an experiment's published folder (its `publish`
output: model.safetensors, config.json, README.md) to repfusion_zoo/weights/<name>/, check that it
fits the name's architecture, measure it through timm's eval pipeline on the test split (the figure
tests/test_shipped_weights.py re-measures) and write that, the name and the licence into its card.

    python scripts/ship_weight.py --source outputs/experiments/.../weights/<stem>-<arm>-seed<s>-finetuned \\
        --name resnet18_cifar_025.repfusion_ddpm32long_cifar10_10shot --test_split /path/to/cifar10/test

The name must be in repfusion_zoo.weights.SHIPPED (its cfg: description, num_classes).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import timm
from safetensors.torch import load_file

import repfusion_zoo  # noqa: F401  (registers the architectures in timm)
from repfusion_zoo.atomic import atomic_folder
from repfusion_zoo.errors import ConfigError
from repfusion_zoo.hub import update_card_fields, update_card_metrics
from repfusion_zoo.weights import SHIPPED, WEIGHT_FILE
from repfusion_zoo.experiments.timm_eval import classifier_top1, halves_knn_top1

PACKAGE_WEIGHTS = Path(repfusion_zoo.weights.__file__).parent
CARD_FILES = (WEIGHT_FILE, "config.json", "README.md")


def ship(source: Path, name: str, test_split: Path) -> Path:
    """Copy, check, measure and card one weight; returns its folder in the package."""
    if name not in SHIPPED:
        raise ConfigError(f"{name!r} is not in repfusion_zoo.weights.SHIPPED {sorted(SHIPPED)}; add its cfg there first.")
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(load_file(source / WEIGHT_FILE))  # strict: the weight fits the name's architecture
    target = PACKAGE_WEIGHTS / name
    with atomic_folder(target) as tmp:
        for file in CARD_FILES:
            shutil.copy2(source / file, tmp / file)
    shipped = timm.create_model(name, pretrained=True)
    measure = ({"test_top1_timm_eval": classifier_top1(shipped, test_split)} if SHIPPED[name]["num_classes"]
               else {"test_halves_knn_top1_timm_eval": halves_knn_top1(shipped, test_split)})
    recorded = json.loads((target / "config.json").read_text())["repfusion"].get("metrics", {})
    # one dataset key: the experiment's data was a local copy of CIFAR-10 (its card names the folder)
    merged = {metric: value for per_dataset in recorded.values() for values in per_dataset.values()
              for metric, value in values.items()}
    update_card_fields(target, {"name": name, "shipped_name": name, "license": "apache-2.0", "dataset": "CIFAR-10",
                                "metrics": {}, "description": SHIPPED[name]["description"]})
    update_card_metrics(target, {**merged, **measure}, task="classification", dataset="CIFAR-10")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="a published weight folder")
    parser.add_argument("--name", required=True, help="its timm name, <architecture>.<tag>, in SHIPPED")
    parser.add_argument("--test_split", type=Path, required=True, help="the CIFAR-10 test split (image folder)")
    args = parser.parse_args()
    print(ship(args.source, args.name, args.test_split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
