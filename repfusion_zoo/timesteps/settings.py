"""`StrategySettings`: the time-step strategy of a run, declared once (`build_strategy` builds it; the
distill recipe's config holds these keys as flags)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import opt

__all__ = ["StrategySettings", "STRATEGY_NAMES"]

#: the strategies `build_strategy` knows, by name
STRATEGY_NAMES = ("reinforce", "fixed", "random", "all_t")


@dataclass
class StrategySettings:
    """Which time step t each image is distilled at. A strategy reads the keys it uses (its
    ``from_settings``); the rest are ignored."""

    strategy: str = opt("reinforce", "time-step strategy: the paper's policy, one t, t at random, or every t of the set "
                                     "at once (all_t, with connector per_t); the recipes' configs default to fixed t = 300 "
                                     "(docs/results/cifar10_cpu_tselect.md)", choices=STRATEGY_NAMES)
    t: int = opt(0, "the time step of --strategy fixed")
    timesteps: str = opt("all", "the action set of every strategy: all | start:stop:step (e.g. 0:1000:50) | 0,10,50 "
                                "(with --teacher_cache, 'all' means the cache's set)")
    entropy_weight: float = opt(0.1, "reinforce: lambda_H of the policy's entropy bonus")
    entropy_decay_until: float | None = opt(None, "reinforce: fraction of training where lambda_H reaches 0 (null = constant, "
                                                  "the paper; the authors' code: 0.5)")
    policy_baseline: str | None = opt("ema", "reinforce: the REINFORCE baseline (null = plain REINFORCE, the authors' code)",
                                      choices=["ema", "batch_mean", None])
    commit_entropy: float = opt(0.0, "reinforce: the policy commits to its per-image argmax once a batch's mean entropy is "
                                     "below this (nats) and stops learning; 0 = it samples to the end (the paper)")
