"""Voxel uncertainty options, each a map in [0, 1] (higher: more likely mislabelled), from a :class:`SoftBatch`.

Options (``OPTIONS``; *cost* is what they need beyond the refined run):

- ``margin``: 1 − (p₁ − p₂) of the *coarse* softmax, the map MORSE wrote before these options (free).
- ``refined-margin``: the same on the refined logits (coarse logits where the head did not re-predict) (free).
- ``refined-entropy``: entropy of the refined softmax divided by log C (free).
- ``disagreement``: total-variation distance ½·Σ|p_coarse − p_refined| between the two heads (0 where the head
  did not re-predict) (free).
- ``entropy+disagreement``: the larger of ``refined-entropy`` and ``disagreement`` (free).
- ``mc-entropy``: entropy of the mean softmax over the routing samples (rendered cells) (Monte-Carlo).
- ``mc-mutual``: ``refined-entropy`` plus the mutual information between label and routing draw, over log C
  (Monte-Carlo).
- ``flip-entropy``: entropy of the mean of the plain and the mirrored refined softmax (one more network pass).
- ``flip-disagreement``: the larger of ``refined-entropy`` and ½·Σ|p − p_mirrored| (one more network pass).

Every option divides logits by the calibration ``temperature`` first (1: uncalibrated); ``margin`` and
``disagreement`` use it too so that all options see the same probabilities.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .names import FLIP, FREE, MONTE_CARLO, OPTIONS
from .passes import SoftBatch

__all__ = ["FLIP", "FREE", "MONTE_CARLO", "OPTIONS", "cost_ratios", "from_logits", "option_map"]
DEFAULT_OPTION = "refined-entropy"


def probabilities(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Softmax over the class axis 1 of ``logits / temperature`` (float32)."""
    return torch.softmax(logits.float() / float(temperature), dim=1)


def margin(probs: Tensor) -> Tensor:
    """1 − (p₁ − p₂) over the class axis 1: ``(B, C, *S) → (B, *S)``."""
    top = probs.topk(2, dim=1).values
    return 1.0 - (top[:, 0] - top[:, 1])


def entropy(probs: Tensor) -> Tensor:
    """Entropy over the class axis 1 divided by log C (0: certain, 1: uniform): ``(B, C, *S) → (B, *S)``."""
    h = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)
    return h / math.log(probs.shape[1])


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """½·Σ_c |p_c − q_c| over the class axis 1, in [0, 1]."""
    return 0.5 * (p - q).abs().sum(1)


def needs(option: str) -> tuple[int, bool]:
    """``(monte_carlo, flip)`` the option needs: whether it uses routing samples, and the mirrored pass."""
    if option not in OPTIONS:
        raise ValueError(f"unknown uncertainty option {option!r}; known: {', '.join(OPTIONS)}")
    return int(option in MONTE_CARLO), option in FLIP


def option_map(option: str, batch: SoftBatch, temperature: float = 1.0) -> Tensor:
    """The map ``(B, *S)`` in [0, 1] of ``option`` (see the module docstring) for one batch.

    Raises:
        ValueError: an unknown option, or one whose pass was not run (no Monte-Carlo samples / no mirrored pass).
    """
    needs(option)
    if option == "margin":
        return margin(probabilities(batch.coarse, temperature))
    refined = probabilities(batch.refined, temperature)
    if option == "refined-margin":
        return margin(refined)
    if option == "refined-entropy":
        return entropy(refined)
    if option in ("disagreement", "entropy+disagreement"):
        tv = total_variation(probabilities(batch.coarse, temperature), refined)
        return tv if option == "disagreement" else torch.maximum(tv, entropy(refined))
    if option in MONTE_CARLO:
        if batch.mc_probs is None:
            raise ValueError(f"{option} needs Monte-Carlo routing samples (soft_pass(samples > 0))")
        if option == "mc-entropy":
            return entropy(batch.mc_probs)
        mutual = batch.mc_mutual / math.log(refined.shape[1])
        return (entropy(refined) + mutual).clamp_(0, 1)
    if batch.flip_refined is None:
        raise ValueError(f"{option} needs the mirrored pass (soft_pass(flip=True))")
    mirrored = probabilities(batch.flip_refined, temperature)
    if option == "flip-entropy":
        return entropy(0.5 * (refined + mirrored))
    return torch.maximum(total_variation(refined, mirrored), entropy(refined))


def from_logits(coarse: Tensor, refined: Tensor, rectified: Tensor | None, option: str, temperature: float) -> Tensor:
    """A free option's map ``(B, 1, *S)`` from the logits of :class:`morse.model.Prediction` (what the inference
    pipeline stores). A refined grid finer than the coarse one (an up-sampling head) gets the coarse logits
    resized to it first."""
    if tuple(refined.shape[2:]) != tuple(coarse.shape[2:]):
        mode = "bilinear" if coarse.dim() == 4 else "trilinear"
        coarse = torch.nn.functional.interpolate(coarse.float(), size=refined.shape[2:], mode=mode)
    if option not in FREE:
        raise ValueError(f"{option!r} needs extra network passes; the pipeline computes only {', '.join(FREE)}")
    batch = SoftBatch(coarse=coarse, refined=refined, rectified=rectified)
    return option_map(option, batch, temperature).unsqueeze(1).clamp_(0, 1)


def cost_ratios(seconds: dict[str, float], map_seconds: dict[str, float]) -> dict[str, float]:
    """Each option's cost over the refined run's network (backbone + rendering head), as a ratio.

    ``seconds``: the parts of :func:`morse.uncertainty.passes.soft_pass` (``"network"``, and ``"mc"`` / ``"flip"``
    when those passes ran); ``map_seconds``: the seconds of each option's :func:`option_map`."""
    net = seconds["network"]
    out = {}
    for option in OPTIONS:
        extra = map_seconds[option]
        if option in MONTE_CARLO:
            extra += seconds["mc"]
        if option in FLIP:
            extra += seconds["flip"]
        out[option] = (net + extra) / net
    return out
