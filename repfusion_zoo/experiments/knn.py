"""The frozen backbone's representation alone: weighted k-nearest-neighbour top-1, as solo-learn and
lightly report it (cosine similarity, k = 20, votes weighted by exp(similarity / 0.07)).

`embed(backbone, dataset)` gives the backbone's pooled features (its `forward_features` through
its own global pool, i.e. what a classifier head would see); `knn_top1(bank, bank_labels,
queries, query_labels)` scores the queries against the labelled bank.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..modes import evaluating
from ..training.data import collate

__all__ = ["embed", "knn_predict", "knn_top1"]


def embed(backbone: nn.Module, dataset: Dataset, *, batch_size: int = 256,
          device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(`[N, D]` pooled features, `LongTensor[N]` labels) of `dataset`'s items (images in [0, 1]).

    `backbone` takes images in [0, 1] (e.g. `repfusion_zoo.tasks.classification.Normalized`) and
    returns `[B, D]` features (a timm model built with `num_classes=0`, or `forward_head(pre_logits=True)`).
    """
    features, labels = [], []
    with evaluating(backbone):
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
            features.append(backbone(batch["image"].to(device)).float().flatten(1).cpu())
            labels.append(torch.as_tensor(batch["label"]).long())
    return torch.cat(features), torch.cat(labels)


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, *, k: int = 20,
                temperature: float = 0.07, num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """`LongTensor[M]` predicted classes of `queries [M, D]` from the `bank [N, D]` with `bank_labels [N]`.

    Cosine similarity; the k most similar bank items vote for their class with weight
    exp(similarity / temperature) (Wu et al. 2018; solo-learn's WeightedKNNClassifier).
    """
    num_classes = int(num_classes or int(bank_labels.max()) + 1)
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, len(bank))
    predictions = []
    for start in range(0, len(queries), chunk):
        sims = F.normalize(queries[start:start + chunk].float(), dim=1) @ bank.T  # [m, N]
        top, idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(sims), num_classes).scatter_add_(1, bank_labels[idx], (top / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_top1(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, query_labels: torch.Tensor, *,
             k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy in percent of `knn_predict` on the queries."""
    num_classes = int(max(int(bank_labels.max()), int(query_labels.max())) + 1)
    predicted = knn_predict(bank, bank_labels, queries, k=k, temperature=temperature, num_classes=num_classes)
    return 100.0 * float((predicted == query_labels).float().mean())
