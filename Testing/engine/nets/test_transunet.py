"""TransUNet backbone: shapes of logits and experts at 224 and 256, the ResNet-50 + ViT-B/16 sizes, position
embeddings for other grids, and the MORSE model built on it."""

from __future__ import annotations

import pytest
import torch
from morse.config import BackboneConfig
from morse.model import MorseModel
from morse.nets import build_backbone
from morse.nets.transunet import TransUNetBackbone, parse_features, resize_pos_embed
from synthetic import tiny_model_config
from transunet_tiny import tiny_backbone, tiny_backbone_config


@pytest.fixture(scope="module")
def full_model():
    """The paper-size TransUNet (R50 + ViT-B/16, CUP 512-256-128-64-16) for 9 classes, in eval mode."""
    torch.manual_seed(0)
    return build_backbone(BackboneConfig(name="transunet", img_size=[224, 224]), 9).eval()


def test_full_size_architecture(full_model):
    m = full_model
    assert isinstance(m, TransUNetBackbone)
    assert (m.spatial_dims, m.num_classes, m.num_experts, m.size_multiple) == (2, 9, 3, 16)
    assert m.expert_channels == [256, 128, 16] and m.img_size == (224, 224)
    # ResNet-50 trunk of the hybrid: 3, 4 and 9 bottleneck units, 1024 channels at 1/16
    assert [len(s) for s in m.resnet.stages] == [3, 4, 9] and m.resnet.out_channels == 1024
    assert len(m.vit.blocks) == 12 and m.vit.pos_embed.shape == (1, 14 * 14, 768)
    block = m.vit.blocks[0]
    assert block.attn.qkv.weight.shape == (3 * 768, 768) and block.mlp.linear1.weight.shape == (3072, 768)
    # TransUNet (Chen et al. 2021) reports 105.28 M parameters for R50-ViT-B/16 with CUP on Synapse (9 classes)
    params = sum(p.numel() for p in m.parameters())
    assert abs(params - 105.28e6) < 0.01e6, params


@pytest.mark.parametrize("size", [224, 256])
def test_full_size_shapes(full_model, size):
    x = torch.randn(1, 1, size, size)
    with torch.inference_mode():
        out = full_model(x)
    assert out.logits.shape == (1, 9, size, size)
    assert [tuple(e.shape) for e in out.experts] == [
        (1, 256, size // 8, size // 8),
        (1, 128, size // 4, size // 4),
        (1, 16, size, size),
    ]


@pytest.mark.parametrize("shape", [(64, 64), (96, 64), (48, 112)])
def test_tiny_variant_shapes_any_multiple_of_16(shape):
    m = tiny_backbone(64).eval()
    assert [len(s) for s in m.resnet.stages] == [1, 2, 1] and m.expert_channels == [16, 16, 8]
    h, w = shape
    with torch.inference_mode():
        out = m(torch.randn(2, 1, h, w))
    assert out.logits.shape == (2, 3, h, w)
    assert [tuple(e.shape) for e in out.experts] == [(2, 16, h // 8, w // 8), (2, 16, h // 4, w // 4), (2, 8, h, w)]


def test_input_checks():
    m = tiny_backbone(64).eval()
    with pytest.raises(ValueError, match="multiples of 16"):
        m(torch.randn(1, 1, 72, 64))
    with pytest.raises(ValueError, match="input channel"):
        m(torch.randn(1, 2, 64, 64))
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_backbone(70)
    with pytest.raises(ValueError, match="6 positive integers"):
        tiny_backbone(64, features=[8, 16, 32])


def test_default_features_mean_transunet_widths():
    assert parse_features(BackboneConfig().features) == (64, [512, 256, 128, 64, 16], (3, 4, 9))
    assert parse_features([8, 32, 16, 16, 8, 8, 2, 2, 3]) == (8, [32, 16, 16, 8, 8], (2, 2, 3))


def test_gray_input_is_the_rgb_model_on_a_repeated_channel():
    torch.manual_seed(1)
    gray = tiny_backbone(64).eval()
    rgb = tiny_backbone(64, in_channels=3).eval()
    rgb.load_state_dict(gray.state_dict())  # same shapes: the gray model's root convolution has 3 input channels
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(gray(x).logits, rgb(x.repeat(1, 3, 1, 1)).logits, atol=1e-6)


def test_position_embeddings_follow_the_input_grid():
    m = tiny_backbone(64).eval()
    assert m.vit.grid == (4, 4)
    # stored grid: used as is
    assert resize_pos_embed(m.vit.pos_embed, (4, 4), (4, 4)) is m.vit.pos_embed
    # a linear ramp along the width stays a ramp (interior cells; bilinear is exact on linear functions)
    c = 3
    cols = (torch.arange(4.0) + 0.5) / 4  # cell centres in [0, 1]
    ramp = cols.repeat(4)[None, :, None].expand(1, 16, c).contiguous()
    out = resize_pos_embed(ramp, (4, 4), (8, 8)).reshape(8, 8, c)
    centres = (torch.arange(8.0) + 0.5) / 8
    assert torch.allclose(out[:, 2:6, 0], centres[2:6].expand(8, 4), atol=1e-6)
    assert torch.allclose(out[..., 0], out[..., 2])  # channels resized alike
    # a model at another grid than it was built for still runs, and differs from a model built for that grid only
    # through the (resized) embeddings: copying them over gives identical outputs
    big = tiny_backbone(96).eval()
    state = {k: v for k, v in m.state_dict().items() if k != "vit.pos_embed"}
    big.load_state_dict(state, strict=False)
    with torch.no_grad():
        big.vit.pos_embed.copy_(resize_pos_embed(m.vit.pos_embed, (4, 4), (6, 6)))
    x = torch.randn(1, 1, 96, 96)
    with torch.inference_mode():
        assert torch.allclose(m(x).logits, big(x).logits, atol=1e-5)


def test_morse_model_on_transunet_trains_every_parameter():
    cfg = tiny_model_config()
    cfg.backbone = tiny_backbone_config(64)
    model = MorseModel(cfg).train()
    assert model.num_experts == 3 and model.size_multiple == 16
    x, y = torch.randn(2, 1, 64, 64), torch.randint(0, 3, (2, 64, 64))
    out = model(x)
    assert out["coarse"].shape == (2, 3, 64, 64) and out["point_logits"].shape == (2, 256, 3)
    loss = torch.nn.functional.cross_entropy(out["coarse"], y) + out["point_logits"].sum() * 0.0
    loss.backward()
    # every parameter is reached by the loss (DDP runs with find_unused_parameters=False)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    with torch.inference_mode():
        pred = model.eval().predict(torch.randn(1, 1, 80, 96), gating_stride=2)
    assert pred.refined.shape == (1, 3, 80, 96) and pred.gating.shape == (1, 3, 40, 48)


def test_backbone_alone_is_a_baseline():
    cfg = tiny_model_config()
    cfg.backbone = tiny_backbone_config(64)
    cfg.features, cfg.point_head = None, None
    model = MorseModel(cfg)
    assert model.head is None and set(model(torch.randn(1, 1, 64, 64))) == {"coarse"}
