"""Building the time-step strategy a `StrategySettings` names (each strategy reads its keys in ``from_settings``)."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ConfigError
from .base import TimestepSpec, TimestepStrategy, means_all
from .fixed import EveryTimestep, FixedTimestep, UniformTimestep
from .policy import ReinforcePolicy
from .settings import StrategySettings

__all__ = ["build_strategy", "strategy_learns"]


_STRATEGIES: dict[str, Any] = {
    "reinforce": ReinforcePolicy,
    "fixed": FixedTimestep,
    "random": UniformTimestep,
    "all_t": EveryTimestep,
}


def strategy_learns(name: str) -> bool:
    """Whether the strategy called `name` learns from a reward (the policy: its t, and so the student,
    then depend on decoder g's labels); `ConfigError` for an unknown name."""
    if name not in _STRATEGIES:
        raise ConfigError(f"unknown time-step strategy {name!r}; use one of {list(_STRATEGIES)}.")
    return bool(_STRATEGIES[name].learns)


def build_strategy(settings: StrategySettings | str, *, in_chans: int = 3, num_train_timesteps: int = 1000,
                   teacher_timesteps: TimestepSpec = None, **keys: Any) -> TimestepStrategy:
    """The strategy of ``settings`` for a teacher with ``in_chans`` input channels and T =
    ``num_train_timesteps``; ``timesteps: all`` means ``teacher_timesteps`` (a feature cache's set;
    None = all of 0..T-1).

    ``settings`` may be a strategy name with `StrategySettings` keys: ``build_strategy("fixed", t=3)``.
    """
    if isinstance(settings, str):
        names = [f.name for f in dataclasses.fields(StrategySettings)]
        unknown = sorted(set(keys) - set(names))
        if unknown:
            raise ConfigError(f"time-step strategy settings have no key(s) {unknown}; the keys are {names}.")
        settings = StrategySettings(strategy=settings, **keys)
    elif keys:
        raise ConfigError(f"give the keys {sorted(keys)} in the StrategySettings, not beside them")
    strategy_learns(settings.strategy)  # an unknown name fails here
    actions = teacher_timesteps if means_all(settings.timesteps) else settings.timesteps
    return _STRATEGIES[settings.strategy].from_settings(settings, in_chans=in_chans, num_train_timesteps=num_train_timesteps,
                                                        timesteps=actions)
