"""The experiment's fixed subsets of the train split, written once as JSON index files.

- `distill_images`: the images distilled on (all, or `distill_images_per_class` per class, seeded by
  `data_seed`): the teacher-feature cache holds exactly these.
- `val`: `val_images_per_class` labelled images per class outside the distilled set when it leaves
  room (else inside it), outside every labelled subset: only for choices such as which seed to publish.
- `labelled-<lpc>-seed<s>`: `lpc` images per class drawn from the distilled images (minus `val`)
  by seed `s` (`lpc` 0 = all of them): the only labels any arm of that seed sees (fine-tuning,
  decoder g, kNN bank).

The files are named by role, not by the settings that drew them, so two grids sharing one
`output_dir` must draw the same ones: a file that holds another draw (another
`val_images_per_class`, `data_seed`, ... or dataset) is refused, never overwritten under a grid
that reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..data.subsets import per_class_subset, read_indices, write_indices
from ..errors import InputError
from .config import ExperimentConfig

__all__ = ["ExperimentSubsets", "write_subsets"]


@dataclass
class ExperimentSubsets:
    """Paths of the index files (JSON lists of train-split indices)."""

    folder: Path
    distill_images: Path
    val: Path

    def labelled(self, labels_per_class: int, seed: int) -> Path:
        return self.folder / f"labelled-{labels_per_class}-seed{seed}.json"

    @classmethod
    def of(cls, folder: Path) -> ExperimentSubsets:
        """The paths of the files in `folder` (written by `write_subsets`)."""
        return cls(folder, folder / "distill_images.json", folder / "val.json")


def write_subsets(cfg: ExperimentConfig, labels: Sequence[int], folder: Path) -> ExperimentSubsets:
    """Draw (or re-read: the draw is a pure function of the config) every subset and write its file."""
    subsets = ExperimentSubsets.of(folder)
    everything = range(len(labels))
    distilled = per_class_subset(labels, cfg.distill_images_per_class, cfg.data_seed)
    outside = sorted(set(everything) - set(distilled))
    room = min((sum(1 for i in outside if labels[i] == c) for c in set(labels)), default=0)
    pool = outside if room >= cfg.val_images_per_class > 0 else distilled
    val = per_class_subset(labels, cfg.val_images_per_class, cfg.data_seed, among=pool) if cfg.val_images_per_class > 0 else []
    candidates = sorted(set(distilled) - set(val))
    write_subset(subsets.distill_images, distilled)
    write_subset(subsets.val, val)
    for lpc in cfg.labels_per_class:
        for seed in cfg.seeds:
            write_subset(subsets.labelled(lpc, seed), per_class_subset(labels, lpc, seed, among=candidates))
    return subsets


def write_subset(path: Path, indices: Sequence[int]) -> None:
    """Write `indices` to `path`, or keep the file there when it holds them already; one holding other
    indices (another grid's draw in a shared output folder) is an `InputError` naming the fix."""
    if path.is_file():
        if read_indices(path) == list(indices):
            return
        raise InputError(f"{path} holds another subset than this grid draws: another grid with other subset "
                         "settings (val_images_per_class, distill_images_per_class, data_seed) or another dataset "
                         f"uses {path.parent.parent}; give this grid its own output_dir (a link to that folder's "
                         "cache/ keeps its teacher features)")
    write_indices(path, indices)
