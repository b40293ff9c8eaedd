"""Time-step selection variants: the policy's reward (task, imitation, sum), a connector head per t, every t at
once (all_t), and a policy that commits to its per-image argmax once it has converged; online and from the
feature cache, through the distill recipe."""
from __future__ import annotations

import pytest
import torch

from repfusion_zoo.method.distill import RepFusion, build_repfusion
from repfusion_zoo.method.settings import RepFusionSettings
from repfusion_zoo.errors import ConfigError
from repfusion_zoo.losses import HintLoss, TimeConditionedConnector, build_distill_loss
from repfusion_zoo.timesteps import EveryTimestep, ReinforcePolicy, StrategySettings, build_strategy
from _recipes_common import tiny_teacher  # noqa: F401  (a fixture)
from test_distill import _batch, _student, _teacher

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = [0, 100, 500, 999]


def _rf(strategy: str = "reinforce", *, connector: str = "shared", reward: str = "task", loss: str = "hint",
        decoder_t: str = "sampled", **strategy_keys) -> RepFusion:
    torch.manual_seed(0)
    settings = StrategySettings(strategy=strategy, timesteps=",".join(map(str, STEPS)), **strategy_keys)
    method = RepFusionSettings(loss=loss, connector=connector, reward=reward, imitation_weight=0.5, decoder_t=decoder_t)
    return build_repfusion(_teacher(), student_channels=24, num_classes=10, strategy=settings, settings=method)


@pytest.mark.parametrize("loss", ["hint", "hint_pooled", "at"])
def test_per_sample_losses_average_to_the_loss(loss):
    module = build_distill_loss(loss, 24, 32)
    student, teacher = torch.randn(5, 24, 4, 4), torch.randn(5, 32, 8, 8)
    per = module.per_sample(student, teacher)
    assert per.shape == (5,)
    torch.testing.assert_close(per.mean(), module(student, teacher), rtol=1e-5, atol=1e-6)


def test_rkd_has_no_per_sample_loss_and_no_connector_heads():
    with pytest.raises(ConfigError, match="relates the samples"):
        build_distill_loss("rkd", 24, 32).per_sample(torch.randn(4, 24), torch.randn(4, 32))
    with pytest.raises(ConfigError, match="connector"):
        build_distill_loss("at", 24, 32, num_actions=4)


