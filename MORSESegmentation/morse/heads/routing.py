"""Stochastic expert routing: dropping experts' gate weights at training time.

Two forms exist because the MORSE paper and its released code disagree (see the reference analysis, §2 and §7.1):
the paper drops each expert with a Bernoulli draw; the code drops a uniformly random number of whole experts for the
whole batch and never renormalises. Both are implemented; neither runs in eval mode.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import RoutingConfig


def draw_keep_mask(
    batch: int, num_experts: int, cfg: RoutingConfig, generator: torch.Generator | None = None
) -> Tensor | None:
    """A keep mask ``(B, N)`` of 0/1 floats for one training iteration, or ``None`` when nothing is dropped.

    ``bernoulli``: each entry is 0 with probability ``alpha`` (``alpha`` is the drop probability).
    ``uniform_count``: k ~ U{0..max_drop}; the same k distinct experts are 0 for every sample of the batch.
    """
    if cfg.mode == "none":
        return None
    gen_device = generator.device if generator is not None else "cpu"
    if cfg.probability < 1.0 and torch.rand((), generator=generator, device=gen_device).item() >= cfg.probability:
        return None
    if cfg.mode == "bernoulli":
        u = torch.rand(batch, num_experts, generator=generator, device=gen_device)
        return (u >= cfg.alpha).float()
    if cfg.mode == "uniform_count":
        max_drop = num_experts - 1 if cfg.max_drop is None else min(cfg.max_drop, num_experts)
        k = int(torch.randint(0, max_drop + 1, (), generator=generator, device=gen_device).item())
        keep = torch.ones(batch, num_experts)
        dropped = torch.randperm(num_experts, generator=generator, device=gen_device)[:k]
        keep[:, dropped.cpu()] = 0.0
        return keep
    raise ValueError(f"unknown routing mode {cfg.mode!r}")


def apply_keep_mask(weights: Tensor, keep: Tensor | None, renormalize: bool, dim: int = 1) -> Tensor:
    """Gate weights (batch first, experts on axis ``dim``) with dropped experts zeroed, and the rest rescaled to sum
    to 1 if asked. A sample whose experts are all dropped keeps all-zero weights (a zero fused feature)."""
    if keep is None:
        return weights
    dim = dim % weights.dim()
    shape = [1] * weights.dim()
    shape[0], shape[dim] = keep.shape
    mask = keep.to(device=weights.device, dtype=weights.dtype).reshape(shape)
    weights = weights * mask
    if renormalize:
        weights = weights / weights.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    return weights
