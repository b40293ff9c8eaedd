"""Seeded, class-balanced subsets of a labelled dataset (the experiment's image and label budgets).

`per_class_subset(labels, per_class, seed)` draws `per_class` items of every class with a
generator seeded by `seed` alone, so the same seed gives the same subset on every machine and
process, and a subset for one seed never depends on another arm of the experiment.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import DatasetError

__all__ = ["per_class_subset"]


def per_class_subset(labels: Sequence[int], per_class: int, seed: int, among: Sequence[int] | None = None) -> list[int]:
    """Sorted dataset indices: `per_class` of each class, drawn (seeded by `seed`) from `among` (default: all).

    `labels[i]` is item i's class. `per_class <= 0` keeps every candidate. A class with fewer than
    `per_class` candidates is a `DatasetError` naming it.
    """
    candidates = list(range(len(labels))) if among is None else [int(i) for i in among]
    if per_class <= 0:
        return sorted(candidates)
    by_class: dict[int, list[int]] = {}
    for index in candidates:
        by_class.setdefault(int(labels[index]), []).append(index)
    generator = torch.Generator().manual_seed(int(seed))
    chosen: list[int] = []
    for label in sorted(by_class):
        items = by_class[label]
        if len(items) < per_class:
            raise DatasetError(
                f"class {label} has only {len(items)} candidate items but {per_class} per class were asked for; "
                "lower the per-class count"
            )
        order = torch.randperm(len(items), generator=generator)[:per_class].tolist()
        chosen.extend(items[i] for i in order)
    return sorted(chosen)
