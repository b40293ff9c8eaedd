"""What the time-step strategy chose, and why: its distribution over the action set beside decoder
g's reward at every t of that set (the paper's Figure 8 question, asked of one finished run).

`timestep_report(repfusion, batches)` runs on labelled, un-augmented batches (items with
`image` in [0, 1], `label` >= 0, `index`, `flip`) after distillation:

- `probs`: pi(t | x) averaged over the images (uniform for the random strategy, one-hot for a
  fixed t), with its mode, mean, the entropy of that average and the mean per-image entropy,
  each beside log|T| (the entropy of the uniform policy);
- `reward`: decoder g's mean reward (-cross-entropy) on the teacher feature at each t, i.e. what
  the policy is paid for choosing t. A flat reward curve leaves REINFORCE nothing to learn.

At most `max_timesteps` evenly spaced t of a large action set are scored (an online teacher
runs once per t).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .decoders import decoder_task_loss
from ..modes import evaluating

__all__ = ["timestep_report", "scored_timesteps"]


def scored_timesteps(actions: list[int], max_timesteps: int) -> list[int]:
    """`actions` when at most `max_timesteps`, else that many evenly spaced ones (first and last kept)."""
    if len(actions) <= max_timesteps:
        return list(actions)
    step = (len(actions) - 1) / (max_timesteps - 1)
    return sorted({actions[round(i * step)] for i in range(max_timesteps)})


def _entropy(p: torch.Tensor) -> float:
    p = p[p > 0]
    return float(-(p * p.log()).sum())


@torch.no_grad()
def timestep_report(repfusion: nn.Module, batches: Iterable[Mapping[str, Any]], *, max_items: int = 2000,
                    max_timesteps: int = 50, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The strategy's distribution over its actions and decoder g's mean reward per t (see the module doc).

    `repfusion`: a `repfusion_zoo.method.RepFusion` with a decoder g; `batches`: dicts with
    `image [B, C, H, W]` in [0, 1], `label LongTensor[B]` (>= 0), `index`, `flip`.
    """
    actions = [int(t) for t in repfusion.strategy.actions.tolist()]
    scored = scored_timesteps(actions, max_timesteps)
    prob_sum = torch.zeros(len(actions), dtype=torch.float64)
    entropy_sum, reward_sum, count = 0.0, torch.zeros(len(scored), dtype=torch.float64), 0
    with evaluating(repfusion):
        for batch in batches:
            images = repfusion.teacher_input(batch["image"].to(device))
            labels, index, flip = (batch[key].to(device) for key in ("label", "index", "flip"))
            probs = repfusion.strategy.probs(images).double().cpu()  # [B, A]
            prob_sum += probs.sum(0)
            entropy_sum += sum(_entropy(row) for row in probs)
            for j, t in enumerate(scored):
                steps = torch.full((len(images),), t, dtype=torch.long, device=device)
                feature = repfusion.teacher.feature(images, steps, labels=labels, index=index, flip=flip)
                reward_sum[j] -= decoder_task_loss(repfusion.decoder(feature), labels).double().sum().cpu()
            count += len(images)
            if count >= max_items:
                break
    mean_probs = prob_sum / max(count, 1)
    mode = actions[int(mean_probs.argmax())]
    return {
        "timesteps": actions,
        "probs": mean_probs.tolist(),
        "mode": mode,
        "mean_t": float((mean_probs * torch.tensor(actions, dtype=torch.float64)).sum()),
        "entropy_of_mean": _entropy(mean_probs),
        "mean_entropy": entropy_sum / max(count, 1),
        "log_num_actions": math.log(len(actions)),
        "reward_timesteps": scored,
        "reward": (reward_sum / max(count, 1)).tolist(),
        "num_images": count,
    }
