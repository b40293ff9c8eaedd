"""Time-step selection strategies: which diffusion time step t each sample is distilled at.

One interface, the `TimestepStrategy` protocol (docs/architecture.md, "time steps"):

- ``strategy.sample(x) -> TimestepSample(t [B], log_prob [B] | None, entropy [B] | None)``
- ``strategy.probs(x) -> [B, A]``: pi(t | x) over ``strategy.actions`` (the action set)
- ``strategy.loss(sample, reward [B], progress) -> dict[str, Tensor]`` (``policy`` and ``entropy``
  for the learned policy; empty for fixed / uniform strategies)
- ``strategy.learns``: whether ``loss`` learns from a reward (then RepFusion needs a decoder g)

Built by `build_strategy(StrategySettings)` (settings.py: the keys, declared once; each strategy's
``from_settings`` reads the ones it uses). Strategies:

- :class:`ReinforcePolicy`: the paper's Section 4.2. A small conv net on the image, 3 linear layers,
  a categorical over the action set, one t sampled per sample; trained by REINFORCE on
  reward = -task loss of the decoder g, plus an entropy bonus.
- :class:`FixedTimestep`: one t for every sample (the paper's "manual" ablation; t = 0 is what the
  authors used for CelebA-HQ).
- :class:`UniformTimestep`: t uniform over 0..T-1 per sample (the paper's "random" ablation).
- :class:`EveryTimestep`: every t of the action set for every image (``draws`` = the set's size;
  no selection, uniform weights over t), meant with a time-conditioned connector.

The policy's input is the image **as the teacher sees it**: ``[B, C, H, W]`` in [-1, 1] for a
diffusion teacher (``x * 2 - 1`` of a [0, 1] dataset image). It is detached: the policy never
sends gradients into the image or anything upstream of it.
"""
from __future__ import annotations

from .base import TimestepSample, TimestepSpec, TimestepStrategy, means_all, parse_timesteps
from .build import build_strategy, strategy_learns
from .fixed import EveryTimestep, FixedTimestep, UniformTimestep
from .policy import BASELINES, DEFAULT_BASELINE, ReinforcePolicy, entropy_weight_at
from .settings import STRATEGY_NAMES, StrategySettings

__all__ = [
    "TimestepSample",
    "TimestepSpec",
    "TimestepStrategy",
    "ReinforcePolicy",
    "FixedTimestep",
    "UniformTimestep",
    "EveryTimestep",
    "build_strategy",
    "strategy_learns",
    "StrategySettings",
    "STRATEGY_NAMES",
    "parse_timesteps",
    "means_all",
    "entropy_weight_at",
    "BASELINES",
    "DEFAULT_BASELINE",
]
