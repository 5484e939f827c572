"""Point-rendering heads: the implicit head of MORSE (IAR) and PointRend's standard head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import PointHeadConfig
from .positional_encoding import FourierEncoding


class PointHead(nn.Module):
    """MLP over points: ``[PE(coords)?, fine features, coarse logits] → class logits``.

    ``head="implicit"`` prepends a Fourier encoding of the coordinates (IAR); ``"standard"`` is PointRend's head
    (no encoding, MSRA-initialised hidden layers, N(0, 0.001) predictor). With ``coarse_each_layer`` the coarse
    logits are appended again to the input of every layer after the first.

    Shapes (channels-last): fine ``(B, P, F)``, coarse ``(B, P, C)``, coords ``(B, P, dims)`` → logits ``(B, P, C)``.
    """

    def __init__(self, fine_dim: int, num_classes: int, spatial_dims: int, cfg: PointHeadConfig):
        super().__init__()
        self.encoding = FourierEncoding(spatial_dims, cfg.pe) if cfg.head == "implicit" else None
        self.coarse_each_layer = cfg.coarse_each_layer
        in_dim = fine_dim + num_classes + (self.encoding.out_dim if self.encoding is not None else 0)
        layers = []
        for width in cfg.hidden:
            layers.append(nn.Linear(in_dim, width))
            in_dim = width + (num_classes if cfg.coarse_each_layer else 0)
        self.layers = nn.ModuleList(layers)
        self.predictor = nn.Linear(in_dim, num_classes)
        if cfg.head == "standard":
            for layer in self.layers:
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)
            nn.init.normal_(self.predictor.weight, std=0.001)
            nn.init.zeros_(self.predictor.bias)

    def forward(self, fine: Tensor, coarse: Tensor, coords: Tensor) -> Tensor:
        parts = [fine, coarse]
        if self.encoding is not None:
            parts.insert(0, self.encoding(coords).to(fine.dtype))
        x = torch.cat(parts, dim=-1)
        for layer in self.layers:
            x = torch.relu(layer(x))
            if self.coarse_each_layer:
                x = torch.cat([x, coarse], dim=-1)
        return self.predictor(x)
