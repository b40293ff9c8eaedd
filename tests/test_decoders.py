"""Decoder g and its per-sample task loss (the policy's reward)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from repfusion_zoo.method.decoders import FCNDecoder, LinearDecoder, MLPDecoder, build_decoder, decoder_task_loss
from repfusion_zoo.errors import ConfigError, InputError


def test_pooled_decoders_shapes() -> None:
    feature = torch.randn(3, 16, 4, 4)
    for kind, cls in (("linear", LinearDecoder), ("mlp", MLPDecoder)):
        decoder = build_decoder(kind, 16, 10)
        assert isinstance(decoder, cls)
        assert decoder(feature).shape == (3, 10)
        assert decoder(feature.mean((2, 3))).shape == (3, 10)  # an already pooled feature


def test_linear_decoder_is_pool_then_linear() -> None:
    decoder = LinearDecoder(2, 1)
    with torch.no_grad():
        decoder.fc.weight.copy_(torch.tensor([[1.0, 10.0]]))
        decoder.fc.bias.zero_()
    feature = torch.tensor([[[[1.0, 3.0]], [[0.0, 2.0]]]])  # pooled [2, 1]
    assert decoder(feature).item() == pytest.approx(12.0)


def test_fcn_decoder_keeps_the_map() -> None:
    decoder = build_decoder("fcn", 16, 19, channels=8)
    assert isinstance(decoder, FCNDecoder)
    assert decoder(torch.randn(2, 16, 8, 8)).shape == (2, 19, 8, 8)
    with pytest.raises(InputError, match=r"\(2, 16\)"):
        decoder(torch.randn(2, 16))


def test_classification_loss_is_per_sample_ce() -> None:
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 9, 3])
    loss = decoder_task_loss(logits, labels)
    assert loss.shape == (4,)
    assert torch.allclose(loss, F.cross_entropy(logits, labels, reduction="none"))
    # hand case: two equal logits -> log 2
    assert decoder_task_loss(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(math.log(2))


def test_dense_loss_upsamples_and_ignores_255() -> None:
    # 1x1 logits [0, log 3] -> softmax [1/4, 3/4] everywhere after upsampling to 2x2
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1).repeat(3, 1, 1, 1)
    labels = torch.tensor(
        [
            [[0, 1], [1, 255]],  # CE: log 4, log 4/3, log 4/3 over 3 valid pixels
            [[255, 255], [255, 255]],  # no valid pixel -> 0
            [[1, 1], [1, 1]],  # log 4/3
        ]
    )
    loss = decoder_task_loss(logits, labels)
    assert loss.shape == (3,)
    assert loss[0].item() == pytest.approx((math.log(4) + 2 * math.log(4 / 3)) / 3, rel=1e-5)
    assert loss[1].item() == 0.0
    assert loss[2].item() == pytest.approx(math.log(4 / 3), rel=1e-5)


def test_heatmap_loss_per_sample() -> None:
    logits = torch.zeros(2, 3, 2, 2)
    heatmaps = torch.zeros(2, 3, 4, 4)
    heatmaps[1] = 2.0
    loss = decoder_task_loss(logits, {"heatmaps": heatmaps, "points": torch.zeros(2, 3, 2)})
    assert loss.tolist() == pytest.approx([0.0, 4.0])


def test_errors() -> None:
    with pytest.raises(ConfigError, match="unknown decoder"):
        build_decoder("transformer", 4, 2)
    with pytest.raises(InputError, match=r"\(2, 5, 4, 4\)"):
        decoder_task_loss(torch.randn(2, 5, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(InputError, match=r"\(2, 5\)"):
        decoder_task_loss(torch.randn(2, 5), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(InputError, match="batch"):
        decoder_task_loss(torch.randn(3, 5), torch.tensor([0, 1]))
