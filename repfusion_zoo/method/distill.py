"""RepFusion: teacher + time-step strategy + decoder g + distillation loss -> named losses for a batch.

One training step of RepFusion (paper, Section 4 and Figure 5), for any training loop::

    rf = RepFusion(teacher, build_strategy("reinforce", in_chans=3), build_decoder("linear", 256, 10),
                   build_distill_loss("hint", student_channels=512, teacher_channels=256))
    optimizer = torch.optim.SGD([*student.parameters(), *rf.trainable_parameters()], lr=0.1)
    out = rf(rf.teacher_input(images01), labels, student.forward_features(student_input), progress)
    out.losses["total"].backward()

The student is not inside RepFusion: the caller runs it and passes its feature map. Under DDP,
wrap the student and the RepFusion object each in its own DistributedDataParallel (every trainable
parameter of RepFusion is used in every step). ``build_repfusion(teacher, student_channels=...,
num_classes=...)`` builds the parts by name, sized from the teacher.

Supervised-teacher KD (the comparison rows of Tables 4/5): a ``SupervisedTeacher`` (not
``time_conditioned``), ``FixedTimestep(0)`` and ``decoder=None``; ``teacher_input`` then
normalises with the teacher's own data config and the losses are ``distill`` and ``total`` only.

Gradients reach only where they belong (tests/test_distill.py checks each):
- the student (and the loss's connector) only from ``distill``;
- the policy only from ``policy`` + ``entropy`` (its input image is detached; the reward is detached);
- the decoder g only from ``decoder`` (it sees the detached teacher feature);
- the teacher never (run under ``torch.no_grad``; its parameters are frozen).

The teacher is held **outside the module tree**: torch registers every ``nn.Module`` assigned to
an attribute, so RepFusion keeps it in a plain tuple (``self._frozen``). It is therefore absent
from ``parameters()``, ``state_dict()`` (teacher weights are large and published elsewhere; a
RepFusion checkpoint holds only strategy, decoder and connector), from ``train()`` (it stays in
the eval mode it is put in here) and from DDP's parameter and buffer sync. ``.to()`` / ``.cuda()``
/ ``.half()`` still move it: `_apply` is forwarded to it, the one override this needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .decoders import build_decoder, decoder_task_loss
from .settings import CONNECTORS, DECODER_TIMESTEPS, REWARDS, RepFusionSettings
from ..errors import ConfigError, InputError, ShapeMismatchError
from ..losses import build_distill_loss
from ..teachers.protocol import Teacher
from ..timesteps import StrategySettings, TimestepSample, TimestepStrategy, build_strategy

__all__ = ["RepFusion", "RepFusionOutput", "build_repfusion"]


@dataclass
class RepFusionOutput:
    """What one RepFusion step returns.

    losses: named scalars. Always ``distill`` and ``total``; ``decoder`` when there is a decoder g;
        ``policy`` and ``entropy`` when the strategy learns (``total`` is their sum).
    t: ``LongTensor[B * draws]``, the time step each sample was distilled at (``draws`` per image,
        image-major: 1 but for a strategy that distils every t of its set).
    teacher_feature: ``[B * draws, Ct, ht, wt]``, the teacher's feature (no grad).
    reward: ``[B * draws]``, what a learning strategy was paid (`REWARDS`; detached; NaN for
        unlabelled samples where the task loss counts); the task reward without one; None without
        a decoder g and a learning strategy.
    policy_entropy: mean entropy of pi(t | x) over the batch (detached scalar, for logging; the
        ``entropy`` loss is -lambda_H times it and reaches 0 when lambda_H decays), or None.
    """

    losses: dict[str, torch.Tensor]
    t: torch.Tensor
    teacher_feature: torch.Tensor
    reward: torch.Tensor | None = None
    policy_entropy: torch.Tensor | None = None


def repeat_rows(value: Any, times: int) -> Any:
    """Each row of a batch tensor (or of every tensor of a dict) repeated ``times`` times in place,
    ``[B, ...] -> [B * times, ...]``; None passes."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: repeat_rows(item, times) for key, item in value.items()}
    return value.repeat_interleave(times, dim=0)


def take_rows(value: Any, rows: torch.Tensor) -> Any:
    """The batch rows ``rows`` of a tensor (or of every tensor of a dict), ``[B, ...] -> [n, ...]``; None passes."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: take_rows(item, rows) for key, item in value.items()}
    return value[rows]


def labelled_rows(labels: Any) -> torch.Tensor | None:
    """Batch positions of labelled samples for class labels ``LongTensor[B]`` with ``-1`` = unlabelled;
    None when every sample counts (all class labels >= 0, or dense / dict labels)."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or bool((labels >= 0).all()):
        return None
    return (labels >= 0).nonzero().squeeze(1)


