"""RepFusion: named losses, gradient isolation, checkpoint contents, supervised-teacher KD, a digits run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn

from repfusion_zoo.method.decoders import build_decoder
from repfusion_zoo.method.distill import RepFusion, RepFusionOutput
from repfusion_zoo.errors import ConfigError, InputError
from repfusion_zoo.losses import build_distill_loss
from repfusion_zoo.teachers import DiffusionTeacher
from repfusion_zoo.timesteps import FixedTimestep, ReinforcePolicy, StrategySettings, build_strategy


pytestmark = pytest.mark.usefixtures("one_thread")  # 2 shared cores: more threads only oversubscribe


def _teacher(in_channels: int = 3, seed: int = 0) -> DiffusionTeacher:
    """A random-initialised tiny DDPM UNet: mid-block feature [B, 32, H/2, W/2]."""
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=in_channels,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    return DiffusionTeacher(unet)


def _student(in_channels: int = 3, out_channels: int = 24) -> nn.Module:
    """A tiny conv student: [B, C, 16, 16] -> [B, out_channels, 4, 4] (smaller than the teacher's 8x8 map)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, out_channels, 3, stride=2, padding=1),
    )


def _repfusion(strategy: str = "reinforce", loss: str = "hint", decoder: str | None = "linear") -> RepFusion:
    teacher = _teacher()
    return RepFusion(
        teacher,
        build_strategy(strategy, in_chans=3, num_train_timesteps=teacher.num_train_timesteps),
        build_decoder(decoder, 32, 10) if decoder else None,
        build_distill_loss(loss, 24, 32),
    )


def _batch(b: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 16, 16, generator=gen), torch.randint(0, 10, (b,), generator=gen)


def test_forward_returns_named_losses_and_per_sample_steps() -> None:
    rf = _repfusion()
    images, labels = _batch()
    out = rf(rf.teacher_input(images), labels, _student()(images), progress=0.1)
    assert isinstance(out, RepFusionOutput)
    assert set(out.losses) == {"distill", "decoder", "policy", "entropy", "total"}
    parts = sum(v.detach() for k, v in out.losses.items() if k != "total")
    assert torch.allclose(out.losses["total"].detach(), parts)
    assert out.t.shape == (6,) and out.t.dtype == torch.long and out.t.unique().numel() > 1
    assert out.teacher_feature.shape == (6, 32, 8, 8) and not out.teacher_feature.requires_grad
    assert out.reward.shape == (6,) and bool((out.reward <= 0).all())
    assert out.policy_entropy.item() == pytest.approx(-out.losses["entropy"].item() / 0.1, rel=1e-5)


@pytest.mark.parametrize("loss", ["hint", "hint_pooled", "at", "rkd"])
def test_gradients_reach_only_where_they_belong(loss: str) -> None:
    rf = _repfusion(loss=loss)
    with torch.no_grad():  # off the uniform start, where the entropy's gradient is exactly 0
        rf.strategy.net.head[-1].weight.normal_(0, 0.1)
    student = _student()
    images, labels = _batch()
    out = rf(rf.teacher_input(images), labels, student(images), progress=0.0)
    groups = {
        "student": list(student.parameters()),
        "policy": list(rf.strategy.parameters()),
        "decoder": list(rf.decoder.parameters()),
        "connector": list(rf.distill_loss.parameters()),
    }
    allowed = {
        "distill": {"student", "connector"},
        "decoder": {"decoder"},
        "policy": {"policy"},
        "entropy": {"policy"},
    }
    for name, reaches in allowed.items():
        for group, params in groups.items():
            if not params:  # at / rkd have no connector
                continue
            grads = torch.autograd.grad(out.losses[name], params, allow_unused=True, retain_graph=True)
            touched = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
            if group in reaches:
                assert touched, f"{name} loss should reach the {group}"
            elif group not in reaches:
                assert all(g is None for g in grads), f"{name} loss must not reach the {group}"
    out.losses["total"].backward()
    assert all(p.grad is None and not p.requires_grad for p in rf.teacher.parameters())


