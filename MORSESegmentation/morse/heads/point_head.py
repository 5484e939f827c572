"""Point-rendering heads: the implicit head of MORSE (IAR) and PointRend's standard head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import PointHeadConfig
from .layers import SplitLinear
from .positional_encoding import FourierEncoding


class PointHead(nn.Module):
    """MLP over points: ``[PE(coords)?, fine features, coarse logits] → class logits``.

    ``head="implicit"`` prepends a Fourier encoding of the coordinates (IAR); ``"standard"`` is PointRend's head
    (no encoding, MSRA-initialised hidden layers, N(0, 0.001) predictor). With ``coarse_each_layer`` the coarse
    logits are appended again to the input of every layer after the first. Concatenations are never materialised
    (:class:`~morse.heads.layers.SplitLinear`).

    Shapes (channels-last): fine ``(B, P, F)``, coarse ``(B, P, C)``, coords ``(B, P, dims)`` → logits ``(B, P, C)``.
    """

    def __init__(self, fine_dim: int, num_classes: int, spatial_dims: int, cfg: PointHeadConfig):
        super().__init__()
        self.encoding = FourierEncoding(spatial_dims, cfg.pe) if cfg.head == "implicit" else None
        self.coarse_each_layer = cfg.coarse_each_layer
        first = [fine_dim, num_classes]
        if self.encoding is not None:
            first.insert(0, self.encoding.out_dim)
        layers = []
        in_dims = first
        for width in cfg.hidden:
            layers.append(SplitLinear(in_dims, width))
            in_dims = [width, num_classes] if cfg.coarse_each_layer else [width]
        self.layers = nn.ModuleList(layers)
        self.predictor = SplitLinear(in_dims, num_classes)
        if cfg.head == "standard":
            for layer in self.layers:
                for part in layer.parts:
                    nn.init.kaiming_normal_(part.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.parts[0].bias)
            for part in self.predictor.parts:
                nn.init.normal_(part.weight, std=0.001)
            nn.init.zeros_(self.predictor.parts[0].bias)

    def forward(self, fine: Tensor, coarse: Tensor, coords: Tensor) -> Tensor:
        coarse = coarse.to(fine.dtype)
        inputs = [fine, coarse]
        if self.encoding is not None:
            inputs.insert(0, self.encoding(coords).to(fine.dtype))
        for layer in self.layers:
            x = torch.relu_(layer(inputs))
            inputs = [x, coarse] if self.coarse_each_layer else [x]
        return self.predictor(inputs)
