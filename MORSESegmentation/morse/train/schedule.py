"""Learning-rate schedule: polynomial decay from ``lr`` to ``end_lr`` over the iterations.

Not torch's ``PolynomialLR``: that one decays to 0 (they agree when ``end_lr`` is 0, which a test checks), while the
released MORSE code decays to a floor (``reference`` preset: 0.01 → 0.001). A function of the iteration, rather than
a scheduler object, also needs no state in the checkpoint: a resumed run recomputes the rate from its step.
"""

from __future__ import annotations


def poly_lr(step: int, total: int, lr: float, end_lr: float, power: float) -> float:
    """lr_t = (lr − end_lr)·(1 − t/T)^power + end_lr for t in [0, T] (t is clamped to that range)."""
    frac = min(max(step, 0), total) / max(total, 1)
    return (lr - end_lr) * (1.0 - frac) ** power + end_lr
