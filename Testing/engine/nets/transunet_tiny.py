"""A tiny TransUNet configuration for tests: the same structure and strides as R50+ViT-B/16, narrow and shallow."""

from __future__ import annotations

from morse.config import BackboneConfig
from morse.nets.transunet import TransUNetBackbone

# root width 8, CUP widths 32-16-16-8-8, ResNet stages of 1, 2 and 1 units; ViT 2 layers × 2 heads, width 32
TINY = {"features": [8, 32, 16, 16, 8, 8, 1, 2, 1], "hidden_size": 32, "mlp_dim": 64, "num_heads": 2, "num_layers": 2}


def tiny_backbone_config(img: int = 64, **kw) -> BackboneConfig:
    return BackboneConfig(name="transunet", img_size=[img, img], **{**TINY, **kw})


def tiny_backbone(img: int = 64, classes: int = 3, **kw) -> TransUNetBackbone:
    return TransUNetBackbone(tiny_backbone_config(img, **kw), classes)
