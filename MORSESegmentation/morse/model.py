"""The MORSE model: a backbone, the SMoE point features and the implicit rendering head.

Training (:meth:`MorseModel.forward`) returns the coarse logits of the backbone's own head and the rendering head's
logits at points chosen by uncertainty. Inference (:meth:`MorseModel.predict`) replaces the logits of the most
uncertain cells by the head's predictions, a configurable number of rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from .config import ModelConfig
from .heads.point_head import PointHead
from .heads.point_ops import (
    gather_ragged,
    grid_coords,
    indices_to_coords,
    most_uncertain_indices,
    sample_points,
    scatter_cells_,
    scatter_ragged_,
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
        render_margin: float | None = None,
        render_within: Tensor | None = None,
    ) -> Prediction:
        """Inference on ``(B, in, *S)``: coarse and refined logits, rectified cells, optional gate maps.

        Each subdivision round ranks the cells of the *current* logits by uncertainty, evaluates the head at the
        ``test_points`` most uncertain cell centres with the *original* coarse logits there, and overwrites exactly
        those cells. With ``upsample`` the current logits are first doubled in size (PointRend); otherwise all rounds
        stay on the input grid. ``timings`` (optional) accumulates seconds for "backbone", "refine" and "gating".

        Adaptive budget (fixed grid only): ``render_margin`` renders, of those ``test_points`` cells per sample, only
        the ones whose top-2 logit margin is below it, and ``render_within (B, *S)`` bool only the ones inside it (the
        body); a slice with no doubtful cell then costs no head evaluation at all.
        """
        with stage(timings, "backbone", x.device):
            out = self.backbone(x)
        coarse = out.logits
        refined, rectified, prepared = coarse, None, None
        if refine and self.head is not None:
            with stage(timings, "refine", x.device):
                prepared = self.features.prepare(out.experts, self.cfg.point_head.test_points)
                if self.cfg.point_head.upsample:
                    refined, rectified = self._refine_upsampling(coarse, out.experts, prepared)
                else:
                    refined, rectified = self._refine(coarse, out.experts, prepared, render_margin, render_within)
        gating = None
        if gating_stride and self.features is not None and self.features.cfg.kind == "smoe":
            with stage(timings, "gating", x.device):
                gating = self.gate_map(out.experts, tuple(coarse.shape[2:]), gating_stride, prepared)
        return Prediction(coarse=coarse, refined=refined, rectified=rectified, gating=gating)

    def _refine(
        self,
        coarse: Tensor,
        experts: list[Tensor],
        prepared: list | None = None,
        margin: float | None = None,
        within: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Rounds on the coarse grid: logits ``(B, C, *S)`` and rectified cells ``(B, *S)``.

        A cell chosen again in a later round would get exactly the value it already has (same centre, same
        features, same original coarse logits), so each round evaluates only its newly chosen cells; the cells of
        all samples go through the head as one ragged set, so samples with few doubtful cells pad nothing.
        """
        pc = self.cfg.point_head
        size = tuple(coarse.shape[2:])
        batch, num_cells = coarse.shape[0], math.prod(size)
        budget = min(pc.test_points, num_cells)
        current = coarse.clone()  # one copy, then updated in place round after round
        rectified = torch.zeros(batch, num_cells, dtype=torch.bool, device=coarse.device)
        scores = uncertainty(current).flatten(1)  # kept up to date: only re-predicted cells change
        allowed = None if within is None else within.reshape(batch, num_cells)
        for _ in range(pc.subdivision_steps):
            rows, cells_ = _chosen_cells(scores, rectified, budget, margin, allowed)
            if rows.numel() == 0:
                break
            coords = indices_to_coords(cells_[None], size)  # (1, P, n)
            fine, _ = self.features.at_points(experts, coords, size, prepared, batch=rows)
            coarse_pts = gather_ragged(coarse, rows, cells_)[None]  # exact at cell centres
            point_logits = self.head(fine, coarse_pts, coords)[0].to(current.dtype)  # (P, C)
            scatter_ragged_(current, rows, cells_, point_logits)
            scores[rows, cells_] = uncertainty(point_logits, dim=-1)
            rectified[rows, cells_] = True
        return current, rectified.view(batch, *size)

    def _refine_upsampling(
        self, coarse: Tensor, experts: list[Tensor], prepared: list | None = None
    ) -> tuple[Tensor, Tensor]:
        """PointRend's rounds: the current logits doubled in size each round, then the ``test_points`` most uncertain
        cells re-predicted → logits ``(B, C, *S·2^steps)`` and rectified cells."""
        pc = self.cfg.point_head
        current = coarse
        rectified = torch.zeros(coarse.shape[0], *coarse.shape[2:], dtype=torch.bool, device=coarse.device)
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        for _ in range(pc.subdivision_steps):
            size = tuple(2 * s for s in current.shape[2:])
            current = F.interpolate(current, size=size, mode=mode, align_corners=False)
            rectified = F.interpolate(rectified[:, None].float(), size=size, mode="nearest")[:, 0] > 0
            idx = most_uncertain_indices(current, pc.test_points)
            coords = indices_to_coords(idx, size)
            fine, _ = self.features.at_points(experts, coords, tuple(coarse.shape[2:]), prepared)
            point_logits = self.head(fine, sample_points(coarse, coords), coords)
            current = scatter_cells_(current, idx, point_logits)
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


def _chosen_cells(
    scores: Tensor, done: Tensor, budget: int, margin: float | None, allowed: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The cells one round renders, as a ragged set: sample ``rows (P,)`` and flat cell indices ``(P,)``.

    Of the ``budget`` most uncertain cells of each sample (``scores (B, cells)``, higher = less sure), those not yet
    ``done``, inside ``allowed`` and, with ``margin``, whose top-2 margin ``-score`` is below it.
    """
    doubtful = None if margin is None else scores > -margin
    if doubtful is not None and int(doubtful.sum(1).max()) <= budget:
        # every doubtful cell is among the budget's most uncertain: no ranking needed
        keep = doubtful & ~done
        if allowed is not None:
            keep &= allowed
        return keep.nonzero(as_tuple=True)
    top = scores.topk(budget, dim=1)
    keep = ~done.gather(1, top.indices)
    if doubtful is not None:
        keep &= top.values > -margin
    if allowed is not None:
        keep &= allowed.gather(1, top.indices)
    rows, ranks = keep.nonzero(as_tuple=True)
    return rows, top.indices[rows, ranks]


def point_labels(labels: Tensor, coords: Tensor) -> Tensor:
    """Integer labels ``(B, *S)`` sampled (nearest) at ``coords (B, P, n)`` → ``(B, P)`` long."""
    return sample_points(labels.unsqueeze(1).float(), coords, mode="nearest")[..., 0].round().long()
