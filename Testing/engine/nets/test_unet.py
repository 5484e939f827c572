"""The UNet backbone on MONAI's BasicUNet: the shipped pack's numbers, experts, and the 3D variant."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from morse.config import BackboneConfig
from morse.modelpack import load_model_pack
from morse.nets.unet import UNetBackbone

PACK = Path(__file__).resolve().parents[3] / "MORSESegmentation" / "Resources" / "Models" / "abdomen-ct-morse2d"


@pytest.fixture(scope="module")
def shipped_backbone():
    return load_model_pack(PACK).build().backbone


def _input() -> torch.Tensor:
    return torch.rand((2, 1, 48, 64), generator=torch.Generator().manual_seed(5))


def test_shipped_pack_gives_the_logits_and_experts_it_gave_before(shipped_backbone):
    """Numbers of the shipped weights through the first (hand-written) forward pass; any change of the network's
    wiring or of the weight names would move them."""
    with torch.no_grad():
        out = shipped_backbone(_input())
    sums = out.logits.double().sum(dim=(0, 2, 3)).tolist()
    # pack 2.2.0's weights (new numbers whenever the shipped weights change; the code path is what is pinned)
    expected = [13724.480417, -63129.182082, -32794.520304, -43695.90219, -39725.321796, -13132.318347, -21339.245928,
                -33576.214715, 3169.578319]  # fmt: skip
    assert sums == pytest.approx(expected, rel=1e-5)
    at_point = [0.826865, -12.977033, -2.156116, -8.841681, -5.490754, 1.217937, -1.277253, -6.77668, 1.251844]
    assert out.logits[1, :, 20, 30].tolist() == pytest.approx(at_point, abs=1e-5)
    shapes = [(2, 256, 3, 4), (2, 128, 6, 8), (2, 64, 12, 16), (2, 32, 24, 32), (2, 16, 48, 64)]
    assert [tuple(e.shape) for e in out.experts] == shapes
    magnitudes = [float(e.double().abs().sum()) for e in out.experts]
    assert magnitudes == pytest.approx([2006.8603, 4301.5258, 6820.0397, 22510.3225, 109412.42], rel=1e-5)


def test_logits_are_basic_unet_forward_and_each_pass_returns_its_own_experts(shipped_backbone):
    x = _input()
    with torch.no_grad():
        first = shipped_backbone(x)
        second = shipped_backbone(x.flip(-1))
        plain = shipped_backbone.net(x)  # MONAI's own forward
    assert torch.equal(first.logits, plain)
    assert torch.equal(
        first.experts[-1], shipped_backbone.net.upcat_1(first.experts[-2], shipped_backbone.net.conv_0(x))
    )
    assert not torch.equal(first.experts[0], second.experts[0])


def test_3d_unet_has_three_experts_at_quarter_half_and_full_resolution():
    torch.manual_seed(0)
    net = UNetBackbone(BackboneConfig(name="unet3d", features=[4, 4, 8, 8, 16, 4], norm="instance"), 3, 3).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 16, 16, 32))
    assert tuple(out.logits.shape) == (1, 3, 16, 16, 32)
    assert [tuple(e.shape) for e in out.experts] == [(1, 8, 4, 4, 8), (1, 4, 8, 8, 16), (1, 4, 16, 16, 32)]
    assert net.expert_channels == [8, 4, 4]
