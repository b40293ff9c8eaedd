"""The `probe` arm's time step: chosen BEFORE distilling, by a linear probe of the cached teacher
features of the labelled subset (a held-out part of it scores each t), never the test split."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ..cache import FeatureCache
from ..method.probe import linear_probe_accuracy

__all__ = ["probe_timestep"]


def cached_pooled(cache: FeatureCache, indices: Sequence[int], t: int) -> torch.Tensor:
    """`[N, C]`: the cached identity-view features of `indices` at `t`, averaged over space."""
    index = torch.as_tensor(list(indices), dtype=torch.long)
    feature = cache.lookup(index, torch.zeros(len(index), dtype=torch.bool), torch.full((len(index),), int(t)))
    return feature.flatten(2).mean(-1) if feature.dim() == 4 else feature


def probe_timestep(cache_dir: Path, labelled: Sequence[int], train: Dataset, test_fraction: float,
                   seed: int) -> tuple[int, dict[str, float]]:
    """(the t of the cache's set with the best held-out linear-probe accuracy, {t: accuracy in %})."""
    cache = FeatureCache(cache_dir)
    labels = torch.tensor([train.labels[i] for i in labelled])  # type: ignore[attr-defined]
    scores = {str(t): 100.0 * linear_probe_accuracy(cached_pooled(cache, labelled, t), labels,
                                                    test_fraction=test_fraction, seed=seed)
              for t in cache.timesteps}
    best = max(scores, key=lambda t: (scores[t], -int(t)))
    return int(best), scores
