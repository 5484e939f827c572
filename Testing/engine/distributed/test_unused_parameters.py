"""DDP runs with ``find_unused_parameters=False``: every trainable parameter must be reached by the loss in every
iteration. Checked per backbone with the MORSE heads at an AWA weight of exactly 0 (the first half of the paper's
schedule), and against DDP itself for UNETR, whose MONAI transformer blocks carry a LayerNorm no forward pass uses."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from morse.config import BackboneConfig, LossConfig
from morse.losses import MorseLoss
from morse.model import MorseModel
from morse.train.distributed import freeze_unused_parameters
from synthetic import tiny_model_config
from torch.nn.parallel import DistributedDataParallel

TINY_VIT = {"hidden_size": 32, "mlp_dim": 64, "num_heads": 2, "num_layers": 2}
BACKBONES = {
    "unet2d": (BackboneConfig(name="unet2d", features=[8, 16, 32, 64, 128, 8]), (64, 64)),
    "unet3d": (BackboneConfig(name="unet3d", features=[4, 8, 8, 16, 16, 4]), (32, 32, 32)),
    "unetr": (BackboneConfig(name="unetr", img_size=[32, 32, 32], feature_size=4, **TINY_VIT), (32, 32, 32)),
    "transunet": (
        BackboneConfig(name="transunet", img_size=[64, 64], features=[8, 32, 16, 16, 8, 8, 1, 1, 1], **TINY_VIT),
        (64, 64),
    ),
}


def _model(name: str) -> tuple[MorseModel, tuple[int, ...]]:
    cfg = tiny_model_config()
    cfg.backbone, size = BACKBONES[name]
    torch.manual_seed(0)
    return MorseModel(cfg).train(), size


def _step(net, size, loss_fn) -> None:
    x, y = torch.randn(2, 1, *size), torch.randint(0, 3, (2, *size))
    loss = loss_fn(net(x), y, step=0, total_steps=10)
    assert float(loss["rend_weight"]) == 0.0  # the rendering head only gets zero gradients here
    loss["total"].backward()


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_trainable_parameter_gets_a_gradient(name):
    model, size = _model(name)
    frozen = freeze_unused_parameters(model)
    _step(model, size, MorseLoss(LossConfig(awa="paper")))
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    head = [p.grad for n, p in model.named_parameters() if n.startswith("head.")]
    assert head and all(float(g.abs().max()) == 0.0 for g in head)  # zero, yet present: DDP counts them as used
    if name == "unetr":  # MONAI's ViT inside UNETR: 12 blocks, each with an unused norm_cross_attn (weight, bias)
        assert len(frozen) == 24 and all(".norm_cross_attn." in n for n in frozen)
    else:
        assert frozen == []


@pytest.fixture
def process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_refuses_unetr_unless_its_dead_parameters_are_frozen(process_group):
    loss_fn = MorseLoss(LossConfig(awa="paper"))
    model, size = _model("unetr")
    net = DistributedDataParallel(model, find_unused_parameters=False)
    _step(net, size, loss_fn)
    with pytest.raises(RuntimeError, match="finished reduction"):
        _step(net, size, loss_fn)

    model, size = _model("unetr")
    freeze_unused_parameters(model)
    net = DistributedDataParallel(model, find_unused_parameters=False)
    for _ in range(2):
        _step(net, size, loss_fn)
