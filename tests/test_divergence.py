"""A run that diverges stops with `TrainingDivergedError` (a message that says what went non-finite and
what to change), never with torch's bare RuntimeError, and its last checkpoint stays the one to resume."""
from __future__ import annotations

import pytest
import torch

from repfusion_zoo.errors import TrainingDivergedError
from repfusion_zoo.timesteps import ReinforcePolicy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_policy_with_nan_logits_says_it_diverged() -> None:
    policy = ReinforcePolicy(in_chans=3, timesteps="0,10,50")
    with torch.no_grad():
        policy.net.head[-1].bias.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="time-step policy.*max_grad_norm"):
        policy.sample(torch.rand(4, 3, 8, 8))


def test_the_loop_stops_at_its_first_log_after_a_loss_turns_non_finite(tmp_path) -> None:
    from repfusion_zoo.training import LoopSettings, Trainer
    from repfusion_zoo.training.step import StepOutput

    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = LoopSettings(output_dir=str(tmp_path), train_batch_size=2, num_train_epochs=3, log_every=2,
                            checkpointing_steps=2)
    trainer = Trainer(settings, "diverging")
    data = [{"x": torch.ones(4)} for _ in range(4)]
    trainer.prepare(model, optimizer, trainer.train_loader(data),
                    lambda o, s, t: torch.optim.lr_scheduler.LambdaLR(o, lambda _: 1.0))

    def step(model, batch, progress):  # finite for 2 optimiser steps, then infinite
        loss = model(batch["x"]).mean() * (float("inf") if trainer.state.step >= 2 else 1.0)
        return StepOutput(loss=loss, losses={"total": loss.detach()})

    with pytest.raises(TrainingDivergedError, match=r"by step 4: \{'total': -?(inf|nan)\}.*learning_rate"):
        trainer.fit(step)
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "checkpoint-4").exists()