class RepFusion(nn.Module):
    """The RepFusion distillation objective for one batch.

    Args:
        teacher: a frozen feature teacher: ``teacher.feature(images, t, *, labels, index, flip) ->
            [B, Ct, ht, wt]`` (repfusion_zoo.teachers: `DiffusionTeacher`, `CachedTeacher`, or a
            `SupervisedTeacher`, which is not ``time_conditioned``); its ``to_input(images01)``,
            where it has one, says what it takes ([-1, 1] otherwise).
        strategy: a `TimestepStrategy` (repfusion_zoo.timesteps: reinforce / fixed / random).
        decoder: decoder g on the teacher feature (repfusion_zoo.method.decoders), or None: plain feature
            KD with no reward (the supervised-teacher rows of Tables 4/5); a learned policy needs one.
        distill_loss: ``loss(student_feature, teacher_feature, action) -> scalar`` and ``per_sample(...) -> [B]``
            (repfusion_zoo.losses); ``action`` is each sample's index in the strategy's action set (a
            time-conditioned connector picks its head by it).
        reward: what a learning strategy is paid: ``"task"`` (-decoder g's per-sample task loss on the
            teacher feature: the paper), ``"imitation"`` (-the student's per-sample distillation loss
            at the sampled t: the authors' first version; every image gives one, labelled or not) or
            ``"sum"`` (task + ``imitation_weight`` x imitation).
        decoder_t: ``"sampled"``: g learns from the sampled t's feature (the paper), so it improves
            where the policy already goes and the reward favours that t; ``"all"``: from every t of
            the action set for the labelled images (``|T|`` teacher features each), the reward read
            at the sampled t, so every t is scored by an equally trained g.
    """

    def __init__(
        self,
        teacher: Teacher,
        strategy: TimestepStrategy,
        decoder: nn.Module | None,
        distill_loss: nn.Module,
        *,
        reward: str = "task",
        imitation_weight: float = 1.0,
        decoder_t: str = "sampled",
    ) -> None:
        super().__init__()
        if reward not in REWARDS:
            raise ConfigError(f"reward {reward!r} is not one of {list(REWARDS)}")
        if decoder_t not in DECODER_TIMESTEPS:
            raise ConfigError(f"decoder_t {decoder_t!r} is not one of {list(DECODER_TIMESTEPS)}")
        if strategy.learns and reward in ("task", "sum") and decoder is None:
            raise ConfigError(f"reward {reward!r} needs decoder g's task loss; give RepFusion a decoder or use reward imitation")
        if strategy.learns and not teacher.time_conditioned:
            raise ConfigError(
                "a supervised teacher ignores the time step, so a ReinforcePolicy has nothing to choose; "
                "use build_strategy('fixed', t=0) with a SupervisedTeacher."
            )
        teacher.requires_grad_(False)
        teacher.eval()
        self._frozen = (teacher,)  # outside the module tree: see the module docstring
        self.strategy = strategy
        self.decoder = decoder
        self.distill_loss = distill_loss
        self.reward = reward
        self.imitation_weight = float(imitation_weight)
        self.decoder_t = decoder_t

    # ------------------------------------------------------------------ the teacher
    @property
    def teacher(self) -> nn.Module:
        return self._frozen[0]

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> RepFusion:
        """``.to()`` / ``.cuda()`` / ``.float()`` also reach the teacher held outside the module tree."""
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def teacher_input(self, images: torch.Tensor) -> torch.Tensor:
        """Dataset images ``[B, C, H, W]`` in [0, 1] -> what the teacher takes: its ``to_input``
        (a diffusion teacher: ``x * 2 - 1``; a supervised one: its data config's normalisation), or
        [-1, 1] for a teacher without one."""
        return self.teacher.to_input(images)

    # ------------------------------------------------------------------ parameters
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of strategy, decoder and loss connector that require grad (give these to the optimiser
        beside the student's)."""
        for module in (self.strategy, self.decoder, self.distill_loss):
            if module is not None:
                yield from (p for p in module.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ the step
    def _teacher_feature(self, images: torch.Tensor, t: torch.Tensor, labels: Any,
                         index: torch.Tensor | None, flip: torch.Tensor | None) -> torch.Tensor:
        """``teacher.feature(...)``: an online teacher reads the images (and, class-conditional, the
        labels); a feature cache reads ``(index, flip, t)``."""
        with torch.no_grad():
            return self.teacher.feature(images, t, labels=labels, index=index, flip=flip).detach()

    def _decoder_loss(self, teacher_feature: torch.Tensor, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Decoder g's loss over the LABELLED samples, the task reward ``[B]`` (-its per-sample loss,
        detached; NaN where unlabelled) and the labelled rows (None = every row).

        Class labels ``-1`` mark unlabelled images (an experiment's label budget): they still get
        the distillation loss but give g no target and the task reward nothing.
        """
        rows = labelled_rows(labels)
        if rows is None:
            per_sample = decoder_task_loss(self.decoder(teacher_feature), labels)  # [B]
            return per_sample.mean(), -per_sample.detach(), None
        reward = torch.full((len(labels),), float("nan"), device=teacher_feature.device)
        if rows.numel() == 0:  # no labelled image in this batch: nothing for g to learn (the same loss names)
            return teacher_feature.new_zeros(()), reward, rows
        per_sample = decoder_task_loss(self.decoder(teacher_feature[rows]), labels[rows])  # [n]
        reward[rows] = -per_sample.detach()
        return per_sample.mean(), reward, rows

    def _decoder_loss_every_t(self, images: torch.Tensor, action: torch.Tensor, labels: Any, index: torch.Tensor | None,
                              flip: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`_decoder_loss` with g trained on every t of the action set: each labelled row's teacher
        feature at all ``A`` actions (``[n * A, ...]``), g's loss their mean, the reward ``[B]`` g's
        -loss at the row's own ``action`` (its index in the set, ``[B]``)."""
        actions = self.strategy.actions.to(images.device)
        rows = labelled_rows(labels)
        keep = torch.arange(len(images), device=images.device) if rows is None else rows
        reward = torch.full((len(images),), float("nan"), device=images.device)
        if keep.numel() == 0:
            return images.new_zeros(()), reward, rows
        n, a = keep.numel(), actions.numel()

        def pick(value: Any) -> Any:  # the kept rows, each repeated A times in place
            return repeat_rows(take_rows(value, keep), a)

        t = actions.repeat(n)  # row-major: row i's A features are rows i*A .. i*A + A - 1
        feature = self._teacher_feature(pick(images), t, pick(labels), pick(index), pick(flip))
        per_t = decoder_task_loss(self.decoder(feature), pick(labels)).view(n, a)  # [n, A]
        reward[keep] = -per_t.detach().gather(1, action[keep].unsqueeze(1)).squeeze(1)
        return per_t.mean(), reward, rows

    def _strategy_losses(self, sample: TimestepSample, reward: torch.Tensor | None, rows: torch.Tensor | None,
                         progress: float) -> dict[str, torch.Tensor]:
        """The strategy's losses from the samples that have a reward (all of them for the imitation
        reward; the labelled ones for task and sum); {} for a strategy that does not learn."""
        if not self.strategy.learns:
            return {}
        if self.reward == "imitation" or rows is None:
            return self.strategy.loss(sample, reward, float(progress))
        if rows.numel() == 0:  # the same names on every process, so they reduce together
            return dict.fromkeys(self.strategy.loss_names, reward.new_zeros(()))
        return self.strategy.loss(sample.select(rows), reward[rows], float(progress))

    def _check_decoder_input(self, teacher_feature: torch.Tensor) -> None:
        expected = getattr(self.decoder, "in_channels", None)
        if expected is not None and teacher_feature.shape[1] != expected:
            raise ShapeMismatchError(
                f"decoder g was built for {expected} input channels but the teacher feature is "
                f"{tuple(teacher_feature.shape)}; build it with build_decoder(kind, teacher.feature_channels, num_classes)."
            )

    def forward(
        self,
        teacher_images: torch.Tensor,
        labels: Any,
        student_feature: torch.Tensor,
        progress: float = 0.0,
        *,
        index: torch.Tensor | None = None,
        flip: torch.Tensor | None = None,
    ) -> RepFusionOutput:
        """One RepFusion step.

        Args:
            teacher_images: ``[B, C, H, W]`` as the teacher expects them: [-1, 1] for a diffusion
                teacher, normalised for a supervised one (``self.teacher_input(images01)`` builds
                either). The time-step policy sees the same (detached) tensor.
            labels: what decoder g is trained on: ``LongTensor[B]`` classes (``-1`` = unlabelled:
                distilled, but no target for g and no reward), ``LongTensor[B, H, W]`` segmentation
                (255 = ignore), or a dict with ``heatmaps``; may be None without a decoder.
            student_feature: the student's feature map ``[B, Cs, hs, ws]`` (with grad).
            progress: fraction of training done, in [0, 1] (drives the lambda_H decay).
            index, flip: ``LongTensor[B]`` dataset indices and ``BoolTensor[B]`` mirrored-or-not of
                the batch's items: what a teacher-feature cache reads (an online teacher ignores them).
        """
        if not 0.0 <= float(progress) <= 1.0:
            raise InputError(f"progress={progress} must be the fraction of training done, in [0, 1].")
        if teacher_images.shape[0] != student_feature.shape[0]:
            raise InputError(
                f"teacher images {tuple(teacher_images.shape)} and student feature {tuple(student_feature.shape)} "
                "have different batch sizes; pass the same batch to both."
            )
        sample = self.strategy.sample(teacher_images.detach())
        draws = sample.t.numel() // teacher_images.shape[0]
        if draws > 1:  # each image at several t (every t of the set): its feature, labels and cache keys repeat
            teacher_images, student_feature, labels, index, flip = (
                repeat_rows(v, draws) for v in (teacher_images, student_feature, labels, index, flip))
        teacher_feature = self._teacher_feature(teacher_images, sample.t, labels, index, flip)
        action = torch.searchsorted(self.strategy.actions.to(sample.t.device), sample.t)  # each t's place in the set
        losses: dict[str, torch.Tensor] = {}
        task_reward, rows = None, None
        if self.decoder is not None:
            if labels is None:
                raise InputError("RepFusion has a decoder g, so it needs labels for its task loss; got labels=None.")
            self._check_decoder_input(teacher_feature)
            if self.decoder_t == "all":
                losses["decoder"], task_reward, rows = self._decoder_loss_every_t(
                    teacher_images, action, labels, index, flip)
            else:
                losses["decoder"], task_reward, rows = self._decoder_loss(teacher_feature, labels)
        if self.reward == "task" or not self.strategy.learns:
            distill, reward = self.distill_loss(student_feature, teacher_feature, action), task_reward
        else:
            per_sample = self.distill_loss.per_sample(student_feature, teacher_feature, action)
            distill, imitation = per_sample.mean(), -per_sample.detach()
            reward = imitation if self.reward == "imitation" else task_reward + self.imitation_weight * imitation
        losses.update(self._strategy_losses(sample, reward, rows, progress))
        losses["distill"] = distill
        losses["total"] = sum(losses.values())
        entropy = None if sample.entropy is None else sample.entropy.detach().mean()
        return RepFusionOutput(
            losses=losses, t=sample.t, teacher_feature=teacher_feature, reward=reward, policy_entropy=entropy
        )

    def extra_repr(self) -> str:
        return f"(teacher): {type(self.teacher).__name__} (frozen, not in state_dict)"


def build_repfusion(
    teacher: Teacher,
    *,
    student_channels: int,
    num_classes: int | None,
    strategy: StrategySettings | str = "reinforce",
    settings: RepFusionSettings | None = None,
) -> RepFusion:
    """A :class:`RepFusion` from the time-step `StrategySettings` (or a strategy name) and the
    `RepFusionSettings` (decoder g, loss, connector, reward; default: the paper's), sized from the teacher.

    Reads ``teacher.feature_channels`` (decoder and loss input), ``teacher.in_channels`` (policy
    input), ``teacher.num_train_timesteps`` (the action range) and, for a feature cache,
    ``teacher.timesteps`` (what ``timesteps: all`` means). ``decoder=None`` (or
    ``num_classes=None``) gives plain feature KD without a task reward. ``connector``:
    ``"shared"`` (one 1x1 conv, the paper) or ``"per_t"`` (a head per time step of the strategy's
    action set); ``reward`` / ``imitation_weight``: see `RepFusion`.
    """
    settings = settings or RepFusionSettings()
    teacher_channels = int(teacher.feature_channels)
    if settings.connector not in CONNECTORS:
        raise ConfigError(f"connector {settings.connector!r} is not one of {list(CONNECTORS)}")
    g = None
    if settings.decoder is not None and num_classes is not None:
        g = build_decoder(settings.decoder, teacher_channels, num_classes, **settings.decoder_kwargs)
    chooser = build_strategy(strategy, in_chans=int(teacher.in_channels), num_train_timesteps=int(teacher.num_train_timesteps),
                             teacher_timesteps=teacher.timesteps)
    heads = len(chooser.actions) if settings.connector == "per_t" else 1
    loss = build_distill_loss(settings.loss, student_channels, teacher_channels, num_actions=heads, **settings.loss_kwargs)
    return RepFusion(teacher, chooser, g, loss, reward=settings.reward, imitation_weight=settings.imitation_weight,
                     decoder_t=settings.decoder_t)
