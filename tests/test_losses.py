"""Distillation losses: hand-computed small cases, the interpolation direction, shape errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from repfusion_zoo.errors import ConfigError, ShapeMismatchError
from repfusion_zoo.losses import (
    AttentionTransferLoss,
    HintLoss,
    RKDLoss,
    attention_map,
    attention_transfer_loss,
    build_distill_loss,
    hint_loss,
    rkd_angle_loss,
    rkd_distance_loss,
)


def _map(values: list[list[float]]) -> torch.Tensor:
    """A one-sample, one-channel map [1, 1, h, w]."""
    return torch.tensor(values, dtype=torch.float32)[None, None]


# ---------------------------------------------------------------- hint
def test_hint_loss_by_hand() -> None:
    student = _map([[1.0, 2.0], [3.0, 4.0]])
    assert float(hint_loss(student, torch.zeros_like(student))) == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_student_is_resized_to_the_teacher() -> None:
    # student 1x1 of value 1, teacher 2x2 [[0, 2], [0, 2]]: upsampling the student gives 1 everywhere,
    # MSE = 1; shrinking the teacher instead would give its mean 1 and MSE 0.
    student, teacher = _map([[1.0]]), _map([[0.0, 2.0], [0.0, 2.0]])
    assert float(hint_loss(student, teacher)) == pytest.approx(1.0)
    # a 2x2 student against a 4x4 teacher: equals the loss on the bilinearly upsampled student
    s = torch.arange(4.0).view(1, 1, 2, 2)
    t = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    up = F.interpolate(s, size=(4, 4), mode="bilinear", align_corners=False)
    assert float(hint_loss(s, t)) == pytest.approx(float(F.mse_loss(up, t)))


def test_hint_module_connector_by_hand() -> None:
    loss = HintLoss(student_channels=1, teacher_channels=2)
    with torch.no_grad():
        loss.connector.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        loss.connector.bias.zero_()
    student = torch.ones(1, 1, 1, 1)  # -> connector [2, -1], upsampled to 2x2
    teacher = torch.zeros(1, 2, 2, 2)
    assert loss(student, teacher).item() == pytest.approx((4 * 4 + 4 * 1) / 8)


def test_hint_pooled_by_hand() -> None:
    loss = HintLoss(student_channels=1, teacher_channels=1, pooled=True)
    with torch.no_grad():
        loss.connector.weight.fill_(1.0)
        loss.connector.bias.zero_()
    student = _map([[1.0, 3.0], [5.0, 7.0]])  # pooled: 4
    teacher = torch.full((1, 1, 3, 3), 1.0)  # pooled: 1 (sizes need not match)
    assert loss(student, teacher).item() == pytest.approx(9.0)
    assert loss(torch.tensor([[4.0]]), torch.tensor([[1.0]])).item() == pytest.approx(9.0)  # vectors too


def test_hint_gradient_reaches_student_and_connector_only() -> None:
    loss = build_distill_loss("hint", 4, 8)
    student = torch.randn(2, 4, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 8, 2, 2, requires_grad=True)
    loss(student, teacher).backward()
    assert student.grad is not None and loss.connector.weight.grad is not None


# ---------------------------------------------------------------- attention transfer
def test_attention_map_by_hand() -> None:
    f = torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]])  # [1, 2, 1, 2]: mean of squares [1, 2]
    assert torch.allclose(attention_map(f), torch.tensor([[1.0, 2.0]]) / math.sqrt(5))


def test_attention_transfer_by_hand_and_channel_agnostic() -> None:
    s = torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]])  # attention [1, 2] / sqrt(5)
    t = torch.tensor([[[[2.0, 1.0]]]])  # one channel: [4, 1] / sqrt(17)
    a = [1 / math.sqrt(5), 2 / math.sqrt(5)]
    b = [4 / math.sqrt(17), 1 / math.sqrt(17)]
    expected = ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / 2
    assert float(attention_transfer_loss(s, t)) == pytest.approx(expected, rel=1e-5)
    assert float(AttentionTransferLoss()(s, t)) == pytest.approx(1000 * expected, rel=1e-5)


def test_attention_transfer_resizes_student_attention() -> None:
    # a 1x1 student has a flat attention map; against a flat 2x2 teacher the loss is 0
    assert float(attention_transfer_loss(torch.full((1, 3, 1, 1), 2.0), torch.ones(1, 5, 2, 2))) == pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------- RKD
def test_rkd_distance_by_hand() -> None:
    student = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # distances 3, 4, 5 (mean 4)
    assert float(rkd_distance_loss(student, 2 * student)) == pytest.approx(0.0, abs=1e-6)  # scale-free
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # distances 1, 1, sqrt2
    mean_t = (2 + math.sqrt(2)) / 3
    s_d = [3 / 4, 4 / 4, 5 / 4]  # pairs (0,1), (0,2), (1,2)
    t_d = [1 / mean_t, 1 / mean_t, math.sqrt(2) / mean_t]

    def huber(d: float) -> float:
        return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5

    expected = 2 * sum(huber(a - b) for a, b in zip(s_d, t_d)) / 9  # both orders; diagonal is 0
    assert float(rkd_distance_loss(student, teacher)) == pytest.approx(expected, rel=1e-5)


def test_rkd_angle_by_hand() -> None:
    # right angle at point 0 vs three collinear points; the cosines differ in 6 of the 27 entries:
    # 2 x (0 vs 1), 2 x (1/sqrt2 vs -1), 2 x (1/sqrt2 vs 1) -> smooth-L1 sum 2 * 1.75 = 3.5
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert float(rkd_angle_loss(student, teacher)) == pytest.approx(3.5 / 27, rel=1e-5)
    assert float(rkd_angle_loss(student, 5 * student + 1)) == pytest.approx(0.0, abs=1e-6)


def test_rkd_module_pools_maps_and_weights() -> None:
    s = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    t = torch.randn(4, 7, 4, 4, generator=torch.Generator().manual_seed(1))
    expected = 25 * rkd_distance_loss(s.mean((2, 3)), t.mean((2, 3))) + 50 * rkd_angle_loss(s.mean((2, 3)), t.mean((2, 3)))
    assert float(RKDLoss()(s, t)) == pytest.approx(float(expected), rel=1e-5)
    assert float(RKDLoss()(s[:1], t[:1])) == 0.0  # no pairs in a batch of one


# ---------------------------------------------------------------- errors and the builder
def test_shape_mismatch_errors_name_both_shapes() -> None:
    with pytest.raises(ShapeMismatchError, match=r"\(2, 8\).*\(2, 16, 4, 4\)"):
        build_distill_loss("hint", 8, 16)(torch.randn(2, 8), torch.randn(2, 16, 4, 4))
    with pytest.raises(ShapeMismatchError, match=r"\(3, 8, 4, 4\).*\(2, 16, 4, 4\)"):
        build_distill_loss("hint", 8, 16)(torch.randn(3, 8, 4, 4), torch.randn(2, 16, 4, 4))
    with pytest.raises(ShapeMismatchError, match=r"\(2, 5, 4, 4\).*\(2, 16, 4, 4\)"):
        build_distill_loss("hint", 8, 16)(torch.randn(2, 5, 4, 4), torch.randn(2, 16, 4, 4))
    with pytest.raises(ShapeMismatchError, match=r"\(2, 8, 4, 4\).*\(2, 16, 4, 4\).*connector"):
        hint_loss(torch.randn(2, 8, 4, 4), torch.randn(2, 16, 4, 4))
    with pytest.raises(ShapeMismatchError, match=r"\(2, 8\).*\(2, 16, 4, 4\)"):
        build_distill_loss("at", 8, 16)(torch.randn(2, 8), torch.randn(2, 16, 4, 4))
    with pytest.raises(ShapeMismatchError, match=r"\(4, 8\).*\(2, 16\)"):
        build_distill_loss("rkd", 8, 16)(torch.randn(4, 8), torch.randn(2, 16))


def test_build_distill_loss() -> None:
    assert isinstance(build_distill_loss("hint", 3, 4), HintLoss) and not build_distill_loss("hint", 3, 4).pooled
    assert build_distill_loss("hint_pooled", 3, 4).pooled
    assert isinstance(build_distill_loss("at", 3, 4), AttentionTransferLoss)
    assert build_distill_loss("rkd", 3, 4, angle_weight=0).angle_weight == 0
    with pytest.raises(ConfigError, match="unknown distillation loss"):
        build_distill_loss("kl", 3, 4)
