"""Small building blocks shared by the heads."""

from __future__ import annotations

from torch import Tensor, nn


class ChannelMLP(nn.Module):
    """A per-cell MLP over the channel axis 1 of a tensor of any spatial shape (a stack of 1×1 convolutions).

    ``(B, C_in, *S) -> (B, widths[-1], *S)``; ``*S`` may be a grid ``(H, W)``/``(D, H, W)`` or a point set ``(P,)``.
    A ReLU follows every layer except the last unless ``last_act``; ``norm="batch"`` puts a BatchNorm before each ReLU
    (statistics over all cells/points of the batch).
    """

    def __init__(self, in_dim: int, widths: list[int], last_act: bool = True, norm: str = "none"):
        super().__init__()
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            is_last = i == len(widths) - 1
            layers.append(nn.Conv1d(in_dim, width, kernel_size=1, bias=norm != "batch" or (is_last and not last_act)))
            if not is_last or last_act:
                if norm == "batch":
                    layers.append(nn.BatchNorm1d(width))
                layers.append(nn.ReLU(inplace=True))
            in_dim = width
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        spatial = x.shape[2:]
        y = self.net(x.reshape(b, c, -1))
        return y.reshape(b, y.shape[1], *spatial)


def conv_nd(spatial_dims: int):
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def batch_norm_nd(spatial_dims: int):
    return nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
