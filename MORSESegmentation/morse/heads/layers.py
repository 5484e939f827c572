"""Small building blocks shared by the heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelMLP(nn.Module):
    """A per-cell MLP on the **last** axis of a channels-last tensor ``(..., C_in) -> (..., widths[-1])``.

    Works on point sets ``(B, P, C)`` and on grids moved to channels-last; :meth:`on_map` applies it to a
    channel-first map ``(B, C, *S)``. A ReLU follows every layer except the last unless ``last_act``;
    ``norm="batch"`` puts a BatchNorm (statistics over all cells/points of the batch) before each ReLU.
    """

    def __init__(self, in_dim: int, widths: list[int], last_act: bool = True, norm: str = "none"):
        super().__init__()
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            is_last = i == len(widths) - 1
            activated = not is_last or last_act
            layers.append(nn.Linear(in_dim, width, bias=not (norm == "batch" and activated)))
            if activated:
                if norm == "batch":
                    layers.append(RowBatchNorm(width))
                layers.append(nn.ReLU(inplace=True))
            in_dim = width
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def split_affine_tail(self) -> tuple[nn.Module, nn.Module]:
        """``(body, tail)`` with ``tail(body(x)) == self(x)``; ``tail`` is the last Linear when nothing follows it
        (an affine map, which commutes with interpolation), else the identity."""
        layers = list(self.net)
        if isinstance(layers[-1], nn.Linear):
            return nn.Sequential(*layers[:-1]), layers[-1]
        return self.net, nn.Identity()

    def on_map(self, x: Tensor) -> Tensor:
        """Apply to a channel-first map ``(B, C, *S)`` → ``(B, C', *S)``."""
        return self.net(x.movedim(1, -1)).movedim(-1, 1)


class RowBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last axis of ``(..., C)``."""

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


class SplitLinear(nn.Module):
    """A Linear layer over the concatenation of several inputs, computed without concatenating them:
    ``W·[x_1; …; x_m] + b = Σ_i W_i·x_i + b``. Saves the copies that ``torch.cat`` makes on every call, which
    dominate the cost of small per-point MLPs."""

    def __init__(self, in_dims: list[int], out_dim: int, bias: bool = True):
        super().__init__()
        self.parts = nn.ModuleList(nn.Linear(d, out_dim, bias=bias and i == 0) for i, d in enumerate(in_dims))

    def forward(self, inputs: list[Tensor]) -> Tensor:
        lead = inputs[0].shape[:-1]
        out = self.parts[0](inputs[0]).reshape(-1, self.parts[0].out_features)
        # accumulate with a fused multiply-add; without autograd straight into ``out`` (out-of-place addmm copies
        # its accumulator on every call, a full (rows, out) copy per part)
        in_place = not torch.is_grad_enabled()
        for layer, x in zip(self.parts[1:], inputs[1:]):
            rows, weight = x.reshape(-1, x.shape[-1]).to(out.dtype), layer.weight.t().to(out.dtype)
            out = out.addmm_(rows, weight) if in_place else out.addmm(rows, weight)
        return out.reshape(*lead, -1)


def weighted_sum(values: list[Tensor], weights: Tensor) -> Tensor:
    """Σ_k weights[..., k] · values[k] for channels-last ``values[k] (..., C)`` and ``weights (..., K)``,
    accumulated in place (no stacked temporary)."""
    out = values[0] * weights[..., 0:1]
    for k in range(1, len(values)):
        out.addcmul_(values[k], weights[..., k : k + 1])
    return out


def conv_nd(spatial_dims: int):
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def batch_norm_nd(spatial_dims: int):
    return nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
