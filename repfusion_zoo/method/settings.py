"""`RepFusionSettings`: what RepFusion distils with besides the time-step strategy (decoder g, the
distillation loss and its connector, the policy's reward), declared once; `build_repfusion` builds
from it and the distill recipe's config holds these keys as flags."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import opt
from ..losses import DISTILL_LOSSES
from .decoders import DECODER_KINDS

__all__ = ["RepFusionSettings", "REWARDS", "CONNECTORS", "DECODER_TIMESTEPS"]

#: what a learning strategy may be paid
REWARDS = ("task", "imitation", "sum")
#: how the student's feature meets the teacher's at each t
CONNECTORS = ("shared", "per_t")
#: which teacher features decoder g learns from: the sampled t's (the paper) or every t of the set
DECODER_TIMESTEPS = ("sampled", "all")


@dataclass
class RepFusionSettings:
    """Decoder g, the distillation loss and its connector, and the policy's reward."""

    reward: str = opt("task", "what the policy is paid: task (-decoder g's loss, the paper), imitation (-the student's "
                              "per-sample distillation loss, the authors' first version), sum (task + imitation_weight x imitation)",
                      choices=list(REWARDS))
    imitation_weight: float = opt(1.0, "weight of the imitation reward in reward sum")
    connector: str = opt("shared", "hint losses: one 1x1 conv for every t (the paper) or a head per t of the action set",
                         choices=list(CONNECTORS))
    loss: str = opt("hint", "distillation loss", choices=list(DISTILL_LOSSES))
    loss_kwargs: dict = opt({}, "extra kwargs of the loss (e.g. {weight: 1000} for at)")
    decoder: str | None = opt("linear", "decoder g on the teacher feature (null: none, plain feature KD without a task reward)",
                              choices=[*DECODER_KINDS, None])
    decoder_kwargs: dict = opt({}, "extra kwargs of decoder g (e.g. {hidden: 256} for mlp, the authors' width)")
    decoder_t: str = opt("sampled", "decoder g learns at the sampled t (the paper: g gets better where the policy "
                                    "already goes) or at every t of the set for the labelled images, so the task reward "
                                    "compares every t on an equal footing", choices=list(DECODER_TIMESTEPS))
