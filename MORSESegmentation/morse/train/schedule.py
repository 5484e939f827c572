"""Learning-rate schedule: polynomial decay from ``lr`` to ``end_lr`` over the iterations."""

from __future__ import annotations


def poly_lr(step: int, total: int, lr: float, end_lr: float, power: float) -> float:
    """lr_t = (lr − end_lr)·(1 − t/T)^power + end_lr for t in [0, T]."""
    frac = min(max(step, 0), total) / max(total, 1)
    return (lr - end_lr) * (1.0 - frac) ** power + end_lr
