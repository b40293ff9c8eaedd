"""What every time-step strategy shares: the drawn sample, the `TimestepStrategy` protocol, the action set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, Sequence, Union

import torch

from ..errors import ConfigError, InputError

__all__ = ["TimestepSample", "TimestepSpec", "TimestepStrategy", "parse_timesteps", "means_all", "check_images", "steps_text"]


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


class TimestepStrategy(Protocol):
    """What RepFusion needs of a time-step strategy; `ReinforcePolicy`, `FixedTimestep` and
    `UniformTimestep` implement it (each is also an ``nn.Module``: its state is saved and resumed).

    ``progress`` is the fraction of training done, in [0, 1].
    """

    #: True when `loss` learns from a reward (the policy): RepFusion then needs a decoder g
    learns: ClassVar[bool]
    #: time steps drawn per image: `sample` returns ``t [B * draws]``, image-major (1 but for `EveryTimestep`)
    draws: int
    #: the names of the losses `loss` returns (every batch returns the same names, on every process)
    loss_names: ClassVar[tuple[str, ...]]
    #: ``LongTensor[A]``: the time steps it chooses among, sorted
    actions: torch.Tensor

    def sample(self, x: torch.Tensor) -> TimestepSample:
        """``draws`` time steps per image ``x [B, C, H, W]`` (as the teacher sees it): ``t [B * draws]``."""

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, A]``: pi(t | x) over `actions`."""

    def loss(self, sample: TimestepSample, reward: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        """Its losses for a sample and the per-sample reward ``[B]``; ``{}`` when it does not learn."""


def means_all(spec: TimestepSpec) -> bool:
    """The one rule for "every time step there is" (of the teacher, or of a cache): None, ``""`` or
    ``"all"`` in any case and spacing."""
    return spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all"))


def parse_timesteps(spec: TimestepSpec, num_train_timesteps: int) -> list[int]:
    """The finite action set of time steps, sorted: the ``timesteps:`` key of every strategy and of the cache.

    ``spec``: None, ``""`` or ``"all"`` = all of 0..T-1 (the paper); a range ``"start:stop:step"``
    (Python's ``range``, e.g. ``"0:1000:50"``); a comma list ``"0,10,50"``; or a sequence of ints.
    Every entry must lie in 0..T-1 and appear once (:class:`ConfigError` otherwise).
    """
    if means_all(spec):
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


def check_images(x: torch.Tensor, in_chans: int | None = None) -> None:
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


def steps_text(values: Sequence[int]) -> str:
    """A time-step set for a message: the whole list, or its ends and its size when long."""
    return str(list(values)) if len(values) <= 12 else f"[{values[0]}, {values[1]}, ..., {values[-1]}] ({len(values)} steps)"
