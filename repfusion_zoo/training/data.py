"""Reproducible training data: an epoch-seeded order and epoch-seeded per-item augmentation.

Both are pure functions of `(seed, epoch, index)`, so a resumed run (which skips the batches it
already did) and a run on N processes see the same images in the same order, with the same
random augmentation, as one uninterrupted process.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate


def _mix(*values: int) -> int:
    out = 0x9E3779B1
    for value in values:
        out = (out * 1_000_003 + int(value) + 0x7F4A7C15) % (2**61 - 1)
    return out % (2**63 - 1)


class EpochSampler(Sampler[int]):
    """A random permutation of `range(n)` seeded by `(seed, epoch)`; call `set_epoch` each epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class EpochSeededDataset(Dataset):
    """Wraps a dataset so item `i` of epoch `e` is drawn under torch seed `(seed, e, i)`.

    The dataset's own random augmentation (global torch RNG) becomes independent of when and on
    which process the item is fetched; the caller's RNG state is left untouched.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: `torch.manual_seed` also queues a lazy seed for every
            # uninitialised accelerator, formatting a stack trace each time (~15 us an item)
            torch.default_generator.manual_seed(_mix(self.seed, self.epoch, index))
            return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def as_batch(batch: Any) -> dict[str, Any]:
    """A collated batch as a dict: dict items pass through, `(image, label)` tuples become keys."""
    if isinstance(batch, Mapping):
        return dict(batch)
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return {"image": batch[0], "label": batch[1]}
    return {"image": batch}


def collate(items: list[Any]) -> dict[str, Any]:
    """`default_collate`, returned as a dict (see `as_batch`)."""
    return as_batch(default_collate(items))


def seeded_train_loader(dataset: Dataset, micro_batch: int, seed: int,
                        num_workers: int = 0) -> tuple[DataLoader, EpochSampler, EpochSeededDataset]:
    """A `drop_last` training loader of `micro_batch` items whose order and augmentation are
    functions of `(seed, epoch, index)`; also returns its sampler and seeded dataset, whose
    `set_epoch` the loop calls each epoch."""
    sampler = EpochSampler(len(dataset), seed)  # type: ignore[arg-type]
    seeded = EpochSeededDataset(dataset, seed)
    loader = DataLoader(seeded, batch_size=micro_batch, sampler=sampler, drop_last=True,
                        num_workers=num_workers, collate_fn=collate)
    return loader, sampler, seeded
