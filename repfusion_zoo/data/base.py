"""The common face of every classification dataset: dict items, `classes`, `num_classes`, `labels`."""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ..errors import DatasetError, MissingExtraError
from .transforms import Augmentation

#: split names each dataset accepts; "val" / "validation" are aliases of "test" everywhere
TRAIN_SPLITS = ("train",)
TEST_SPLITS = ("test", "val", "validation")
#: the fraction held out as the test split when a dataset comes as one split (digits, one-split HF datasets)
TEST_FRACTION = 0.2


def canonical_split(split: str) -> str:
    """"train" -> "train"; "test" / "val" / "validation" -> "test"; anything else is a `DatasetError`."""
    if split in TRAIN_SPLITS:
        return "train"
    if split in TEST_SPLITS:
        return "test"
    raise DatasetError(f"unknown split {split!r}; use 'train' or 'test' ('val' and 'validation' mean 'test')")


def seeded_split(num_items: int, split: str, seed: int, stratify: Sequence[int] | None = None) -> list[int]:
    """Sorted indices of `split` in a seeded 80/20 train/test cut of `range(num_items)`, stratified by the
    per-item labels `stratify` when given (the same cut for both splits, on every machine and process)."""
    try:
        from sklearn.model_selection import train_test_split  # optional: the recipes extra (splits of one-split datasets)
    except ImportError as error:
        raise MissingExtraError.of("scikit-learn", "the train/test split of a one-split dataset") from error

    train, test = train_test_split(list(range(num_items)), test_size=TEST_FRACTION, random_state=seed, stratify=stratify)
    return sorted(train if canonical_split(split) == "train" else test)


class ImageClassificationDataset(Dataset):
    """Items are `{"image": FloatTensor[C, H, W] in [0, 1], "label": int, "index": int, "flip": bool}`;
    they collate with default_collate. `index` is the item's index in this dataset (also through a
    `Subset`), `flip` whether augmentation mirrored it: with them a teacher-feature cache finds the
    item's feature.

    Subclasses fill `classes`, `labels` (one int per item, -1 when unlabelled) and implement
    `load_image(index) -> [C, H, W]` (before augmentation). `augmentation` is the training
    augmentation (`repfusion_zoo.data.transforms.Augmentation`) or None.
    """

    def __init__(self, classes: Sequence[str], labels: Sequence[int], augmentation: Augmentation | None):
        self.classes: list[str] = list(classes)
        self.labels: list[int] = [int(label) for label in labels]
        self.augmentation = augmentation

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | bool]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        index = index % len(self)
        image, flip = self.load_image(index), False
        if self.augmentation is not None:
            image, flip = self.augmentation(image)
        return {"image": image.contiguous(), "label": self.labels[index], "index": index, "flip": flip}


def num_classes(dataset: Dataset) -> int:
    """The number of classes of a dataset built here, also through `Subset` / `ConcatDataset` wrappers."""
    while not hasattr(dataset, "num_classes"):
        if hasattr(dataset, "dataset"):  # torch.utils.data.Subset
            dataset = dataset.dataset
        elif getattr(dataset, "datasets", None):  # ConcatDataset
            dataset = dataset.datasets[0]
        else:
            raise DatasetError(f"{type(dataset).__name__} has no `num_classes`; build it with repfusion_zoo.data.build_dataset")
    return int(dataset.num_classes)


def unaugmented(dataset: ImageClassificationDataset) -> ImageClassificationDataset:
    """The same items without training augmentation (a shallow copy: no file is read again)."""
    plain = copy.copy(dataset)
    plain.augmentation = None
    return plain
