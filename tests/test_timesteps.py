"""Time-step strategies: one interface, per-sample sampling, REINFORCE learning, entropy schedule, state."""
from __future__ import annotations

import math

import pytest
import torch

from repfusion_zoo.errors import ConfigError, InputError
from repfusion_zoo.timesteps import (
    STRATEGY_NAMES,
    FixedTimestep,
    ReinforcePolicy,
    StrategySettings,
    TimestepSample,
    UniformTimestep,
    build_strategy,
    entropy_weight_at,
    parse_timesteps,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # 2 shared cores: more threads only oversubscribe


def _images(b: int = 16, c: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_policy_sample_shapes_and_per_sample_steps_differ() -> None:
    torch.manual_seed(0)
    policy = ReinforcePolicy(in_chans=3, num_train_timesteps=1000)
    sample = policy.sample(_images(16))
    assert isinstance(sample, TimestepSample)
    assert sample.t.dtype == torch.long and sample.t.shape == (16,)
    assert sample.log_prob.shape == (16,) and sample.entropy.shape == (16,)
    assert int(sample.t.min()) >= 0 and int(sample.t.max()) < 1000
    # one t per sample, not one per batch
    assert sample.t.unique().numel() > 8
    # starts uniform: entropy log(T)
    assert torch.allclose(sample.entropy, torch.full((16,), math.log(1000)), atol=1e-4)


def test_uniform_per_sample_and_fixed_constant() -> None:
    torch.manual_seed(0)
    uni = UniformTimestep(50).sample(_images(32))
    assert uni.t.shape == (32,) and uni.t.unique().numel() > 10
    assert int(uni.t.min()) >= 0 and int(uni.t.max()) < 50 and uni.log_prob is None
    fixed = FixedTimestep(7).sample(_images(4))
    assert fixed.t.tolist() == [7, 7, 7, 7] and fixed.log_prob is None and fixed.entropy is None
    assert FixedTimestep(7).loss(fixed, torch.zeros(4), 0.5) == {}
    assert UniformTimestep(50).loss(uni, torch.zeros(32), 0.5) == {}


def test_action_subset_and_eval_argmax() -> None:
    torch.manual_seed(0)
    actions = [0, 100, 250, 999]
    policy = ReinforcePolicy(in_chans=1, timesteps=actions)
    sample = policy.sample(_images(64, c=1))
    assert set(sample.t.tolist()) <= set(actions) and len(set(sample.t.tolist())) > 1
    with torch.no_grad():
        policy.net.head[-1].bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))
    policy.eval()
    assert policy.sample(_images(8, c=1)).t.tolist() == [250] * 8


def test_entropy_schedule_values() -> None:
    assert entropy_weight_at(0.1, 0.0, None) == pytest.approx(0.1)
    assert entropy_weight_at(0.1, 0.9, None) == pytest.approx(0.1)
    assert entropy_weight_at(0.1, 0.0, 0.5) == pytest.approx(0.1)
    assert entropy_weight_at(0.1, 0.25, 0.5) == pytest.approx(0.05)
    assert entropy_weight_at(0.1, 0.5, 0.5) == pytest.approx(0.0)
    assert entropy_weight_at(0.1, 0.8, 0.5) == pytest.approx(0.0)
    policy = ReinforcePolicy(in_chans=3, timesteps=range(10), entropy_decay_until=0.5, baseline=None)
    sample = policy.sample(_images(4))
    loss = policy.loss(sample, torch.zeros(4), progress=0.25)
    # uniform start: entropy log(10); lambda_H(0.25) = 0.05
    assert float(loss["entropy"].detach()) == pytest.approx(-0.05 * math.log(10), rel=1e-5)
    assert float(policy.loss(sample, torch.zeros(4), progress=0.75)["entropy"].detach()) == 0.0


def test_policy_loss_is_reinforce_without_baseline() -> None:
    torch.manual_seed(0)
    policy = ReinforcePolicy(in_chans=3, timesteps=range(10), baseline=None)
    sample = policy.sample(_images(4))
    reward = torch.tensor([1.0, -2.0, 0.5, 3.0])
    loss = policy.loss(sample, reward, 0.0)
    assert loss["policy"].item() == pytest.approx((-(reward * sample.log_prob).mean()).item(), rel=1e-6)


def test_batch_mean_baseline_is_leave_one_out() -> None:
    policy = ReinforcePolicy(in_chans=3, timesteps=range(10), baseline="batch_mean")
    sample = policy.sample(_images(3))
    reward = torch.tensor([3.0, 0.0, 6.0])
    adv = torch.tensor([3.0 - 3.0, 0.0 - 4.5, 6.0 - 1.5])
    loss = policy.loss(sample, reward, 0.0)
    assert loss["policy"].item() == pytest.approx((-(adv * sample.log_prob).mean()).item(), rel=1e-6)


def test_ema_baseline_buffer_saved_and_resumed() -> None:
    torch.manual_seed(0)
    policy = ReinforcePolicy(in_chans=3, timesteps=range(10), baseline="ema", baseline_momentum=0.5)
    sample = policy.sample(_images(4))
    policy.loss(sample, torch.full((4,), -2.0), 0.0)  # first batch initialises to its mean
    policy.loss(sample, torch.full((4,), -1.0), 0.0)  # 0.5 * -2 + 0.5 * -1
    assert float(policy.baseline_value) == pytest.approx(-1.5)
    state = policy.state_dict()
    assert "baseline_value" in state and "baseline_initialized" in state
    resumed = ReinforcePolicy(in_chans=3, timesteps=range(10), baseline="ema", baseline_momentum=0.5)
    resumed.load_state_dict(state)
    assert float(resumed.baseline_value) == pytest.approx(-1.5) and bool(resumed.baseline_initialized)
    # the advantage uses the stored baseline: reward -1.5 everywhere gives a zero policy loss
    assert resumed.loss(sample, torch.full((4,), -1.5), 0.0)["policy"].item() == pytest.approx(0.0, abs=1e-7)