def test_teacher_out_of_state_dict_and_parameters() -> None:
    rf = _repfusion()
    state = rf.state_dict()
    assert state and not any("unet" in k or k.startswith("teacher") for k in state)
    assert any(k.startswith("strategy.") for k in state) and "strategy.baseline_value" in state
    assert any(k.startswith("decoder.") for k in state) and any(k.startswith("distill_loss.connector") for k in state)
    trainable = {id(p) for p in rf.trainable_parameters()}
    assert trainable == {id(p) for p in rf.parameters()}
    assert not trainable & {id(p) for p in rf.teacher.parameters()}
    # resume: a fresh RepFusion takes the state strictly and behaves the same
    images, _ = _batch()
    resumed = _repfusion()
    resumed.load_state_dict(state, strict=True)
    x = rf.teacher_input(images)
    assert torch.allclose(resumed.strategy.probs(x), rf.strategy.probs(x))


def test_to_and_train_reach_the_teacher() -> None:
    rf = _repfusion().double()
    assert all(p.dtype == torch.float64 for p in rf.teacher.parameters())
    rf.train()
    assert rf.strategy.training and not rf.teacher.training


def test_fixed_strategy_and_segmentation_labels() -> None:
    teacher = _teacher()
    rf = RepFusion(teacher, FixedTimestep(5), build_decoder("fcn", 32, 19, channels=8), build_distill_loss("at", 24, 32))
    images, _ = _batch(4)
    labels = torch.randint(0, 19, (4, 16, 16))
    labels[:, :2] = 255
    out = rf(rf.teacher_input(images), labels, _student()(images), progress=0.5)
    assert set(out.losses) == {"distill", "decoder", "total"} and out.policy_entropy is None
    assert out.t.tolist() == [5, 5, 5, 5]
    assert torch.isfinite(out.losses["total"])


def test_policy_with_fcn_decoder_on_dense_labels() -> None:
    teacher = _teacher()
    rf = RepFusion(teacher, ReinforcePolicy(3, timesteps=range(0, 1000, 100)), build_decoder("fcn", 32, 19, channels=8), build_distill_loss("hint", 24, 32))
    images, _ = _batch(4)
    out = rf(rf.teacher_input(images), torch.randint(0, 19, (4, 16, 16)), _student()(images), progress=0.0)
    out.losses["total"].backward()
    assert rf.decoder.classifier.weight.grad is not None and rf.strategy.net.head[-1].weight.grad is not None


def test_bad_configuration_and_input() -> None:
    teacher = _teacher()
    with pytest.raises(ConfigError, match="decoder"):
        RepFusion(teacher, ReinforcePolicy(3), None, build_distill_loss("hint", 24, 32))
    rf = _repfusion()
    images, labels = _batch()
    with pytest.raises(InputError, match="progress"):
        rf(rf.teacher_input(images), labels, _student()(images), progress=1.5)
    with pytest.raises(InputError, match="labels"):
        rf(rf.teacher_input(images), None, _student()(images), progress=0.0)
    with pytest.raises(InputError, match=r"\(6, 3, 16, 16\).*\(5, 24, 4, 4\)"):
        rf(rf.teacher_input(images), labels, _student()(images[:5]), progress=0.0)
    with pytest.raises(InputError, match="0..255"):  # the teacher refuses unconverted pixels
        rf(images * 255, labels, _student()(images), progress=0.0)


