"""Time-step selection strategies: which diffusion time step t each sample is distilled at.

One interface (docs/architecture.md, "time steps"):

- ``strategy.sample(x) -> TimestepSample(t [B], log_prob [B] | None, entropy [B] | None)``
- ``strategy.loss(sample, reward [B], progress) -> dict[str, Tensor]`` (``policy`` and ``entropy``
  for the learned policy; empty for fixed / uniform strategies)

Strategies:

- :class:`ReinforcePolicy`: the paper's Section 4.2. A small conv net on the image, 3 linear layers,
  a categorical over the action set, one t sampled per sample; trained by REINFORCE on
  reward = -task loss of the decoder g, plus an entropy bonus.
- :class:`FixedTimestep`: one t for every sample (the paper's "manual" ablation; t = 0 is what the
  authors used for CelebA-HQ).
- :class:`UniformTimestep`: t uniform over 0..T-1 per sample (the paper's "random" ablation).

The policy's input is the image **as the teacher sees it**: ``[B, C, H, W]`` in [-1, 1] for a
diffusion teacher (``x * 2 - 1`` of a [0, 1] dataset image). It is detached: the policy never
sends gradients into the image or anything upstream of it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch
from torch import nn
from torch.distributions import Categorical

from repfusion_zoo.errors import ConfigError, InputError

__all__ = [
    "TimestepSample",
    "ReinforcePolicy",
    "FixedTimestep",
    "UniformTimestep",
    "build_strategy",
    "parse_timesteps",
    "entropy_weight_at",
    "DEFAULT_BASELINE",
]

BASELINES = ("ema", "batch_mean", None)
#: the default baseline of :class:`ReinforcePolicy` (measured: benchmarks/policy_baseline.py)
DEFAULT_BASELINE = "ema"


@dataclass
class TimestepSample:
    """Time steps drawn for one batch.

    t: ``LongTensor[B]``, the diffusion time step of each sample (in 0..T-1).
    log_prob: ``Tensor[B]`` log pi(t | x) with grad to the policy, or None for non-learned strategies.
    entropy: ``Tensor[B]`` entropy of pi(. | x) with grad to the policy, or None.
    """

    t: torch.Tensor
    log_prob: torch.Tensor | None = None
    entropy: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> TimestepSample:
        """The samples at ``rows`` (a LongTensor of batch positions), e.g. the labelled ones."""
        pick = lambda value: None if value is None else value[rows]  # noqa: E731
        return TimestepSample(t=self.t[rows], log_prob=pick(self.log_prob), entropy=pick(self.entropy))


TimestepSpec = Union[str, Sequence[int], None]


def parse_timesteps(spec: TimestepSpec, num_train_timesteps: int) -> list[int]:
    """The finite action set of time steps, sorted: the ``timesteps:`` key of every strategy and of the cache.

    ``spec``: None, ``""`` or ``"all"`` = all of 0..T-1 (the paper); a range ``"start:stop:step"``
    (Python's ``range``, e.g. ``"0:1000:50"``); a comma list ``"0,10,50"``; or a sequence of ints.
    Every entry must lie in 0..T-1 and appear once (:class:`ConfigError` otherwise).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(range(num_train_timesteps))
    if isinstance(spec, str):
        text = spec.strip().strip("[]")
        try:
            if ":" in text:
                values = list(range(*(int(part) for part in text.split(":"))))
            else:
                values = [int(part) for part in text.split(",") if part.strip()]
        except (TypeError, ValueError):
            raise ConfigError(
                f"timesteps {spec!r} is not a time-step set; give 'all', a range 'start:stop:step' (e.g. '0:1000:50') "
                "or a comma list '0,10,50'."
            ) from None
    else:
        values = [int(v) for v in spec]
    if not values:
        raise ConfigError(f"timesteps {spec!r} is empty; give at least one time step, or 'all'.")
    bad = [v for v in values if not 0 <= v < num_train_timesteps]
    if bad:
        raise ConfigError(
            f"timesteps {bad[:5]} lie outside 0..{num_train_timesteps - 1} (the teacher's num_train_timesteps={num_train_timesteps})."
        )
    if len(set(values)) != len(values):
        raise ConfigError(f"timesteps {spec!r} contains duplicates; give each time step once.")
    return sorted(values)


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


def _check_images(x: torch.Tensor, in_chans: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(
            f"a time-step strategy takes images [B, C, H, W]; got {shape}. "
            "Pass the batch of images as the teacher sees them (x * 2 - 1 of [0, 1] images)."
        )
    if in_chans is not None and x.shape[1] != in_chans:
        raise InputError(
            f"the time-step policy was built for {in_chans} input channels but the images have "
            f"{x.shape[1]} (shape {tuple(x.shape)}); build it with in_chans={x.shape[1]}."
        )


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
            (deterministic), ``"sample"`` keeps sampling. Training always samples.

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
        self.register_buffer("actions", torch.tensor(acts, dtype=torch.long))
        # EMA baseline state: saved with the state dict, so a resumed run continues it
        self.register_buffer("baseline_value", torch.zeros(()))
        self.register_buffer("baseline_initialized", torch.zeros((), dtype=torch.bool))
        self.net = _PolicyNet(in_chans, len(acts), conv_channels, hidden)

    @property
    def num_actions(self) -> int:
        return int(self.actions.numel())

    def distribution(self, x: torch.Tensor) -> Categorical:
        """pi(. | x) over the action indices; ``x`` [B, C, H, W] (detached here).

        Without torch's argument validation: its checks of the logits and of every sampled index
        are host syncs on a GPU, and both are ours by construction (the same values otherwise).
        """
        _check_images(x, self.in_chans)
        return Categorical(logits=self.net(x.detach()).float(), validate_args=False)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, num_actions]`` probabilities, in the order of ``self.actions``."""
        return self.distribution(x).probs

    def sample(self, x: torch.Tensor) -> TimestepSample:
        """One t per sample: sampled in training, argmax (or sampled, see ``eval_mode``) at eval.

        ``x [B, C, H, W]`` -> ``TimestepSample(t LongTensor[B], log_prob [B], entropy [B])``.
        """
        dist = self.distribution(x)
        if self.training or self.eval_mode == "sample":
            idx = dist.sample()
        else:
            idx = dist.probs.argmax(dim=1)
        return TimestepSample(t=self.actions[idx], log_prob=dist.log_prob(idx), entropy=dist.entropy())

    def entropy_weight_at(self, progress: float) -> float:
        """lambda_H at ``progress`` (fraction of training done), by this policy's schedule."""
        return entropy_weight_at(self.entropy_weight, progress, self.entropy_decay_until)

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
        entropy = -self.entropy_weight_at(progress) * sample.entropy.mean()
        return {"policy": policy, "entropy": entropy}

    def extra_repr(self) -> str:
        return (
            f"num_actions={self.num_actions}, T={self.num_train_timesteps}, lambda_H={self.entropy_weight}, "
            f"decay_until={self.entropy_decay_until}, baseline={self.baseline!r}"
        )


class FixedTimestep(nn.Module):
    """The same t for every sample (no learning; ``loss`` returns ``{}``).

    ``timesteps`` (optional, :func:`parse_timesteps`): the run's action set, which must hold ``t``
    (e.g. the feature cache's set).
    """

    def __init__(self, t: int = 0, num_train_timesteps: int | None = None, timesteps: TimestepSpec = None) -> None:
        super().__init__()
        if t < 0 or (num_train_timesteps is not None and t >= num_train_timesteps):
            raise ConfigError(f"FixedTimestep t={t} lies outside 0..{(num_train_timesteps or 1) - 1}.")
        if timesteps is not None:
            allowed = parse_timesteps(timesteps, num_train_timesteps or 1000)
            if int(t) not in allowed:
                raise ConfigError(f"FixedTimestep t={t} is not in the time-step set {_short(allowed)}; pick t from it.")
        self.t = int(t)
        self.num_train_timesteps = num_train_timesteps
        self.register_buffer("actions", torch.tensor([self.t]), persistent=False)

    def sample(self, x: torch.Tensor) -> TimestepSample:
        """``x [B, C, H, W]`` -> ``TimestepSample(t LongTensor[B])``, every entry ``self.t``."""
        _check_images(x)
        return TimestepSample(t=torch.full((x.shape[0],), self.t, dtype=torch.long, device=x.device))

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1]``: all mass on ``self.t``."""
        return torch.ones((x.shape[0], 1), device=x.device)

    def loss(self, sample: TimestepSample, reward: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        return {}

    def extra_repr(self) -> str:
        return f"t={self.t}"


class UniformTimestep(nn.Module):
    """t uniform over the time-step set (default all of 0..T-1), independently per sample (``loss`` returns ``{}``)."""

    def __init__(self, num_train_timesteps: int = 1000, timesteps: TimestepSpec = None) -> None:
        super().__init__()
        if num_train_timesteps < 1:
            raise ConfigError(f"UniformTimestep num_train_timesteps={num_train_timesteps} must be >= 1.")
        self.num_train_timesteps = int(num_train_timesteps)
        self.register_buffer("actions", torch.tensor(parse_timesteps(timesteps, self.num_train_timesteps)), persistent=False)

    def sample(self, x: torch.Tensor) -> TimestepSample:
        """``x [B, C, H, W]`` -> ``TimestepSample(t LongTensor[B])``, each entry uniform over the set."""
        _check_images(x)
        idx = torch.randint(0, len(self.actions), (x.shape[0],), device=x.device)
        return TimestepSample(t=self.actions.to(x.device)[idx])

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, num_actions]``: uniform over ``self.actions``."""
        return torch.full((x.shape[0], len(self.actions)), 1.0 / len(self.actions), device=x.device)

    def loss(self, sample: TimestepSample, reward: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        return {}

    def extra_repr(self) -> str:
        return f"T={self.num_train_timesteps}, num_actions={len(self.actions)}"


def _short(values: Sequence[int]) -> str:
    return str(list(values)) if len(values) <= 12 else f"[{values[0]}, {values[1]}, ..., {values[-1]}] ({len(values)} steps)"


_STRATEGIES: dict[str, type[nn.Module]] = {
    "reinforce": ReinforcePolicy,
    "fixed": FixedTimestep,
    "random": UniformTimestep,
    "uniform": UniformTimestep,
}
# keys a caller may pass to every strategy; each strategy takes the ones it uses
_SHARED_KEYS = {"in_chans", "num_train_timesteps", "timesteps"}


def build_strategy(name: str, **kwargs: Any) -> nn.Module:
    """Build a strategy by name: ``"reinforce"``, ``"fixed"`` (kwarg ``t``), ``"random"`` (= ``"uniform"``).

    ``in_chans``, ``num_train_timesteps`` and ``timesteps`` (the action set) may be passed to any
    strategy (ignored where unused);
    any other key a strategy does not take raises :class:`ConfigError`.
    """
    if name not in _STRATEGIES:
        raise ConfigError(f"unknown time-step strategy {name!r}; use one of {sorted(_STRATEGIES)}.")
    cls = _STRATEGIES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(kwargs) - accepted - _SHARED_KEYS
    if unknown:
        raise ConfigError(
            f"time-step strategy {name!r} takes no option(s) {sorted(unknown)}; it takes {sorted(accepted)}."
        )
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})
