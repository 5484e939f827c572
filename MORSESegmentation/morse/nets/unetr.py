"""UNETR backbone (MONAI) with its three finest decoder stages as experts."""

from __future__ import annotations

from monai.networks.nets import UNETR
from torch import Tensor, nn

from ..config import BackboneConfig
from .base import BackboneOutput, FeatureTap


class UNETRBackbone(nn.Module):
    """MONAI UNETR (3D, fixed ``img_size``). Experts: decoder4 (4·fs @ 1/4), decoder3 (2·fs @ 1/2), decoder2 (fs @ 1/1).

    The position embeddings fix the input size, so sliding-window inference must use ``img_size`` as its ROI.
    """

    def __init__(self, cfg: BackboneConfig, num_classes: int):
        super().__init__()
        img_size = tuple(cfg.img_size or (96, 96, 96))
        fs = cfg.feature_size
        self.net = UNETR(
            in_channels=cfg.in_channels,
            out_channels=num_classes,
            img_size=img_size,
            feature_size=fs,
            hidden_size=cfg.hidden_size,
            mlp_dim=cfg.mlp_dim,
            num_heads=cfg.num_heads,
            norm_name=cfg.norm,
            dropout_rate=cfg.dropout,
            spatial_dims=3,
        )
        self.tap = FeatureTap(self.net, ["decoder4", "decoder3", "decoder2"])
        self.spatial_dims = 3
        self.num_classes = num_classes
        self.expert_channels = [4 * fs, 2 * fs, fs]
        self.num_experts = 3
        self.img_size = img_size
        self.size_multiple = 16

    def forward(self, x: Tensor) -> BackboneOutput:
        if tuple(x.shape[2:]) != self.img_size:
            raise ValueError(f"UNETR takes inputs of exactly {self.img_size} voxels, got {tuple(x.shape[2:])}")
        logits = self.net(x)
        return BackboneOutput(logits, self.tap.collect())
