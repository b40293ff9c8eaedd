"""The method: RepFusion's objective and what is read off a run of it.

- distill.py: `RepFusion` (teacher + time-step strategy + decoder g + distillation loss -> the named
  losses of one batch), `build_repfusion`
- settings.py: `RepFusionSettings` (decoder g, loss, connector, reward: declared once), the rewards a
  learning strategy can be paid
- distill_model.py: `DistillModel` (the student and RepFusion in one module: one DDP wrapper)
- decoders.py: decoder g (linear, mlp, fcn) and its per-sample task loss (the policy's task reward)
- policy_report.py: what a time-step strategy chose, beside decoder g's reward per t
- probe.py: the feature quality of a teacher over time steps (`repfusion-zoo probe`)
"""
from __future__ import annotations

from .decoders import build_decoder, decoder_task_loss
from .distill import RepFusion, RepFusionOutput, build_repfusion
from .distill_model import DistillModel
from .policy_report import timestep_report
from .probe import linear_probe_accuracy, probe_timesteps
from .settings import CONNECTORS, REWARDS, RepFusionSettings

__all__ = [
    "RepFusion",
    "RepFusionOutput",
    "build_repfusion",
    "RepFusionSettings",
    "REWARDS",
    "CONNECTORS",
    "DistillModel",
    "build_decoder",
    "decoder_task_loss",
    "timestep_report",
    "probe_timesteps",
    "linear_probe_accuracy",
]