def test_policy_input_is_detached() -> None:
    x = _images(4).requires_grad_(True)
    policy = ReinforcePolicy(in_chans=3, timesteps=range(10))
    sample = policy.sample(x)
    sum(policy.loss(sample, torch.randn(4), 0.0).values()).backward()
    assert x.grad is None


@pytest.mark.parametrize("baseline", [None, "ema", "batch_mean"])
def test_policy_learns_the_rewarded_step(baseline: str | None) -> None:
    torch.manual_seed(0)
    policy = ReinforcePolicy(in_chans=1, num_train_timesteps=10, baseline=baseline, hidden=32, conv_channels=(4, 4, 4))
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    x = _images(32, c=1, size=4)
    for step in range(300):
        sample = policy.sample(x)
        reward = (sample.t == 7).float()
        loss = sum(policy.loss(sample, reward, step / 300).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    probs = policy.probs(x)
    assert probs[:, 7].mean().item() > 0.5


def test_build_strategy_and_errors() -> None:
    assert isinstance(build_strategy("reinforce", in_chans=1, num_train_timesteps=20), ReinforcePolicy)
    fixed = build_strategy("fixed", t=3, in_chans=3, num_train_timesteps=20)  # the policy's keys are ignored where unused
    assert isinstance(fixed, FixedTimestep) and fixed.t == 3
    settings = StrategySettings(strategy="reinforce", timesteps="all", entropy_decay_until=0.5, policy_baseline=None,
                                commit_entropy=0.2)
    policy = build_strategy(settings, in_chans=3, num_train_timesteps=1000, teacher_timesteps=[0, 10, 50])
    assert policy.actions.tolist() == [0, 10, 50]  # `all` = the teacher's set (a feature cache's)
    assert (policy.entropy_decay_until, policy.baseline, policy.commit_entropy) == (0.5, None, 0.2)
    assert isinstance(build_strategy("random", in_chans=3, num_train_timesteps=20), UniformTimestep)
    with pytest.raises(ConfigError, match="unknown time-step strategy"):
        build_strategy("greedy")
    with pytest.raises(ConfigError, match="lr"):
        build_strategy("fixed", t=0, lr=0.1)
    with pytest.raises(ConfigError, match="StrategySettings"):
        build_strategy(settings, t=0)
    with pytest.raises(ConfigError, match="outside"):
        ReinforcePolicy(num_train_timesteps=10, timesteps=[3, 12])
    with pytest.raises(ConfigError, match="baseline"):
        ReinforcePolicy(baseline="mean")
    with pytest.raises(ConfigError, match="outside"):
        FixedTimestep(1000, num_train_timesteps=1000)
    with pytest.raises(InputError, match="in_chans=1"):
        ReinforcePolicy(in_chans=3).sample(_images(2, c=1))
    policy = ReinforcePolicy(in_chans=3, timesteps=range(10))
    with pytest.raises(InputError, match="one reward per sample"):
        policy.loss(policy.sample(_images(4)), torch.zeros(3), 0.0)


def test_strategy_settings_name_every_strategy_and_read_as_flags() -> None:
    """One declaration: the distill recipe's keys are StrategySettings' fields; null means None."""
    from repfusion_zoo.config import build_config
    from repfusion_zoo.timesteps.build import _STRATEGIES

    assert tuple(_STRATEGIES) == STRATEGY_NAMES
    parsed = build_config(StrategySettings, {"policy_baseline": "null", "entropy_decay_until": "0.5", "t": "300"})
    assert (parsed.policy_baseline, parsed.entropy_decay_until, parsed.t) == (None, 0.5, 300)
    with pytest.raises(ConfigError, match="policy_baseline"):
        build_config(StrategySettings, {"policy_baseline": "mean"})


def test_parse_timesteps_specs_and_errors() -> None:
    assert parse_timesteps(None, 5) == [0, 1, 2, 3, 4]
    assert parse_timesteps("all", 3) == [0, 1, 2]
    assert parse_timesteps("0:1000:250", 1000) == [0, 250, 500, 750]
    assert parse_timesteps("500, 0,100", 1000) == [0, 100, 500]
    assert parse_timesteps([999, 0], 1000) == [0, 999]
    with pytest.raises(ConfigError, match="outside"):
        parse_timesteps("0,1000", 1000)
    with pytest.raises(ConfigError, match="duplicates"):
        parse_timesteps([1, 1], 1000)
    with pytest.raises(ConfigError, match="start:stop:step"):
        parse_timesteps("zero", 1000)


def test_every_strategy_uses_the_timestep_set() -> None:
    torch.manual_seed(0)
    steps = [0, 100, 500]
    for name, kwargs in (("reinforce", {}), ("random", {}), ("fixed", {"t": 100})):
        strategy = build_strategy(name, in_chans=3, num_train_timesteps=1000, timesteps="0,100,500", **kwargs)
        drawn = set(strategy.sample(_images(64)).t.tolist())
        assert drawn <= set(steps)
        if name != "fixed":
            assert len(drawn) > 1
    with pytest.raises(ConfigError, match="not in the time-step set"):
        build_strategy("fixed", t=50, num_train_timesteps=1000, timesteps="0,100,500")


@pytest.mark.parametrize("spec", [None, "", "all", "All", " ALL "])
def test_one_rule_for_every_time_step(spec):
    from repfusion_zoo.timesteps import means_all

    assert means_all(spec) and parse_timesteps(spec, 5) == [0, 1, 2, 3, 4]
    assert not means_all("0,10") and not means_all([0])
