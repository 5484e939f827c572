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
    expected = [14529.419141, -35814.194149, -29825.937917, -41064.517912, -32899.532549, -19491.11665, 1348.985947,
                -36483.559736, 14344.69209]  # fmt: skip
    assert sums == pytest.approx(expected, rel=1e-5)
    at_point = [2.422049, -6.424566, -4.226865, -8.427466, -5.532292, -2.455511, 2.670753, -8.229809, 2.833644]
    assert out.logits[1, :, 20, 30].tolist() == pytest.approx(at_point, abs=1e-5)
    shapes = [(2, 256, 3, 4), (2, 128, 6, 8), (2, 64, 12, 16), (2, 32, 24, 32), (2, 16, 48, 64)]
    assert [tuple(e.shape) for e in out.experts] == shapes
    magnitudes = [float(e.double().abs().sum()) for e in out.experts]
    assert magnitudes == pytest.approx([1744.9788, 3862.2849, 10820.4196, 43885.3467, 107794.4291], rel=1e-5)


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
