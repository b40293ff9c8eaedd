"""The REINFORCE time-step policy pi(t | x) of RepFusion (paper, Section 4.2), with its baselines and
the entropy bonus's schedule."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.distributions import Categorical

from ..errors import DIVERGED_FIX, ConfigError, InputError, TrainingDivergedError
from .base import TimestepSample, TimestepSpec, check_images, parse_timesteps
from .settings import StrategySettings

__all__ = ["ReinforcePolicy", "entropy_weight_at", "BASELINES", "DEFAULT_BASELINE"]

BASELINES = ("ema", "batch_mean", None)
#: the default baseline of :class:`ReinforcePolicy` (measured: benchmarks/policy_baseline.py)
DEFAULT_BASELINE = "ema"


def entropy_weight_at(weight: float, progress: float, decay_until: float | None) -> float:
    """lambda_H at a point of training.

    ``decay_until=None``: constant ``weight``. Otherwise linear from ``weight`` at progress 0 to 0 at
    ``progress == decay_until`` and 0 after (the authors' configs: 0.1 -> 0 by epoch 100 of 200,
    i.e. ``decay_until=0.5``).
    """
    if decay_until is None:
        return float(weight)
    if decay_until <= 0:
        return 0.0
    return float(weight) * max(0.0, 1.0 - float(progress) / float(decay_until))


class _PolicyNet(nn.Module):
    """Image -> action logits: 3 conv layers (stride 2), global average pool, 3 linear layers.

    ``[B, C, H, W] -> [B, num_actions]``; any H, W >= 1.
    """

    def __init__(self, in_chans: int, num_actions: int, conv_channels: Sequence[int], hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for ch in conv_channels:
            layers += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            prev = ch
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head = nn.Sequential(
            nn.Linear(prev, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_actions),
        )
        # start from the uniform policy: every step equally likely, maximal entropy
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ReinforcePolicy(nn.Module):
    """REINFORCE time-step policy pi(t | x) (RepFusion, Section 4.2).

    Args:
        in_chans: channels of the image the policy sees (the teacher's input).
        num_train_timesteps: T of the teacher's scheduler; actions must lie in 0..T-1.
        timesteps: the time steps the policy chooses among (:func:`parse_timesteps`: a sequence,
            ``"0:1000:50"`` or ``"0,10,50"``); None = all T steps (the paper). With a feature
            cache, the cache's set.
        hidden: width of the 3 linear layers.
        conv_channels: channels of the 3 conv layers (stride 2 each).
        entropy_weight: lambda_H (0.1, the paper).
        entropy_decay_until: fraction of training at which lambda_H reaches 0 (linear);
            None = constant (the paper). The authors' configs: 0.5 (epoch 100 of 200).
        baseline: variance-reducing baseline subtracted from the reward:
            ``"ema"`` (exponential moving average of the batch-mean reward, kept in the buffer
            ``baseline_value`` so it is saved and resumed with the state dict), ``"batch_mean"``
            (leave-one-out mean of the other rewards of the batch: unbiased, no state), or None
            (plain REINFORCE, what the authors ran).
        baseline_momentum: EMA momentum (weight of the old value).
        eval_mode: at eval (``.eval()``), ``"argmax"`` takes the most probable t per sample
            (deterministic), ``"sample"`` keeps sampling. Training samples, until it commits:
        commit_entropy: once a training batch's mean per-image entropy falls below this many nats,
            the policy commits to its per-image argmax for the rest of training (``committed``,
            saved and resumed with the state dict) and stops learning (its losses are 0).
            0 = never (the paper: it samples to the end).

    Default baseline ``"ema"``, decided by measurement: ``python benchmarks/policy_baseline.py``
    (a contextual bandit shaped like RepFusion's reward: T = 1000 actions, rewards -(2.3 -> 0.5
    drifting decoder loss + a per-image time-step gap + skewed per-sample noise), the paper's SGD
    lr 0.1 / momentum 0.9, batch 64, 800 steps, 3 seeds, identical for every variant):

    ==========  ============  ======================  ==================
    baseline    final regret  steps to regret < 0.35  gradient variance
    ==========  ============  ======================  ==================
    None        0.330         567                     0.151
    "ema"       0.231         260                     0.0113
    batch_mean  0.261         260                     0.0111
    ==========  ============  ======================  ==================

    (uniform policy: regret 0.50; final regret = mean of the last 5 evaluations; last line
    ``ratio: 0.70`` = final regret with "ema" / without a baseline). The EMA baseline cuts the
    policy-gradient variance ~13x and gets to regret < 0.35 in about half the steps of plain
    REINFORCE (the authors' choice); it is on par with the leave-one-out batch mean (seed noise
    is about +-0.05) and, unlike it, also works with one sample per process.
    """

    learns = True
    draws = 1
    loss_names = ("policy", "entropy")

    def __init__(
        self,
        in_chans: int = 3,
        num_train_timesteps: int = 1000,
        timesteps: TimestepSpec = None,
        hidden: int = 128,
        conv_channels: Sequence[int] = (16, 32, 64),
        entropy_weight: float = 0.1,
        entropy_decay_until: float | None = None,
        baseline: str | None = DEFAULT_BASELINE,
        baseline_momentum: float = 0.9,
        eval_mode: str = "argmax",
        commit_entropy: float = 0.0,
    ) -> None:
        super().__init__()
        if baseline not in BASELINES:
            raise ConfigError(f"ReinforcePolicy baseline={baseline!r} is unknown; use one of {BASELINES}.")
        if eval_mode not in ("argmax", "sample"):
            raise ConfigError(f"ReinforcePolicy eval_mode={eval_mode!r} is unknown; use 'argmax' or 'sample'.")
        if len(tuple(conv_channels)) != 3:
            raise ConfigError(f"ReinforcePolicy conv_channels needs 3 entries (3 conv layers); got {conv_channels!r}.")
        acts = parse_timesteps(timesteps, num_train_timesteps)
        self.in_chans = in_chans
        self.num_train_timesteps = num_train_timesteps
        self.entropy_weight = float(entropy_weight)
        self.entropy_decay_until = entropy_decay_until
        self.baseline = baseline
        self.baseline_momentum = float(baseline_momentum)
        self.eval_mode = eval_mode
        self.commit_entropy = float(commit_entropy)
        self.register_buffer("actions", torch.tensor(acts, dtype=torch.long))
        self.register_buffer("committed", torch.zeros((), dtype=torch.bool))
        # EMA baseline state: saved with the state dict, so a resumed run continues it
        self.register_buffer("baseline_value", torch.zeros(()))
        self.register_buffer("baseline_initialized", torch.zeros((), dtype=torch.bool))
        self.net = _PolicyNet(in_chans, len(acts), conv_channels, hidden)

    @classmethod
    def from_settings(cls, settings: StrategySettings, *, in_chans: int, num_train_timesteps: int,
                      timesteps: TimestepSpec) -> ReinforcePolicy:
        """The policy of ``settings`` (entropy bonus and its decay, baseline, commit threshold) over ``timesteps``."""
        return cls(in_chans=in_chans, num_train_timesteps=num_train_timesteps, timesteps=timesteps,
                   entropy_weight=settings.entropy_weight, entropy_decay_until=settings.entropy_decay_until,
                   baseline=settings.policy_baseline, commit_entropy=settings.commit_entropy)

    @property
    def num_actions(self) -> int:
        return int(self.actions.numel())

    def distribution(self, x: torch.Tensor) -> Categorical:
        """pi(. | x) over the action indices; ``x`` [B, C, H, W] (detached here).

        Without torch's argument validation: its checks of the logits and of every sampled index
        are host syncs on a GPU, and both are ours by construction (the same values otherwise).
        """
        check_images(x, self.in_chans)
        return Categorical(logits=self.net(x.detach()).float(), validate_args=False)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, num_actions]`` probabilities, in the order of ``self.actions``."""
        return self.distribution(x).probs

    def sample(self, x: torch.Tensor) -> TimestepSample:
        """One t per sample: sampled in training (argmax once ``committed``), argmax (or sampled, see
        ``eval_mode``) at eval.

        ``x [B, C, H, W]`` -> ``TimestepSample(t LongTensor[B], log_prob [B], entropy [B])``.
        """
        dist = self.distribution(x)
        if self.training or self.eval_mode == "sample":
            # no host sync: the committed flag picks between the draw and the argmax on the device
            idx = self._draw(dist)
            idx = torch.where(self.committed, dist.probs.argmax(dim=1), idx) if self.training else idx
        else:
            idx = dist.probs.argmax(dim=1)
        return TimestepSample(t=self.actions[idx], log_prob=dist.log_prob(idx), entropy=dist.entropy())

    @staticmethod
    def _draw(dist: Categorical) -> torch.Tensor:
        """One action index per row; torch refuses probabilities that are not finite (the policy
        diverged): that refusal is raised as `TrainingDivergedError`, with the fix."""
        try:
            return dist.sample()
        except RuntimeError as error:
            if "inf" not in str(error) and "nan" not in str(error):
                raise
            raise TrainingDivergedError(f"the time-step policy diverged: its probabilities are not finite ({error}); "
                                        f"{DIVERGED_FIX}.") from error

    def _advantage(self, reward: torch.Tensor) -> torch.Tensor:
        """reward - baseline, ``[B]``, detached; updates the EMA state in training."""
        reward = reward.detach().float()
        if self.baseline is None:
            return reward
        if self.baseline == "batch_mean":
            n = reward.numel()
            if n < 2:
                return reward - reward  # one sample: no other reward to compare with
            others = (reward.sum() - reward) / (n - 1)
            return reward - others
        # "ema" (no host sync: the state stays on the device)
        mean = reward.mean()
        initialized = self.baseline_initialized
        base = torch.where(initialized, self.baseline_value.to(reward), mean)
        adv = reward - base
        if self.training:
            with torch.no_grad():
                m = initialized.to(mean.dtype) * self.baseline_momentum  # 0 on the first batch
                self.baseline_value.copy_(m * base + (1.0 - m) * mean)
                self.baseline_initialized.fill_(True)
        return adv

    def loss(self, sample: TimestepSample, reward: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        """REINFORCE + entropy bonus.

        ``policy = -mean((reward - baseline).detach() * log_prob)``,
        ``entropy = -lambda_H(progress) * mean(entropy)``; ``reward`` ``[B]`` (higher is better).
        """
        if sample.log_prob is None or sample.entropy is None:
            raise InputError("ReinforcePolicy.loss needs a TimestepSample from ReinforcePolicy.sample (log_prob is None).")
        if reward.shape != sample.log_prob.shape:
            raise InputError(
                f"reward has shape {tuple(reward.shape)} but the sample has {tuple(sample.log_prob.shape)}; "
                "give one reward per sample."
            )
        adv = self._advantage(reward)
        policy = -(adv * sample.log_prob).mean()
        entropy = -entropy_weight_at(self.entropy_weight, progress, self.entropy_decay_until) * sample.entropy.mean()
        if self.commit_entropy > 0:
            if self.training:
                with torch.no_grad():
                    self.committed.logical_or_(sample.entropy.mean() < self.commit_entropy)
            learning = (~self.committed).to(policy.dtype)  # a committed policy has nothing left to learn
            policy, entropy = policy * learning, entropy * learning
        return {"policy": policy, "entropy": entropy}

    def extra_repr(self) -> str:
        return (
            f"num_actions={self.num_actions}, T={self.num_train_timesteps}, lambda_H={self.entropy_weight}, "
            f"decay_until={self.entropy_decay_until}, baseline={self.baseline!r}, commit_entropy={self.commit_entropy}"
        )
