"""TransUNet backbone (Chen et al., 2021): R50+ViT-B/16 hybrid encoder, cascaded upsampler (CUP), three experts.

Architecture (2D, input ``(B, 1 or 3, H, W)`` with H, W multiples of 16; widths for the default configuration):

- **ResNet-50 (v2 hybrid) trunk** with weight-standardised convolutions and GroupNorm, as in the BiT/ViT hybrid:
  root 7×7/2 conv → 64 @ 1/2, 3×3/2 max-pool → 1/4, stage 1 (3 bottleneck units) → 256 @ 1/4,
  stage 2 (4 units) → 512 @ 1/8, stage 3 (9 units) → 1024 @ 1/16. The root output and the first two stages are the
  skip connections of the decoder.
- **ViT-B/16 on the 1/16 map**: 1×1 "patches" (a 1×1 convolution 1024 → 768), learned position embeddings sized from
  ``img_size`` (bilinearly resized when an input has a different grid, so whole slices of any size that is a multiple
  of 16 can be segmented), 12 pre-norm transformer layers (MONAI ``TransformerBlock``: 12 heads, MLP 3072, GELU), a
  final LayerNorm.
- **CUP decoder**: 3×3 conv 768 → 512 on the token grid, then four blocks, each a ×2 bilinear up-sampling, a
  concatenation with the skip of that resolution (512 @ 1/8, 256 @ 1/4, 64 @ 1/2, none @ 1/1) and two 3×3
  conv-BN-ReLU: 256 @ 1/8, 128 @ 1/4, 64 @ 1/2, 16 @ 1/1. A 3×3 convolution 16 → C gives the coarse logits at input
  resolution.

Experts (N = 3, coarse → fine): the CUP outputs at **1/8 (256 ch), 1/4 (128 ch) and 1/1 (16 ch)**. This follows the
MORSE paper's TransUNet experts (the released code fed its decoder stages at 1/8, 1/4 and full resolution and left the
ViT token map and the 1/2 stage out, reference analysis §1); the full-resolution expert is the feature map the
segmentation head reads, as in the released code.

``BackboneConfig.features`` for this backbone: ``[root width, CUP head width, decoder width × 4]`` (default
``[64, 512, 256, 128, 64, 16]``), optionally followed by the number of bottleneck units of the three ResNet stages
(default ``3, 4, 9`` = ResNet-50), e.g. ``[8, 32, 16, 16, 8, 8, 1, 1, 1]`` for a tiny test model;
``features: null`` (the config default) means TransUNet's own widths. Bottleneck widths follow ResNet: stage ``i``
has ``width·2^i`` mid channels and ``4·width·2^i`` outputs.

A one-channel input is repeated to three channels before the root convolution (as TransUNet does), so that the
ImageNet weights of the root can be loaded unchanged; weight standardisation makes folding them into one channel
inexact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from monai.networks.blocks import Convolution, TransformerBlock
from torch import Tensor, nn

from ..config import BackboneConfig
from .base import BackboneOutput
from .transunet_weights import load_transunet_weights, resize_pos_embed

DEFAULT_FEATURES = (64, 512, 256, 128, 64, 16)
R50_UNITS = (3, 4, 9)
# Epsilons of the JAX models the public ImageNet-21k weights were trained with (flax GroupNorm/LayerNorm: 1e-6).
_GN_EPS = 1e-6
_LN_EPS = 1e-6
_WS_EPS = 1e-5


def parse_features(features: Sequence[int] | None) -> tuple[int, list[int], tuple[int, int, int]]:
    """``(root width, [CUP head, decoder ×4], units per ResNet stage)`` from ``BackboneConfig.features``
    (None: TransUNet's own widths)."""
    f = [int(v) for v in (features if features is not None else DEFAULT_FEATURES)]
    if len(f) not in (6, 9) or min(f) < 1:
        raise ValueError(
            "TransUNet features must be [root width, CUP head width, 4 decoder widths] (6 positive integers), "
            f"optionally followed by the 3 ResNet stage depths (9 in all); got {features}"
        )
    units = tuple(f[6:9]) if len(f) == 9 else R50_UNITS
    return f[0], f[1:6], units  # type: ignore[return-value]


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/JAX 'SAME' padding (before, after) of one axis; asymmetric for stride 2 on even sizes."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: int, stride: int, value: float = 0.0) -> Tensor:
    top, bottom = _same_padding(x.shape[-2], kernel, stride)
    left, right = _same_padding(x.shape[-1], kernel, stride)
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


def _groups(channels: int) -> int:
    """32 GroupNorm groups as in BiT, fewer for the narrow test variants (must divide the channel count)."""
    return math.gcd(32, channels)


class StdConv2d(nn.Conv2d):
    """Bias-free convolution with weight standardisation and 'SAME' padding (BiT / ViT-hybrid ResNet).

    Every output filter is normalised to zero mean and unit standard deviation over ``(in, kh, kw)`` at each forward
    pass, ``w' = (w − mean) / (std + 1e-5)``, so stored (and ImageNet-loaded) kernels are the raw ones. The padding
    reproduces the JAX 'SAME' rule the public weights were trained with (one extra row/column at the end for stride 2).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        std, mean = torch.std_mean(w, dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) / (std + _WS_EPS)
        k, s = self.kernel_size[0], self.stride[0]
        return F.conv2d(_pad_same(x, k, s), w, None, s)


class Bottleneck(nn.Module):
    """ResNet-v2-hybrid bottleneck unit: 1×1 → 3×3 (stride here) → 1×1, each conv followed by GroupNorm, ReLU after
    the first two; the residual (1×1 projection + GroupNorm when the shape changes) is added before the final ReLU.

    ``(B, cin, H, W)`` → ``(B, cout, H/stride, W/stride)``.
    """

    def __init__(self, cin: int, cmid: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = StdConv2d(cin, cmid, 1)
        self.gn1 = nn.GroupNorm(_groups(cmid), cmid, eps=_GN_EPS)
        self.conv2 = StdConv2d(cmid, cmid, 3, stride)
        self.gn2 = nn.GroupNorm(_groups(cmid), cmid, eps=_GN_EPS)
        self.conv3 = StdConv2d(cmid, cout, 1)
        self.gn3 = nn.GroupNorm(_groups(cout), cout, eps=_GN_EPS)
        # Zero scale on the last norm: each unit starts as the identity (BiT's init), which helps training from scratch.
        nn.init.zeros_(self.gn3.weight)
        self.conv_proj: StdConv2d | None = None
        self.gn_proj: nn.GroupNorm | None = None
        if stride != 1 or cin != cout:
            self.conv_proj = StdConv2d(cin, cout, 1, stride)
            self.gn_proj = nn.GroupNorm(_groups(cout), cout, eps=_GN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.conv_proj is None else self.gn_proj(self.conv_proj(x))
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        y = self.gn3(self.conv3(y))
        return F.relu(y + residual)


class ResNetTrunk(nn.Module):
    """Root + three bottleneck stages (the ResNet-50 part of the R50+ViT-B/16 hybrid).

    ``(B, cin, H, W)`` → ``(B, 16·width, H/16, W/16)`` and the skips ``[width @ 1/2, 4·width @ 1/4, 8·width @ 1/8]``.
    """

    def __init__(self, cin: int, width: int, units: Sequence[int]):
        super().__init__()
        self.root_conv = StdConv2d(cin, width, 7, stride=2)
        self.root_gn = nn.GroupNorm(_groups(width), width, eps=_GN_EPS)
        self.stages = nn.ModuleList()
        c = width
        for i, n in enumerate(units):
            cmid, cout = width * 2**i, 4 * width * 2**i
            stride = 1 if i == 0 else 2  # stage 1 runs after the max-pool at 1/4; stages 2 and 3 halve the size
            blocks = [Bottleneck(c if j == 0 else cout, cmid, cout, stride if j == 0 else 1) for j in range(n)]
            self.stages.append(nn.Sequential(*blocks))
            c = cout
        self.out_channels = c
        self.skip_channels = [width, 4 * width, 8 * width]  # 1/2, 1/4, 1/8

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = F.relu(self.root_gn(self.root_conv(x)))
        skips = [x]
        x = F.max_pool2d(_pad_same(x, 3, 2, value=float("-inf")), 3, 2)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1:
                skips.append(x)
        return x, skips


class HybridViT(nn.Module):
    """ViT on the ResNet's 1/16 map: ``(B, cin, gh, gw)`` → tokens ``(B, gh·gw, hidden)`` after the final LayerNorm.

    The position embeddings are stored for ``grid`` (``img_size / 16``); any other grid gets a bilinear resize of them.
    """

    def __init__(self, cin: int, grid: tuple[int, int], hidden: int, mlp_dim: int, heads: int, layers: int,
                 dropout: float):  # fmt: skip
        super().__init__()
        self.grid = tuple(grid)
        self.patch_embed = nn.Conv2d(cin, hidden, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1], hidden))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            block = TransformerBlock(hidden, mlp_dim, heads, dropout, qkv_bias=True, use_flash_attention=True)
            block.norm1.eps = block.norm2.eps = _LN_EPS
            # MONAI creates this norm even without cross-attention and never uses it: remove it so that every
            # parameter receives a gradient (DDP with find_unused_parameters=False) and the weights carry no dead keys.
            block.norm_cross_attn = nn.Identity()
            self.blocks.append(block)
        self.norm = nn.LayerNorm(hidden, eps=_LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        gh, gw = x.shape[-2:]
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, gh·gw, hidden), row-major like the grid
        tokens = self.dropout(tokens + resize_pos_embed(self.pos_embed, self.grid, (gh, gw)))
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


def _conv_bn_relu(cin: int, cout: int) -> nn.Module:
    return Convolution(2, cin, cout, kernel_size=3, act="RELU", norm="BATCH", bias=False)


class CupBlock(nn.Module):
    """×2 bilinear up-sampling, concatenation with the skip (if any), two 3×3 conv-BN-ReLU.

    ``(B, cin, h, w)`` [+ skip ``(B, cskip, 2h, 2w)``] → ``(B, cout, 2h, 2w)``.
    """

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(cin + cskip, cout)
        self.conv2 = _conv_bn_relu(cout, cout)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class TransUNetBackbone(nn.Module):
    """TransUNet (R50+ViT-B/16 + CUP) returning coarse logits ``(B, C, H, W)`` and three experts (see module doc).

    Args:
        cfg: ``img_size`` (default 224×224; sets the stored position-embedding grid), ``in_channels``, ``features``,
            ``hidden_size``, ``mlp_dim``, ``num_heads``, ``num_layers``, ``dropout`` (embeddings and transformer).
        num_classes: C.

    Experts for an ``H × W`` input: ``[(B, d1, H/8, W/8), (B, d2, H/4, W/4), (B, d4, H, W)]`` with the decoder widths
    ``d1, d2, d4`` (default 256, 128, 16).
    """

    def __init__(self, cfg: BackboneConfig, num_classes: int):
        super().__init__()
        width, dec, units = parse_features(cfg.features)
        img_size = tuple(int(s) for s in (cfg.img_size or (224, 224)))
        if len(img_size) != 2 or any(s % 16 for s in img_size):
            raise ValueError(f"TransUNet img_size must be two multiples of 16, got {list(img_size)}")
        if cfg.hidden_size % cfg.num_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} is not divisible by num_heads {cfg.num_heads}")
        self.in_channels = cfg.in_channels
        root_in = 3 if cfg.in_channels == 1 else cfg.in_channels  # gray is repeated to RGB (see the module doc)
        self.resnet = ResNetTrunk(root_in, width, units)
        grid = (img_size[0] // 16, img_size[1] // 16)
        self.vit = HybridViT(
            self.resnet.out_channels, grid, cfg.hidden_size, cfg.mlp_dim, cfg.num_heads, cfg.num_layers, cfg.dropout
        )
        self.cup_head = _conv_bn_relu(cfg.hidden_size, dec[0])
        skips = [*reversed(self.resnet.skip_channels), 0]  # 1/8, 1/4, 1/2, none at 1/1
        self.decoder = nn.ModuleList(CupBlock(dec[i], skips[i], dec[i + 1]) for i in range(4))
        self.seg_head = nn.Conv2d(dec[4], num_classes, kernel_size=3, padding=1)

        self.spatial_dims = 2
        self.num_classes = num_classes
        self.num_experts = 3
        self.expert_channels = [dec[1], dec[2], dec[4]]
        self.img_size = img_size
        self.size_multiple = 16

    def forward(self, x: Tensor) -> BackboneOutput:
        """``x (B, in_channels, H, W)``, H and W multiples of 16 → logits ``(B, C, H, W)`` and the three experts."""
        h, w = x.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"TransUNet takes inputs whose height and width are multiples of 16, got {h}×{w}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"TransUNet expects {self.in_channels} input channel(s), got {x.shape[1]}")
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        deep, skips = self.resnet(x)
        tokens = self.vit(deep)  # (B, gh·gw, hidden)
        b, gh, gw = x.shape[0], h // 16, w // 16
        # tokens are row-major: (B, gh, gw, hidden) viewed as NCHW is a channels-last map, no copy
        y = self.cup_head(tokens.reshape(b, gh, gw, -1).permute(0, 3, 1, 2))
        skip_maps = [skips[2], skips[1], skips[0], None]
        stages = []
        for block, skip in zip(self.decoder, skip_maps):
            y = block(y, skip)
            stages.append(y)  # 1/8, 1/4, 1/2, 1/1
        return BackboneOutput(self.seg_head(y), [stages[0], stages[1], stages[3]])

    def load_pretrained(self, path: str | Path) -> str:
        """Initialise the encoder from a local ``.npz`` (released R50+ViT-B_16 naming) or ``.safetensors`` file.

        Never downloads, never unpickles. Returns a one-line summary; raises :class:`morse.errors.ConfigError` for a
        missing, unreadable or incompatible file. See :mod:`morse.nets.transunet_weights`.
        """
        return load_transunet_weights(self, path)