def test_supervised_teacher_kd_is_the_distill_loss_alone() -> None:
    timm = pytest.importorskip("timm")
    from repfusion_zoo.teachers import SupervisedTeacher

    torch.manual_seed(0)
    teacher = SupervisedTeacher(timm.create_model("test_resnet", num_classes=0))
    with pytest.raises(ConfigError, match="fixed"):
        RepFusion(teacher, ReinforcePolicy(3), build_decoder("linear", 96, 10), build_distill_loss("hint", 24, 96))
    rf = RepFusion(teacher, build_strategy("fixed", t=0, num_train_timesteps=1), None, build_distill_loss("hint_pooled", 24, 96))
    images, _ = _batch(4)
    normalised = rf.teacher_input(images)
    assert torch.allclose(normalised, (images - 0.5) / 0.5)  # the teacher's pretrained_cfg mean/std
    out = rf(normalised, None, _student()(images), progress=0.0)
    assert set(out.losses) == {"distill", "total"} and out.reward is None
    assert torch.equal(out.teacher_feature, teacher(normalised))


def test_digits_30_steps_lower_the_distillation_loss() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.images[:256], dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(digits.target[:256])
    teacher = _teacher(in_channels=1)
    torch.manual_seed(0)
    student = nn.Sequential(_student(in_channels=1, out_channels=32), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))
    rf = RepFusion(
        teacher,
        build_strategy("reinforce", in_chans=1, num_train_timesteps=teacher.num_train_timesteps),
        build_decoder("linear", 32, 10),
        build_distill_loss("hint", 32, 32),
    )
    opt = torch.optim.SGD([*student.parameters(), *rf.trainable_parameters()], lr=0.1, momentum=0.9)
    history = []
    for step in range(30):
        idx = torch.randint(0, len(x), (32,))
        images, labels = x[idx], y[idx]
        out = rf(rf.teacher_input(images), labels, student((images - 0.5) / 0.5), progress=step / 30)
        opt.zero_grad(set_to_none=True)
        out.losses["total"].backward()
        opt.step()
        history.append(out.losses["distill"].item())
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < 0.8 * first, history


def test_class_conditional_teacher_gets_the_labels_through_its_map() -> None:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=5,
    )
    teacher = DiffusionTeacher(unet, class_map={0: 4, 1: 2})  # dataset label -> model class id
    rf = RepFusion(teacher, FixedTimestep(3), build_decoder("linear", 16, 2), build_distill_loss("hint", 24, 16))
    images = torch.rand(2, 3, 8, 8)
    labels = torch.tensor([0, 1])
    out = rf(rf.teacher_input(images), labels, torch.randn(2, 24, 2, 2), progress=0.0)
    t = torch.full((2,), 3)
    assert torch.equal(out.teacher_feature, teacher(images * 2 - 1, t, class_labels=labels))
    assert not torch.equal(out.teacher_feature, teacher(images * 2 - 1, t, class_labels=labels.flip(0)))


def test_build_repfusion_sizes_from_the_teacher() -> None:
    from repfusion_zoo.method.distill import build_repfusion

    rf = build_repfusion(_teacher(), student_channels=24, num_classes=10, strategy=StrategySettings(strategy="reinforce", timesteps="0:1000:50"))
    assert isinstance(rf.strategy, ReinforcePolicy) and rf.strategy.num_actions == 20
    assert rf.decoder.in_channels == 32 and rf.distill_loss.connector.out_channels == 32
    images, labels = _batch(2)
    assert torch.isfinite(rf(rf.teacher_input(images), labels, _student()(images), 0.0).losses["total"])
    kd = build_repfusion(_teacher(), student_channels=24, num_classes=None, strategy=StrategySettings(strategy="fixed", t=0))
    assert kd.decoder is None


def test_decoder_built_for_other_channels_is_named() -> None:
    from repfusion_zoo.errors import ShapeMismatchError

    rf = RepFusion(_teacher(), FixedTimestep(0), build_decoder("linear", 64, 10), build_distill_loss("hint", 24, 32))
    images, labels = _batch(2)
    with pytest.raises(ShapeMismatchError, match=r"64 input channels.*\(2, 32, 8, 8\)"):
        rf(rf.teacher_input(images), labels, _student()(images), 0.0)
