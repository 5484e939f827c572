"""Backbones: segmentation networks whose decoder stages serve as MORSE experts."""

from __future__ import annotations

from torch import nn

from ..config import BackboneConfig
from .base import BackboneOutput

__all__ = ["BackboneOutput", "build_backbone"]


def build_backbone(cfg: BackboneConfig, num_classes: int) -> nn.Module:
    """The backbone named by ``cfg.name``; it returns :class:`BackboneOutput` from ``forward``."""
    if cfg.name == "unet2d":
        from .unet import UNetBackbone

        return UNetBackbone(cfg, num_classes, spatial_dims=2)
    if cfg.name == "unet3d":
        from .unet import UNetBackbone

        return UNetBackbone(cfg, num_classes, spatial_dims=3)
    if cfg.name == "unetr":
        from .unetr import UNETRBackbone

        return UNETRBackbone(cfg, num_classes)
    if cfg.name == "transunet":
        from .transunet import TransUNetBackbone

        return TransUNetBackbone(cfg, num_classes)
    raise ValueError(f"unknown backbone {cfg.name!r}")
