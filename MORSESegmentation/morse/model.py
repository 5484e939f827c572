"""The MORSE model: a backbone, the SMoE point features and the implicit rendering head.

Training (:meth:`MorseModel.forward`) returns the coarse logits of the backbone's own head and the rendering head's
logits at points chosen by uncertainty. Inference (:meth:`MorseModel.predict`) replaces the logits of the most
uncertain cells by the head's predictions, a configurable number of rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from .config import ModelConfig
from .heads.point_head import PointHead
from .heads.point_ops import (
    gather_cells,
    grid_coords,
    indices_to_coords,
    most_uncertain_indices,
    sample_points,
    scatter_cells_,
    select_training_points,
    uncertainty,
)
from .heads.smoe import SMoE
from .nets import build_backbone
from .timing import stage


@dataclass
class Prediction:
    """Outputs of :meth:`MorseModel.predict` for a batch on the model grid ``S``.

    coarse / refined: logits ``(B, C, *S)`` (``refined`` is on ``S·2^steps`` when the head upsamples).
    rectified: ``(B, *S_refined)`` bool, cells whose logits the head replaced.
    gating: ``(B, N, *S/stride)`` gate weights on a strided grid, or None.
    """

    coarse: Tensor
    refined: Tensor
    rectified: Tensor | None
    gating: Tensor | None


class MorseModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone, cfg.num_classes)
        self.spatial_dims = self.backbone.spatial_dims
        self.features: SMoE | None = None
        self.head: PointHead | None = None
        if cfg.has_point_head:
            self.features = SMoE(self.backbone.expert_channels, cfg.features, self.spatial_dims)
            self.head = PointHead(self.features.out_dim, cfg.num_classes, self.spatial_dims, cfg.point_head)
        self.generator: torch.Generator | None = None

    @property
    def num_experts(self) -> int:
        return self.backbone.num_experts

    @property
    def size_multiple(self) -> int:
        return getattr(self.backbone, "size_multiple", 1)

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Random source of point selection and expert routing (makes training reproducible)."""
        self.generator = generator
        if self.features is not None:
            self.features.generator = generator

    # -- training ------------------------------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Training pass on images ``(B, in, *S)``.

        Returns ``coarse`` ``(B, C, *S)``; with a point head also ``point_logits`` ``(B, P, C)``, ``point_coords``
        ``(B, P, n)`` and ``point_gates`` ``(B, P, N)`` (SMoE only).
        """
        out = self.backbone(x)
        result = {"coarse": out.logits}
        if self.head is None:
            return result
        pc = self.cfg.point_head
        coords = select_training_points(
            out.logits.detach(), pc.train_points, pc.oversample, pc.importance, self.generator
        )
        size = tuple(out.logits.shape[2:])
        fine, gates = self.features.at_points(out.experts, coords, size)
        coarse_src = out.logits.detach() if pc.detach_coarse else out.logits
        coarse_pts = sample_points(coarse_src, coords)
        result["point_logits"] = self.head(fine, coarse_pts, coords)
        result["point_coords"] = coords
        if gates is not None:
            result["point_gates"] = gates
        return result

    # -- inference -----------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(
        self,
        x: Tensor,
        refine: bool = True,
        gating_stride: int | None = None,
        timings: dict[str, float] | None = None,
    ) -> Prediction:
        """Inference on ``(B, in, *S)``: coarse and refined logits, rectified cells, optional gate maps.

        Each subdivision round ranks the cells of the *current* logits by uncertainty, evaluates the head at the
        ``test_points`` most uncertain cell centres with the *original* coarse logits there, and overwrites exactly
        those cells. With ``upsample`` the current logits are first doubled in size (PointRend); otherwise all rounds
        stay on the input grid. ``timings`` (optional) accumulates seconds for "backbone", "refine" and "gating".
        """
        with stage(timings, "backbone", x.device):
            out = self.backbone(x)
        coarse = out.logits
        refined, rectified, prepared = coarse, None, None
        if refine and self.head is not None:
            with stage(timings, "refine", x.device):
                prepared = self.features.prepare(out.experts, self.cfg.point_head.test_points)
                refined, rectified = self._refine(coarse, out.experts, prepared)
        gating = None
        if gating_stride and self.features is not None and self.features.cfg.kind == "smoe":
            with stage(timings, "gating", x.device):
                gating = self.gate_map(out.experts, tuple(coarse.shape[2:]), gating_stride, prepared)
        return Prediction(coarse=coarse, refined=refined, rectified=rectified, gating=gating)

    def _refine(self, coarse: Tensor, experts: list[Tensor], prepared: list | None = None) -> tuple[Tensor, Tensor]:
        pc = self.cfg.point_head
        size = tuple(coarse.shape[2:])
        current = coarse
        rectified = torch.zeros(coarse.shape[0], *size, dtype=torch.bool, device=coarse.device)
        scores = None  # uncertainty of `current` per cell, kept up to date on a fixed grid
        for _ in range(pc.subdivision_steps):
            if pc.upsample:
                size = tuple(2 * s for s in current.shape[2:])
                mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
                current = F.interpolate(current, size=size, mode=mode, align_corners=False)
                rectified = F.interpolate(rectified[:, None].float(), size=size, mode="nearest")[:, 0] > 0
                idx = most_uncertain_indices(current, pc.test_points)
            else:
                if scores is None:
                    scores = uncertainty(current).flatten(1)
                    current = current.clone()  # one copy, then updated in place round after round
                idx = scores.topk(min(pc.test_points, scores.shape[1]), dim=1).indices
            if not pc.upsample:
                # On a fixed grid a cell chosen again would get exactly the value it already has (same centre, same
                # features, same original coarse logits): evaluate only the newly chosen cells.
                idx = _new_cells_only(idx, rectified.reshape(rectified.shape[0], -1))
                if idx is None:
                    break
            coords = indices_to_coords(idx, size)
            fine, _ = self.features.at_points(experts, coords, tuple(coarse.shape[2:]), prepared)
            if current.shape[2:] == coarse.shape[2:]:
                coarse_pts = gather_cells(coarse, idx)  # exact at cell centres, no interpolation needed
            else:
                coarse_pts = sample_points(coarse, coords)
            point_logits = self.head(fine, coarse_pts, coords)
            current = scatter_cells_(current, idx, point_logits)
            if scores is not None:  # only the re-predicted cells changed: the same top-2 on their new logits
                scores.scatter_(1, idx, uncertainty(point_logits.to(current.dtype), dim=-1))
            rectified.view(rectified.shape[0], -1).scatter_(1, idx, True)
        return current, rectified

    def gate_map(
        self, experts: list[Tensor], size: tuple[int, ...], stride: int, prepared: list | None = None
    ) -> Tensor:
        """Gate weights ``(B, N, *ceil(S/stride))`` at the centres of ``stride``-sized super-cells (point evaluator).

        When ``stride`` divides the grid, the centres are exactly where ``interpolate(align_corners=False)`` samples a
        ``S/stride`` grid, so the experts are interpolated with the dense kernels instead of per-point gathers (same
        values, several times faster); otherwise every centre goes through the point evaluator.
        """
        if self.features.sparse_exact and all(s % stride == 0 for s in size):
            return self.features.gate_weights_on_grid(experts, tuple(s // stride for s in size), prepared)
        coords, grid_shape = grid_coords(size, stride, device=experts[0].device)
        coords = coords.expand(experts[0].shape[0], -1, -1)
        if prepared is not None and any(not native for _, _, native in prepared):
            prepared = None  # prepared for fewer points than the grid has: let the evaluator choose again
        weights = self.features.gate_weights_at_points(experts, coords, size, prepared)  # (B, P, N)
        return weights.transpose(1, 2).reshape(weights.shape[0], weights.shape[2], *grid_shape)


def _new_cells_only(idx: Tensor, done: Tensor) -> Tensor | None:
    """Indices ``(B, N)`` reduced to those not yet ``done (B, cells)``, padded per row by repeating a new index.

    Returns None when no row has a new cell. Repeats are harmless: the same cell gets the same value twice.
    """
    is_new = ~done.gather(1, idx)
    counts = is_new.sum(1)
    width = int(counts.max())
    if width == 0:
        return None
    if width == idx.shape[1]:
        return idx
    # stable order: new cells first, in uncertainty order
    order = torch.argsort((~is_new).to(torch.int8), dim=1, stable=True)[:, :width]
    picked = idx.gather(1, order)
    pad = torch.arange(width, device=idx.device).unsqueeze(0) >= counts.unsqueeze(1)
    return torch.where(pad & (counts > 0).unsqueeze(1), picked[:, :1], picked)


def point_labels(labels: Tensor, coords: Tensor) -> Tensor:
    """Integer labels ``(B, *S)`` sampled (nearest) at ``coords (B, P, n)`` → ``(B, P)`` long."""
    return sample_points(labels.unsqueeze(1).float(), coords, mode="nearest")[..., 0].round().long()
