"""Stochastic mixture of decoder experts (SMoE): the point features of the rendering head.

Model (per expert k with native map E_k of shape (B, C_k, *S_k)):

    e_k   = MLP_k(E_k)                     at the expert's native resolution
    ê_k   = resize(e_k → target grid)      bi/trilinear, align_corners=False
    w     = softmax_k(G([ê_1 … ê_N]))      gating network G; one weight per expert per cell
    x_out = F(Σ_k w_k ê_k)                 fusion MLP

``at_points`` evaluates this exactly at arbitrary continuous points without building any full-resolution map when
the gating is point-wise (1×1): MLP_k is applied to the 2^n native cells around each point before blending (or to the
whole native map when that is smaller), which equals resize-then-sample because both are the same linear
interpolation of the same per-cell values. With ``gating="dense"`` (k×k convolutions, paper / released code) the
gate needs neighbourhoods, so the dense maps are built and sampled.

Point outputs are channels-last: ``x_out (B, P, out)``, weights ``(B, P, N)``; dense outputs channel-first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from ..config import SMoEConfig
from .layers import ChannelMLP, RowBatchNorm, SplitLinear, batch_norm_nd, conv_nd, weighted_sum
from .point_ops import cells, sample_points, sample_rows, upsample_like
from .routing import apply_keep_mask, draw_keep_mask


class DenseGate(nn.Module):
    """Gating convolutions ``k×k(×k)`` over the stacked experts: ``(B, N·d, *S) → (B, N, *S)`` logits."""

    def __init__(self, in_dim: int, widths: list[int], kernel: int, spatial_dims: int, norm: str, final_relu: bool):
        super().__init__()
        conv, bn = conv_nd(spatial_dims), batch_norm_nd(spatial_dims)
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            is_last = i == len(widths) - 1
            use_norm = norm == "batch" and (not is_last or final_relu)
            layers.append(conv(in_dim, width, kernel, padding=kernel // 2, bias=not use_norm))
            if use_norm:
                layers.append(bn(width))
            if not is_last or final_relu:
                layers.append(nn.ReLU(inplace=True))
            in_dim = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PointwiseGate(nn.Module):
    """1×1 gating MLP over the expert features ``[e_1 … e_N]`` (each ``(..., d)``) → logits ``(..., N)``.

    ``widths`` ends with N. The first layer is split per expert, so the N·d concatenation is never built.
    """

    def __init__(self, d: int, n: int, widths: list[int], norm: str, final_relu: bool):
        super().__init__()
        activated = len(widths) > 1 or final_relu
        self.first = SplitLinear([d] * n, widths[0], bias=not (norm == "batch" and activated))
        post: list[nn.Module] = []
        if activated:
            if norm == "batch":
                post.append(RowBatchNorm(widths[0]))
            post.append(nn.ReLU(inplace=True))
        self.post = nn.Sequential(*post)
        self.rest = ChannelMLP(widths[0], widths[1:], last_act=final_relu, norm=norm) if len(widths) > 1 else None

    def forward(self, feats: list[Tensor]) -> Tensor:
        x = self.post(self.first(feats))
        return self.rest(x) if self.rest is not None else x

    def on_map(self, maps: list[Tensor]) -> Tensor:
        """Channel-first maps ``[(B, d, *S)]`` → logits ``(B, N, *S)``."""
        return self([m.movedim(1, -1) for m in maps]).movedim(-1, 1)


class SMoE(nn.Module):
    """SMoE (``kind="smoe"``) or the plain multi-scale extractor without gating (``kind="plain"``).

    Args:
        expert_channels: channels C_k of the backbone's expert maps, coarse to fine.
        cfg: widths, gating form and routing (:class:`morse.config.SMoEConfig`).
        spatial_dims: 2 or 3.
    """

    def __init__(self, expert_channels: list[int], cfg: SMoEConfig, spatial_dims: int):
        super().__init__()
        self.cfg = cfg
        self.spatial_dims = spatial_dims
        self.num_experts = n = len(expert_channels)
        d = cfg.expert_dim
        self.experts = nn.ModuleList(
            ChannelMLP(c, [d] * cfg.expert_layers, last_act=cfg.expert_last_act) for c in expert_channels
        )
        self.gate: nn.Module | None = None
        if cfg.kind == "smoe":
            widths = [*cfg.gating_widths, n]
            if cfg.gating == "dense":
                self.gate = DenseGate(
                    n * d, widths, cfg.gating_kernel, spatial_dims, cfg.gating_norm, cfg.gating_final_relu
                )
            else:
                self.gate = PointwiseGate(d, n, widths, cfg.gating_norm, cfg.gating_final_relu)
        fused_dim = d if cfg.kind == "smoe" else n * d
        self.fusion = ChannelMLP(fused_dim, cfg.fusion_widths) if cfg.fusion_widths else nn.Identity()
        fusion_out = cfg.fusion_widths[-1] if cfg.fusion_widths else fused_dim
        self.dropout = nn.Dropout(cfg.fusion_dropout) if cfg.fusion_dropout > 0 else nn.Identity()
        self.project = nn.Linear(fusion_out, cfg.out_dim)
        self.out_dim = cfg.out_dim
        self.generator: torch.Generator | None = None  # set by the trainer for reproducible routing

    @property
    def sparse_exact(self) -> bool:
        """True when :meth:`at_points` needs no full-resolution map (point-wise gating or no gating)."""
        return self.cfg.kind == "plain" or self.cfg.gating == "pointwise"

    # -- shared pieces -------------------------------------------------------------------------------------------------

    def _route(self, weights: Tensor, dim: int) -> Tensor:
        if not self.training:
            return weights
        keep = draw_keep_mask(weights.shape[0], self.num_experts, self.cfg.routing, self.generator)
        return apply_keep_mask(weights, keep, self.cfg.routing.renormalize, dim=dim)

    def _fuse(self, fused: Tensor) -> Tensor:
        """Fusion MLP and projection on channels-last ``(..., d)``."""
        return self.project(self.dropout(self.fusion(fused)))

    # -- dense evaluation (reference / paper presets, display, and the sparse evaluator's ground truth) ----------------

    def dense(self, experts: list[Tensor], size: tuple[int, ...]) -> tuple[Tensor, Tensor | None]:
        """Full-grid evaluation: ``x_out (B, out, *size)`` and gate weights ``(B, N, *size)`` (None for ``plain``)."""
        feats = [upsample_like(mlp.on_map(e), size) for mlp, e in zip(self.experts, experts)]
        if self.cfg.kind == "plain":
            return self._fuse(torch.cat(feats, dim=1).movedim(1, -1)).movedim(-1, 1), None
        logits = self.gate(torch.cat(feats, dim=1)) if self.cfg.gating == "dense" else self.gate.on_map(feats)
        weights = self._route(torch.softmax(logits.float(), dim=1).to(feats[0].dtype), dim=1)
        fused = weighted_sum([f.movedim(1, -1) for f in feats], weights.movedim(1, -1))
        return self._fuse(fused).movedim(-1, 1), weights

    # -- point evaluation ----------------------------------------------------------------------------------------------

    def prepare(self, experts: list[Tensor], max_points: int) -> list[tuple[Tensor, tuple[int, ...], bool]]:
        """Per expert: its cells as rows ``(B, N_k, ·)``, its grid size, and whether the expert MLP body was already
        applied (when the whole native map is cheaper than ``2^n·max_points`` corner evaluations). Reusable across
        refinement rounds and the gate map of one forward pass."""
        prepared = []
        for k, expert in enumerate(experts):
            sizes = tuple(expert.shape[2:])
            body, _ = self.experts[k].split_affine_tail()
            native = math.prod(sizes) <= (2**self.spatial_dims) * max_points
            rows = cells(expert)
            prepared.append((body(rows) if native else rows, sizes, native))
        return prepared

    def expert_at_points(
        self, k: int, prepared: tuple[Tensor, tuple[int, ...], bool], coords: Tensor, batch: Tensor | None = None
    ) -> Tensor:
        """MLP_k(E_k) interpolated at ``coords (B, P, n)`` → ``(B, P, d)``, exactly, by the cheaper route
        (``batch``: one ragged point set, see :func:`~morse.heads.point_ops.sample_rows`)."""
        rows, sizes, native = prepared
        body, last = self.experts[k].split_affine_tail()
        values = sample_rows(rows, sizes, coords, fn=None if native else body, batch=batch)
        # an affine last layer commutes with interpolation (corner weights sum to 1): apply it once per point
        return last(values)

    def _point_features(self, experts, coords, prepared, batch=None) -> list[Tensor]:
        prepared = prepared or self.prepare(experts, coords.shape[1])
        return [self.expert_at_points(k, p, coords, batch) for k, p in enumerate(prepared)]

    def _mix_points(self, feats: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        if self.cfg.kind == "plain":
            return torch.cat(feats, dim=-1), None
        weights = self._route(torch.softmax(self.gate(feats).float(), dim=-1).to(feats[0].dtype), dim=-1)
        return weighted_sum(feats, weights), weights

    def at_points(
        self,
        experts: list[Tensor],
        coords: Tensor,
        size: tuple[int, ...],
        prepared: list | None = None,
        batch: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``x_out (B, P, out)`` and weights ``(B, P, N)`` at ``coords (B, P, n)``; ``size`` is the target grid.
        ``prepared`` (from :meth:`prepare`) skips re-preparing the experts. ``batch (P,)``: ``coords (1, P, n)`` is
        one ragged point set, point ``p`` on sample ``batch[p]`` (outputs ``(1, P, ·)``)."""
        if not self.sparse_exact:
            x_out, weights = self.dense(experts, size)
            gates = sample_points(weights, coords, batch=batch) if weights is not None else None
            return sample_points(x_out, coords, batch=batch), gates
        fused, weights = self._mix_points(self._point_features(experts, coords, prepared, batch))
        return self._fuse(fused), weights

    def gate_weights_on_grid(
        self, experts: list[Tensor], grid: tuple[int, ...], prepared: list | None = None
    ) -> Tensor | None:
        """Gate weights ``(B, N, *grid)`` at the cell centres of a ``grid`` covering the target extent.

        Point-wise gating only. The gate's first layer is linear in each resized expert feature, and so is the
        expert's affine last layer, and resizing is linear: so ``W_k·last_k(resize(body_k(E_k)))`` is computed as
        ``resize((W_k·last_k)(body_k(E_k)))``, one composed ``d×d`` product per expert, at the expert's native
        resolution when that is coarser than ``grid`` (else after resizing the body's output to ``grid``). The
        pre-activations of all experts are summed on the grid and the rest of the gate runs once per grid cell.
        Same function as :meth:`gate_weights_at_points` at the grid's cell centres (up to float rounding).
        ``prepared`` (from :meth:`prepare`) reuses bodies already evaluated on native maps.
        """
        if self.cfg.kind == "plain":
            return None
        if not self.sparse_exact:
            raise ValueError("gate_weights_on_grid needs point-wise gating")
        first = self.gate.first
        total = None
        cells_on_grid = math.prod(grid)
        for k, expert in enumerate(experts):
            body, last = self.experts[k].split_affine_tail()
            weight, bias = _compose_affine(first.parts[k].weight, last)
            reuse = prepared is not None and prepared[k][2]  # body already applied to every native cell
            rows = prepared[k][0] if reuse else body(cells(expert))  # (B, N_k, d')
            b, sizes = expert.shape[0], tuple(expert.shape[2:])
            if math.prod(sizes) <= cells_on_grid:
                z = F.linear(rows, weight, bias)  # (B, N_k, g) at native resolution, then resized
                z = cells(upsample_like(_rows_to_map(z, b, sizes), grid))
            else:
                z = F.linear(cells(upsample_like(_rows_to_map(rows, b, sizes), grid)), weight, bias)
            total = z if total is None else total.add_(z)
        if first.parts[0].bias is not None:
            total = total + first.parts[0].bias
        x = self.gate.post(total)
        logits = self.gate.rest(x) if self.gate.rest is not None else x
        weights = torch.softmax(logits.float(), dim=-1).to(total.dtype)  # (B, G, N)
        return weights.transpose(1, 2).reshape(weights.shape[0], weights.shape[2], *grid)

    def gate_weights_at_points(
        self, experts: list[Tensor], coords: Tensor, size: tuple[int, ...], prepared: list | None = None
    ) -> Tensor | None:
        """Only the gate weights ``(B, P, N)`` (skips the fusion MLP); None for the plain extractor."""
        if self.cfg.kind == "plain":
            return None
        if not self.sparse_exact:
            return sample_points(self.dense(experts, size)[1], coords)
        return self._mix_points(self._point_features(experts, coords, prepared))[1]


def _compose_affine(outer: Tensor, inner: nn.Module) -> tuple[Tensor, Tensor | None]:
    """Weight and bias of ``x ↦ outer·inner(x)`` for an affine ``inner`` (a Linear, or the identity)."""
    if isinstance(inner, nn.Linear):
        bias = outer @ inner.bias if inner.bias is not None else None
        return outer @ inner.weight, bias
    return outer, None


def _rows_to_map(rows: Tensor, batch: int, sizes: tuple[int, ...]) -> Tensor:
    """Rows ``(B, N, C)`` as a channel-first map ``(B, C, *S)`` (a channels-last view, no copy)."""
    return rows.transpose(1, 2).reshape(batch, rows.shape[-1], *sizes)
