"""Losses of MORSE: supervised CE + Dice on the coarse logits, point cross-entropy on the rendered points, and the
adaptive weight adjustment (AWA) schedule that brings the rendering loss in during the second half of training."""

from __future__ import annotations

import torch.nn.functional as F  # noqa: N812
from monai.losses import DiceCELoss
from torch import Tensor, nn

from .config import LossConfig
from .model import point_labels


def awa_weight(step: int, total_steps: int, cfg: LossConfig) -> float:
    """λ_t of the rendering loss at iteration ``step`` (0-based) of ``total_steps``.

    ``paper``: λ_t = rend_weight · 1{t > T/2} · (t − T/2) / T (so at most rend_weight / 2);
    ``reference``: the released code's ramp without the rend_weight factor (at most 0.5);
    ``constant``: λ_t = rend_weight.
    """
    if cfg.awa == "constant":
        return cfg.rend_weight
    half = total_steps / 2
    ramp = (step - half) / total_steps if step > half else 0.0
    return ramp * (cfg.rend_weight if cfg.awa == "paper" else 1.0)


class MorseLoss(nn.Module):
    """L_total = sup_scale·(ce·CE + dice·Dice)(coarse, y) + λ_t·CE(point logits, y at points)."""

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg
        self.supervised = DiceCELoss(
            to_onehot_y=True,
            softmax=True,
            lambda_ce=cfg.ce_weight,
            lambda_dice=cfg.dice_weight,
            smooth_nr=1e-5,
            batch=cfg.dice_batch,
        )

    def forward(self, outputs: dict[str, Tensor], labels: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        """``labels (B, *S)`` integer. Returns the total and its parts (for logging)."""
        coarse = outputs["coarse"].float()
        sup = self.cfg.sup_scale * self.supervised(coarse, labels.unsqueeze(1))
        parts = {"sup": sup}
        total = sup
        if "point_logits" in outputs:
            target = point_labels(labels, outputs["point_coords"])
            point_logits = outputs["point_logits"].float()  # (B, P, C)
            rend = F.cross_entropy(point_logits.reshape(-1, point_logits.shape[-1]), target.reshape(-1))
            weight = awa_weight(step, total_steps, self.cfg)
            total = total + weight * rend
            parts["rend"] = rend
            parts["rend_weight"] = rend.new_tensor(weight)
        parts["total"] = total
        return parts
