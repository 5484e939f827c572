"""Network passes behind the uncertainty options, on one batch of model-grid slices (2D packs).

A *soft pass* runs the backbone once, the rendering head as :meth:`morse.model.MorseModel.predict` does, and then,
on request:

- **Monte-Carlo expert routing**: the head is evaluated again ``samples`` times at the rendered (rectified) cells,
  each time with the SMoE's stochastic expert dropping switched on, as in training (the method's own source of
  randomness: :mod:`morse.heads.routing`). The backbone and the prepared expert rows are reused, so a sample costs
  one point-feature gather and one head MLP over the rendered cells.
- **test-time flip**: the whole network on the left-right mirrored slices, mirrored back, with left/right organ
  channels swapped.

Shapes: ``x (B, 1, H, W)``; logits and probabilities ``(B, C, H, W)``; masks ``(B, H, W)``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from ..heads.point_ops import gather_cells, indices_to_coords


@dataclass
class SoftBatch:
    """What the uncertainty options are computed from, on the (padded) model grid.

    coarse / refined: logits ``(B, C, H, W)`` (refined = coarse outside the rectified cells).
    rectified: ``(B, H, W)`` bool, cells the rendering head re-predicted.
    mc_probs: ``(B, C, H, W)`` mean softmax over the routing samples at the rectified cells, the deterministic
        refined softmax elsewhere; None without Monte-Carlo.
    mc_mutual: ``(B, H, W)`` mutual information (nats) between the prediction and the routing draw at the rectified
        cells, 0 elsewhere; None without Monte-Carlo.
    flip_refined: ``(B, C, H, W)`` refined logits of the mirrored pass, mirrored back; None without flips.
    """

    coarse: Tensor
    refined: Tensor
    rectified: Tensor
    mc_probs: Tensor | None = None
    mc_mutual: Tensor | None = None
    flip_refined: Tensor | None = None


@contextmanager
def stochastic_routing(features, generator: torch.Generator | None = None):
    """Expert dropping on at inference: only the SMoE module's own ``training`` flag is set (its routing reads it),
    so batch norms, dropout and every other child stay in evaluation mode."""
    was, old_generator = features.training, features.generator
    features.training = True
    features.generator = generator
    try:
        yield
    finally:
        features.training = was
        features.generator = old_generator


def mirror_channels(labels_info) -> list[int]:
    """Class order after a left-right mirror: ``order[c]`` is the class whose channel ``c`` becomes (``*_left`` ↔
    ``*_right``, background and unpaired organs stay)."""
    names = {int(i.value): i.name for i in labels_info}
    by_name = {n: v for v, n in names.items()}
    order = list(range(max(names, default=0) + 1))
    for value, name in names.items():
        for a, b in (("_left", "_right"), ("_right", "_left")):
            if name.endswith(a) and name[: -len(a)] + b in by_name:
                order[value] = by_name[name[: -len(a)] + b]
    return order


def _rectified_indices(rectified: Tensor) -> Tensor | None:
    """Flat indices ``(B, N)`` of the rectified cells per sample, padded by repeating a sample's first index (a
    sample without any gets index 0, whose results are then ignored)."""
    flat = rectified.reshape(rectified.shape[0], -1)
    counts = flat.sum(1)
    width = int(counts.max()) if flat.numel() else 0
    if width == 0:
        return None
    # stable sort puts the rectified cells first, in index order
    order = torch.argsort((~flat).to(torch.int8), dim=1, stable=True)[:, :width]
    pad = torch.arange(width, device=flat.device).unsqueeze(0) >= counts.unsqueeze(1)
    return torch.where(pad, order[:, :1], order)


def _entropy(p: Tensor, dim: int = -1) -> Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim)


@torch.inference_mode()
def soft_pass(
    net,
    x: Tensor,
    samples: int = 0,
    flip: bool = False,
    mirror: list[int] | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    timings: dict[str, float] | None = None,
) -> SoftBatch:
    """One batch ``x (B, 1, H, W)`` through ``net`` (a 2D :class:`morse.model.MorseModel` with a rendering head).

    ``samples``: Monte-Carlo routing draws at the rectified cells (0: none); ``temperature`` divides the head's
    logits before the softmax of each draw. ``flip``: also the mirrored pass (``mirror``: the channel order from
    :func:`mirror_channels`; None keeps the channels). ``timings`` accumulates seconds per part ("network",
    "mc", "flip") when given.
    """
    import time

    def tick(key, t0):
        if timings is not None:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    out = net.backbone(x)
    coarse = out.logits
    if net.head is None:
        raise ValueError("the model has no rendering head: no soft pass beyond its coarse logits")
    prepared = net.features.prepare(out.experts, net.cfg.point_head.test_points)
    # the same rounds as MorseModel.predict; called directly because the experts are needed again below
    refined, rectified = net._refine(coarse, out.experts, prepared)
    batch = SoftBatch(coarse=coarse, refined=refined, rectified=rectified)
    tick("network", t0)
    if samples > 0 and tuple(refined.shape) == tuple(coarse.shape):
        t0 = time.perf_counter()
        idx = _rectified_indices(rectified)
        probs = torch.softmax(refined.float() / temperature, dim=1)
        mutual = torch.zeros(rectified.shape, dtype=torch.float32, device=x.device)
        if idx is not None:
            size = tuple(coarse.shape[2:])
            coords = indices_to_coords(idx, size)
            coarse_pts = gather_cells(coarse, idx)
            total = None
            mean_entropy = None
            smoe = net.features
            # the experts' features at the points do not depend on the routing draw: computed once, only the
            # gating mix, the fusion and the head run per sample
            feats = smoe._point_features(out.experts, coords, prepared) if smoe.sparse_exact else None
            with stochastic_routing(smoe, generator):
                for _ in range(samples):
                    if feats is None:
                        fine, _ = smoe.at_points(out.experts, coords, size, prepared)
                    else:
                        fine = smoe._fuse(smoe._mix_points(feats)[0])
                    p = torch.softmax(net.head(fine, coarse_pts, coords).float() / temperature, dim=-1)
                    total = p if total is None else total + p
                    h = _entropy(p)
                    mean_entropy = h if mean_entropy is None else mean_entropy + h
            mean = total / samples
            mi = (_entropy(mean) - mean_entropy / samples).clamp_min(0)
            flat = probs.flatten(2)  # (B, C, cells): a view, scattered in place
            flat.scatter_(2, idx.unsqueeze(1).expand(-1, flat.shape[1], -1), mean.transpose(1, 2))
            mutual.view(mutual.shape[0], -1).scatter_(1, idx, mi)
        batch.mc_probs, batch.mc_mutual = probs, mutual
        tick("mc", t0)
    if flip:
        t0 = time.perf_counter()
        mirrored = net.predict(x.flip(-1), refine=True).refined.flip(-1)
        if mirror is not None:
            mirrored = mirrored[:, mirror]
        batch.flip_refined = mirrored
        tick("flip", t0)
    return batch
