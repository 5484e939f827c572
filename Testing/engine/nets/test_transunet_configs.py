"""The TransUNet experiment configs load, agree with the trainer's checks and build the intended models."""

from __future__ import annotations

from pathlib import Path

import pytest
from morse.config import load_experiment
from morse.model import MorseModel
from morse.train.trainer import _check

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize(
    ("name", "heads", "gating"),
    [
        ("transunet-morse", True, "pointwise"),
        ("transunet-backbone", False, None),
        ("transunet-morse-paper", True, "dense"),
    ],
)
def test_transunet_configs(name, heads, gating):
    cfg = load_experiment(CONFIGS / f"{name}.yaml")
    _check(cfg)  # patch size = img_size, multiples of 16
    b = cfg.model.backbone
    assert (b.name, b.img_size, cfg.data.patch_size, cfg.model.num_classes) == ("transunet", [224, 224], [224, 224], 9)
    assert (b.hidden_size, b.mlp_dim, b.num_heads, b.num_layers, b.pretrained) == (768, 3072, 12, 12, None)
    assert cfg.data.dataset == "registry:abdomen-ct-synapse8" and cfg.model.has_point_head is heads
    assert (cfg.model.features.gating if heads else None) == gating
    model = MorseModel(cfg.model)
    assert model.num_experts == 3 and model.backbone.expert_channels == [256, 128, 16]
    assert (model.head is not None) is heads
