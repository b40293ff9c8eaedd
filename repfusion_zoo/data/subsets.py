"""Subsets of a labelled dataset: the experiment's image budget and label budget.

- `per_class_subset(labels, per_class, seed)` draws `per_class` items of every class with a
  generator seeded by `seed` alone: the same seed gives the same subset on every machine and
  process, and one arm's subset never depends on another arm.
- `read_indices(path)` / `write_indices(path, indices)`: a subset as a JSON list of dataset
  indices (the `train_subset` and `label_subset` keys of the recipes).
- `LabelBudget(dataset, labelled)`: the same items, but only the `labelled` ones keep their
  class label; the others get `-1` (unlabelled: distilled, never a target).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from ..atomic import replace_text
from ..errors import DatasetError

__all__ = ["per_class_subset", "read_indices", "write_indices", "LabelBudget"]


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


def read_indices(path: str | Path) -> list[int]:
    """A subset file: a JSON list of dataset indices (`DatasetError` naming the file when it is not one)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"subset file {path} does not exist; write a JSON list of dataset indices there")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"subset file {path} is not JSON ({error}); expected a list of dataset indices") from None
    if not isinstance(values, list) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise DatasetError(f"subset file {path} must hold a JSON list of non-negative integer dataset indices")
    return values


def write_indices(path: str | Path, indices: Sequence[int]) -> Path:
    """Write a subset file (a JSON list of dataset indices) atomically; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(path, json.dumps([int(i) for i in indices]))
    return path


def check_indices(indices: Sequence[int], dataset: Dataset, what: str) -> None:
    """`DatasetError` when an index lies outside `dataset` (a subset file made for another dataset)."""
    size = len(dataset)  # type: ignore[arg-type]
    bad = [i for i in indices if not 0 <= int(i) < size]
    if bad:
        raise DatasetError(f"{what} names dataset indices {bad[:5]} but the dataset has {size} items; "
                           "was it written for another dataset or split?")


class LabelBudget(Dataset):
    """`dataset` whose items keep their `"label"` only when their `"index"` is in `labelled`; the
    rest get `-1`. Attributes (classes, labels, augmentation, ...) are the wrapped dataset's."""

    def __init__(self, dataset: Dataset, labelled: Sequence[int]) -> None:
        check_indices(labelled, dataset, "the label subset")
        self.dataset = dataset
        self.labelled = frozenset(int(i) for i in labelled)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        if int(item["index"]) not in self.labelled:
            item["label"] = -1
        return item

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
