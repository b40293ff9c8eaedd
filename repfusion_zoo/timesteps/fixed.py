"""The strategies that do not learn: one fixed t (the paper's "manual" ablation), t uniform over the
action set (its "random" ablation), and every t of the set at once (no selection: each image is
distilled at all of them, each through its own connector head). ``loss`` returns ``{}``."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import TimestepSample, TimestepSpec, check_images, parse_timesteps, steps_text
from .settings import StrategySettings

__all__ = ["FixedTimestep", "UniformTimestep", "EveryTimestep"]


class FixedTimestep(nn.Module):
    """The same t for every sample (no learning; ``loss`` returns ``{}``).

    ``timesteps`` (optional, :func:`parse_timesteps`): the run's action set, which must hold ``t``
    (e.g. the feature cache's set).
    """

    learns = False
    draws = 1
    loss_names: tuple[str, ...] = ()
    def __init__(self, t: int = 0, num_train_timesteps: int | None = None, timesteps: TimestepSpec = None) -> None:
        super().__init__()
        if t < 0 or (num_train_timesteps is not None and t >= num_train_timesteps):
            raise ConfigError(f"FixedTimestep t={t} lies outside 0..{(num_train_timesteps or 1) - 1}.")
        if timesteps is not None:
            allowed = parse_timesteps(timesteps, num_train_timesteps or 1000)
            if int(t) not in allowed:
                raise ConfigError(f"FixedTimestep t={t} is not in the time-step set {steps_text(allowed)}; pick t from it.")
        self.t = int(t)
        self.num_train_timesteps = num_train_timesteps
        self.register_buffer("actions", torch.tensor([self.t]), persistent=False)

    @classmethod
    def from_settings(cls, settings: StrategySettings, *, in_chans: int, num_train_timesteps: int,
                      timesteps: TimestepSpec) -> FixedTimestep:
        """``settings.t`` (which must lie in the action set ``timesteps``)."""
        return cls(t=settings.t, num_train_timesteps=num_train_timesteps, timesteps=timesteps)

    def sample(self, x: torch.Tensor) -> TimestepSample:
        """``x [B, C, H, W]`` -> ``TimestepSample(t LongTensor[B])``, every entry ``self.t``."""
        check_images(x)
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

    learns = False
    draws = 1
    loss_names: tuple[str, ...] = ()
    def __init__(self, num_train_timesteps: int = 1000, timesteps: TimestepSpec = None) -> None:
        super().__init__()
        if num_train_timesteps < 1:
            raise ConfigError(f"UniformTimestep num_train_timesteps={num_train_timesteps} must be >= 1.")
        self.num_train_timesteps = int(num_train_timesteps)
        self.register_buffer("actions", torch.tensor(parse_timesteps(timesteps, self.num_train_timesteps)), persistent=False)

    @classmethod
    def from_settings(cls, settings: StrategySettings, *, in_chans: int, num_train_timesteps: int,
                      timesteps: TimestepSpec) -> UniformTimestep:
        """Over the action set ``timesteps`` (no key of ``settings`` besides the set)."""
        return cls(num_train_timesteps=num_train_timesteps, timesteps=timesteps)

    def sample(self, x: torch.Tensor) -> TimestepSample:
        """``x [B, C, H, W]`` -> ``TimestepSample(t LongTensor[B])``, each entry uniform over the set."""
        check_images(x)
        idx = torch.randint(0, len(self.actions), (x.shape[0],), device=x.device)
        return TimestepSample(t=self.actions.to(x.device)[idx])

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, num_actions]``: uniform over ``self.actions``."""
        return torch.full((x.shape[0], len(self.actions)), 1.0 / len(self.actions), device=x.device)

    def loss(self, sample: TimestepSample, reward: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        return {}

    def extra_repr(self) -> str:
        return f"T={self.num_train_timesteps}, num_actions={len(self.actions)}"


class EveryTimestep(UniformTimestep):
    """Every t of the action set for every image (no selection; ``loss`` returns ``{}``): ``draws`` =
    ``len(actions)`` time steps per image, so RepFusion distils each image at each t and averages the
    losses (uniform weights over t). Meant with a time-conditioned connector (``connector: per_t``):
    a shared one would be asked for every t's target of the same image at once. The teacher's
    cost grows ``len(actions)``-fold online; from a feature cache it is a look-up each.
    """

    @property
    def draws(self) -> int:  # type: ignore[override]
        return int(len(self.actions))

    def sample(self, x: torch.Tensor) -> TimestepSample:
        """``x [B, C, H, W]`` -> ``TimestepSample(t LongTensor[B * A])``: image-major, each image's A time steps in order."""
        check_images(x)
        return TimestepSample(t=self.actions.to(x.device).repeat(x.shape[0]))

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, A]``: every t of the set is used (shown as equal weights)."""
        return super().probs(x)
