"""UNet backbones (2D and 3D) on MONAI's BasicUNet, with the decoder stages as experts."""

from __future__ import annotations

from monai.networks.nets import BasicUNet
from torch import Tensor, nn

from ..config import BackboneConfig
from .base import BackboneOutput, FeatureTap

# Submodules of BasicUNet whose outputs are the experts, coarse to fine: the bottleneck and the four up-blocks.
_EXPERT_MODULES = ("down_4", "upcat_4", "upcat_3", "upcat_2", "upcat_1")
_ACT = ("LeakyReLU", {"negative_slope": 0.01, "inplace": True})
DEFAULT_FEATURES = (16, 32, 64, 128, 256, 16)  # the MORSE paper's 2D UNet (PyMIC widths); BasicUNet convention


class UNetBackbone(nn.Module):
    """BasicUNet (5 levels, transposed-convolution up-sampling) exposing its decoder as experts.

    2D (the MORSE paper's UNet, ``features = 16,32,64,128,256,16``): N=5 experts — the bottleneck (256 @ 1/16) and the
    four up-block outputs (128 @ 1/8, 64 @ 1/4, 32 @ 1/2, 16 @ 1/1).
    3D: N=3 experts — the last three up-block outputs (1/4, 1/2, 1/1), real multi-scale maps (the released code
    repeated the final map three times).
    Input sizes should be multiples of 16 per axis.
    """

    def __init__(self, cfg: BackboneConfig, num_classes: int, spatial_dims: int):
        super().__init__()
        f = list(cfg.features or DEFAULT_FEATURES)
        if len(f) != 6:
            raise ValueError("UNet features must list 6 widths: 5 encoder levels and the last decoder stage")
        norm = ("batch", {}) if cfg.norm == "batch" else ("instance", {"affine": True})
        self.net = BasicUNet(
            spatial_dims=spatial_dims,
            in_channels=cfg.in_channels,
            out_channels=num_classes,
            features=tuple(f),
            act=_ACT,
            norm=norm,
            dropout=cfg.dropout,
            upsample="deconv",
        )
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        all_experts = [f[4], f[3], f[2], f[1], f[5]]
        self.num_experts = 5 if spatial_dims == 2 else 3
        self.expert_channels = all_experts[-self.num_experts :]
        self.tap = FeatureTap(self.net, list(_EXPERT_MODULES[-self.num_experts :]))
        self.size_multiple = 16

    def forward(self, x: Tensor) -> BackboneOutput:
        logits = self.net(x)
        return BackboneOutput(logits, self.tap.collect())
