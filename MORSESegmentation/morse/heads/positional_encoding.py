"""Fourier positional encoding of continuous point coordinates (2D and 3D)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import PositionalEncodingConfig


class FourierEncoding(nn.Module):
    """PE(p) = [sin(2π·(2p−1)·B), cos(2π·(2p−1)·B)] with a frequency matrix B of shape ``(dims, L)``.

    ``p`` are coordinates in [0, 1] (x first, see :mod:`morse.heads.point_ops`); ``2p − 1`` maps them to [−1, 1].
    B is drawn from N(0, scale²) (``gaussian``) or U[0, scale) (``uniform``) and is a parameter when ``trainable``,
    otherwise a buffer (it is saved with the weights either way).
    """

    def __init__(self, dims: int, cfg: PositionalEncodingConfig):
        super().__init__()
        shape = (dims, cfg.num_frequencies)
        if cfg.init == "gaussian":
            freqs = torch.randn(shape) * cfg.scale
        elif cfg.init == "uniform":
            freqs = torch.rand(shape) * cfg.scale
        else:  # guarded by the config's Literal check; kept for direct construction
            raise ValueError(f"unknown positional-encoding init {cfg.init!r}")
        if cfg.trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)
        self.out_dim = 2 * cfg.num_frequencies

    def forward(self, coords: Tensor) -> Tensor:
        """``coords (B, P, dims)`` → encoding ``(B, P, 2L)`` (sines first, then cosines)."""
        proj = 2 * math.pi * (2 * coords.to(self.freqs.dtype) - 1) @ self.freqs  # (B, P, L)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)