def test_a_connector_head_per_t_is_picked_by_each_samples_action():
    loss = HintLoss(24, 32, num_actions=4)
    assert isinstance(loss.connector, TimeConditionedConnector) and loss.time_conditioned
    student, teacher = torch.randn(6, 24, 8, 8, requires_grad=True), torch.randn(6, 32, 8, 8)
    action = torch.tensor([0, 0, 2, 2, 2, 3])
    loss(student, teacher, action).backward()
    used = loss.connector.weight.grad.flatten(1).abs().sum(dim=1) > 0
    assert used.tolist() == [True, False, True, True]  # head 1 saw no sample
    # each head is a 1x1 conv: sample i through head action[i]
    conv = torch.nn.Conv2d(24, 32, 1)
    with torch.no_grad():
        conv.weight.copy_(loss.connector.weight[2][:, :, None, None])
        conv.bias.copy_(loss.connector.bias[2])
    torch.testing.assert_close(loss.connector(student[2:3], action[2:3]), conv(student[2:3]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reward", ["task", "imitation", "sum"])
def test_the_policy_is_paid_the_chosen_reward(reward):
    rf = _rf(reward=reward)
    images, labels = _batch()
    labels[:2] = -1  # two unlabelled images: no task reward for them
    student = _student()(images)
    out = rf(rf.teacher_input(images), labels, student, progress=0.0)
    action = torch.searchsorted(rf.strategy.actions, out.t)
    imitation = -rf.distill_loss.per_sample(student, out.teacher_feature, action).detach()
    task = out.reward if reward == "task" else None
    if reward == "imitation":
        torch.testing.assert_close(out.reward, imitation)  # every image is paid, labelled or not
    elif reward == "sum":
        assert torch.isnan(out.reward[:2]).all()
        task = out.reward[2:] - 0.5 * imitation[2:]
        assert bool((task <= 0).all())  # what is left is -g's cross-entropy
    else:
        assert torch.isnan(task[:2]).all() and bool((task[2:] <= 0).all())
    out.losses["total"].backward()
    assert rf.strategy.net.head[-1].weight.grad.abs().sum() > 0


def test_decoder_g_can_learn_at_every_t_and_pay_the_sampled_ones_loss():
    """decoder_t all: g's loss is its mean over every t of the set for the labelled images; each one's reward
    is g's -loss at the t it was sampled at; unlabelled images get none."""
    from repfusion_zoo.method.decoders import decoder_task_loss

    rf = _rf(decoder_t="all")
    images, labels = _batch()
    labels[:2] = -1
    out = rf(rf.teacher_input(images), labels, _student()(images), progress=0.0)
    inputs = rf.teacher_input(images)[2:]
    per_t = torch.stack([decoder_task_loss(rf.decoder(rf.teacher.feature(inputs, torch.full((len(inputs),), t))), labels[2:])
                         for t in STEPS], dim=1)  # [n, |T|]
    torch.testing.assert_close(out.losses["decoder"], per_t.mean(), rtol=1e-5, atol=1e-6)
    action = torch.searchsorted(rf.strategy.actions, out.t)
    torch.testing.assert_close(out.reward[2:], -per_t.gather(1, action[2:, None]).squeeze(1), rtol=1e-5, atol=1e-6)
    assert torch.isnan(out.reward[:2]).all()
    with pytest.raises(ConfigError, match="decoder_t"):
        _rf(decoder_t="some")


def test_a_task_or_sum_reward_needs_decoder_g():
    with pytest.raises(ConfigError, match="decoder"):
        RepFusion(_teacher(), ReinforcePolicy(3), None, build_distill_loss("hint", 24, 32))
    rf = RepFusion(_teacher(), ReinforcePolicy(3, timesteps=STEPS), None, build_distill_loss("hint", 24, 32), reward="imitation")
    images, labels = _batch()
    out = rf(rf.teacher_input(images), labels, _student()(images), 0.0)
    assert set(out.losses) == {"policy", "entropy", "distill", "total"}
    with pytest.raises(ConfigError, match="reward"):
        RepFusion(_teacher(), ReinforcePolicy(3), None, build_distill_loss("hint", 24, 32), reward="cheer")


def test_all_t_distils_every_t_of_the_set_and_averages_them():
    rf = _rf("all_t", connector="per_t")
    assert isinstance(rf.strategy, EveryTimestep) and rf.strategy.draws == 4 and rf.distill_loss.time_conditioned
    images, labels = _batch(3)
    student = _student()(images)
    out = rf(rf.teacher_input(images), labels, student, 0.0)
    assert out.t.tolist() == STEPS * 3 and out.teacher_feature.shape[0] == 12
    expected = []
    for k, t in enumerate(STEPS):  # the same loss, one t at a time, through that t's head
        feature = rf.teacher.feature(rf.teacher_input(images), torch.full((3,), t))
        expected.append(rf.distill_loss(student, feature, torch.full((3,), k)))
    torch.testing.assert_close(out.losses["distill"], torch.stack(expected).mean(), rtol=1e-5, atol=1e-6)
    assert set(out.losses) == {"decoder", "distill", "total"}


def test_the_policy_commits_to_its_argmax_once_its_entropy_is_low():
    policy = ReinforcePolicy(3, timesteps=STEPS, commit_entropy=1.0)
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        policy.net.head[-1].bias.copy_(torch.tensor([0.0, 6.0, 0.0, 0.0]))  # nearly all mass on t = 100
    sample = policy.sample(x)
    assert not bool(policy.committed)
    losses = policy.loss(sample, torch.randn(8), 0.0)
    assert bool(policy.committed) and float(losses["policy"].detach()) == 0.0 and float(losses["entropy"].detach()) == 0.0
    assert set(policy.sample(x).t.tolist()) == {100}  # training, yet the argmax per image from now on
    restored = ReinforcePolicy(3, timesteps=STEPS, commit_entropy=1.0)
    restored.load_state_dict(policy.state_dict())
    assert bool(restored.committed)  # a resumed run stays committed
    never = ReinforcePolicy(3, timesteps=STEPS)  # commit_entropy 0: it samples to the end
    never.loss(never.sample(x), torch.randn(8), 0.0)
    assert not bool(never.committed)


@pytest.mark.parametrize("variant", [
    {"strategy": "all_t", "connector": "per_t"},
    {"strategy": "reinforce", "reward": "imitation", "connector": "per_t", "commit_entropy": 0.5},
    {"strategy": "reinforce", "reward": "sum", "imitation_weight": 2.0, "decoder_t": "all"},
])
def test_the_variants_run_through_the_distill_recipe_online_and_from_the_cache(variant, tmp_path, tiny_teacher):
    from _data_fixtures import write_image_folder
    from _recipes_common import tiny_flags

    from repfusion_zoo.pipelines import cache_features, distill

    data = write_image_folder(tmp_path / "data", {"a": 6, "b": 6}, size=8)
    cache_features.main(["--teacher", str(tiny_teacher), "--dataset", str(data), "--image_size", "8",
                         "--timesteps", "0,10,500", "--output_dir", str(tmp_path / "cache"), "--dtype", "float32"])
    for run, extra in (("online", {}), ("cached", {"teacher_cache": str(tmp_path / "cache")})):
        result = distill.distill(distill.load_distill_config(tiny_flags(
            tmp_path / run, dataset=str(data), teacher=str(tiny_teacher), timesteps="0,10,500", max_train_steps=3,
            train_batch_size=4, augment=False, **variant, **extra)))
        assert (tmp_path / run / "backbone" / "model.safetensors").is_file()
        hist = result["epochs"][-1]["hist"]["t"]
        draws = 3 if variant["strategy"] == "all_t" else 1
        assert sum(hist) == 3 * 4 * draws and {t for t, n in enumerate(hist) if n} <= {0, 10, 500}

