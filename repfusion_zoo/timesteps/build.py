"""Building a time-step strategy by name, from the keys each strategy declares (``SHARED``, ``OPTIONS``)."""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import TimestepSpec, TimestepStrategy
from .fixed import EveryTimestep, FixedTimestep, UniformTimestep
from .policy import ReinforcePolicy

__all__ = ["build_strategy"]


_STRATEGIES: dict[str, type[ReinforcePolicy] | type[FixedTimestep] | type[UniformTimestep]] = {
    "reinforce": ReinforcePolicy,
    "fixed": FixedTimestep,
    "random": UniformTimestep,
    "uniform": UniformTimestep,
    "all_t": EveryTimestep,
}


def build_strategy(name: str, *, in_chans: int | None = None, num_train_timesteps: int | None = None,
                   timesteps: TimestepSpec = None, **options: Any) -> TimestepStrategy:
    """Build a strategy by name: ``"reinforce"``, ``"fixed"`` (option ``t``), ``"random"`` (= ``"uniform"``),
    ``"all_t"`` (every t of the set for every image).

    ``in_chans``, ``num_train_timesteps`` and ``timesteps`` (the action set) may be passed to any
    strategy (each takes the ones it declares in ``SHARED``); an option outside its ``OPTIONS``
    raises :class:`ConfigError`.
    """
    if name not in _STRATEGIES:
        raise ConfigError(f"unknown time-step strategy {name!r}; use one of {sorted(_STRATEGIES)}.")
    cls = _STRATEGIES[name]
    unknown = set(options) - set(cls.OPTIONS)
    if unknown:
        raise ConfigError(
            f"time-step strategy {name!r} takes no option(s) {sorted(unknown)}; it takes {sorted({*cls.SHARED, *cls.OPTIONS})}."
        )
    shared = {"in_chans": in_chans, "num_train_timesteps": num_train_timesteps, "timesteps": timesteps}
    return cls(**{k: v for k, v in shared.items() if k in cls.SHARED and v is not None}, **options)
