"""Small building blocks shared by the heads."""

from __future__ import annotations

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
                    layers.append(_RowBatchNorm(width))
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


class _RowBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last axis of ``(..., C)``."""

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


def conv_nd(spatial_dims: int):
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def batch_norm_nd(spatial_dims: int):
    return nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
