"""Positional encoding, point heads, losses and the adaptive weight adjustment (AWA) schedule."""

from __future__ import annotations

import math

import pytest
import torch
from morse.config import LossConfig, PointHeadConfig, PositionalEncodingConfig
from morse.heads.point_head import PointHead
from morse.heads.positional_encoding import FourierEncoding
from morse.losses import MorseLoss, awa_weight


def test_positional_encoding_matches_the_formula_for_hand_computed_coordinates():
    pe = FourierEncoding(2, PositionalEncodingConfig(num_frequencies=2, trainable=False))
    pe.freqs.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5]]))  # B (dims × L)
    coords = torch.tensor([[[0.25, 0.75], [0.5, 0.0]]])  # (B=1, P=2, dims=2), x first
    out = pe(coords)
    # point 1: 2p-1 = (-0.5, 0.5) → proj = 2π·(-0.5·1 + 0.5·0, -0.5·0 + 0.5·0.5) = (-π, π/2)
    # point 2: 2p-1 = (0, -1)     → proj = 2π·(0, -0.5) = (0, -π)
    expected = torch.tensor(
        [[
            [math.sin(-math.pi), math.sin(math.pi / 2), math.cos(-math.pi), math.cos(math.pi / 2)],
            [math.sin(0.0), math.sin(-math.pi), math.cos(0.0), math.cos(-math.pi)],
        ]]
    )  # fmt: skip
    assert out.shape == (1, 2, 4)
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("init", ["gaussian", "uniform"])
def test_positional_encoding_init_and_trainable_flag(init):
    torch.manual_seed(0)
    big = FourierEncoding(3, PositionalEncodingConfig(num_frequencies=4000, init=init, scale=2.0, trainable=True))
    f = big.freqs.detach()
    if init == "gaussian":
        assert abs(f.mean().item()) < 0.05 and abs(f.std().item() - 2.0) < 0.05
    else:
        assert f.min() >= 0 and f.max() < 2.0 and abs(f.mean().item() - 1.0) < 0.05
    trainable = FourierEncoding(2, PositionalEncodingConfig(num_frequencies=8, trainable=True))
    frozen = FourierEncoding(2, PositionalEncodingConfig(num_frequencies=8, trainable=False))
    assert [n for n, _ in trainable.named_parameters()] == ["freqs"]
    assert list(frozen.parameters()) == [] and "freqs" in frozen.state_dict()
    for module in (trainable, frozen):
        before = module.freqs.detach().clone()
        params = list(module.parameters())
        if params:
            opt = torch.optim.SGD(params, lr=0.1)
            module(torch.rand(1, 5, 2)).sum().backward()
            opt.step()
        assert torch.equal(before, module.freqs.detach()) != (module is trainable)


@pytest.mark.parametrize("head", ["implicit", "standard"])
@pytest.mark.parametrize("each_layer", [True, False])
def test_point_head_shapes_and_coarse_reappended(head, each_layer):
    cfg = PointHeadConfig(head=head, hidden=[32, 32, 32], coarse_each_layer=each_layer, pe=PositionalEncodingConfig(8))
    net = PointHead(fine_dim=16, num_classes=5, spatial_dims=3, cfg=cfg)
    out = net(torch.randn(2, 40, 16), torch.randn(2, 40, 5), torch.rand(2, 40, 3))
    assert out.shape == (2, 40, 5)
    # coarse logits are an input of every layer after the first iff coarse_each_layer
    later = [layer for layer in net.layers[1:]] + [net.predictor]
    assert all((len(layer.parts) == 2) == each_layer for layer in later)
    assert (net.encoding is not None) == (head == "implicit")
    if head == "standard":
        assert net.predictor.parts[0].weight.std() < 0.01  # N(0, 0.001) init


def test_awa_schedules():
    total = 1000
    paper = LossConfig(awa="paper", rend_weight=0.1)
    assert awa_weight(0, total, paper) == 0.0
    assert awa_weight(500, total, paper) == 0.0
    assert awa_weight(750, total, paper) == pytest.approx(0.1 * 250 / 1000)
    assert awa_weight(999, total, paper) == pytest.approx(0.1 * 499 / 1000)
    reference = LossConfig(awa="reference")
    assert awa_weight(400, total, reference) == 0.0
    assert awa_weight(900, total, reference) == pytest.approx(0.4)
    assert awa_weight(10, total, LossConfig(awa="constant", rend_weight=0.3)) == 0.3


def test_loss_parts_and_weighting():
    torch.manual_seed(0)
    coarse = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    coords = torch.rand(2, 10, 2)
    point_logits = torch.randn(2, 10, 3)
    loss = MorseLoss(LossConfig(awa="constant", rend_weight=0.5, sup_scale=0.5))
    parts = loss({"coarse": coarse, "point_logits": point_logits, "point_coords": coords}, labels, 0, 10)
    assert parts["total"].item() == pytest.approx(parts["sup"].item() + 0.5 * parts["rend"].item(), rel=1e-6)
    # the point targets are the labels at the containing cells
    ix = (coords * 8).floor().long()
    target = labels[torch.arange(2)[:, None], ix[..., 1], ix[..., 0]]
    expected = torch.nn.functional.cross_entropy(point_logits.reshape(-1, 3), target.reshape(-1))
    assert parts["rend"].item() == pytest.approx(expected.item(), rel=1e-6)
    parts["total"].backward()
    assert coarse.grad is not None and coarse.grad.abs().sum() > 0


def test_batch_dice_pools_a_class_over_the_batch():
    """Class 1 fills half of sample 0 and is absent from sample 1, where the network gives it some probability:
    per-sample Dice scores sample 1's class 1 as a complete miss, batch Dice only as a few extra voxels."""
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, :2] = 1
    coarse = torch.zeros(2, 2, 4, 4)
    coarse[0, 1, :2], coarse[0, 1, 2:] = 4.0, -4.0  # sample 0: class 1 found where it is (p = σ(4)), not elsewhere
    coarse[1, 1] = -1.0  # sample 1: class 1 at p = σ(−1) ≈ 0.27 everywhere, though absent
    dice = {}
    for batch in (False, True):
        cfg = LossConfig(ce_weight=0.0, dice_weight=1.0, dice_batch=batch)
        dice[batch] = MorseLoss(cfg)({"coarse": coarse}, labels, 0, 10)["sup"].item()
    hit, miss = torch.sigmoid(torch.tensor(4.0)).item(), torch.sigmoid(torch.tensor(-1.0)).item()
    # Dice per class over both samples: 2·Σ p·g / (Σ g + Σ p)
    class1 = 2 * 8 * hit / (8 + 8 * hit + 8 * (1 - hit) + 16 * miss)
    class0 = 2 * (8 * hit + 16 * (1 - miss)) / (24 + 8 * (1 - hit) + 8 * hit + 16 * (1 - miss))
    assert dice[True] == pytest.approx(1 - (class0 + class1) / 2, abs=1e-4)
    # per sample: sample 0 scores σ(4) for both classes; sample 1 scores 0 for the absent class
    sample1_class0 = 2 * 16 * (1 - miss) / (16 + 16 * (1 - miss))
    assert dice[False] == pytest.approx(1 - (2 * hit + sample1_class0 + 0.0) / 4, abs=1e-4)
    assert dice[False] > dice[True] + 0.1
