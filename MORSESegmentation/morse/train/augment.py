"""Batch augmentation on CPU tensors: flips, 90° rotations, small rotations and scaling, intensity jitter.

Images are interpolated bilinearly (trilinearly), labels by nearest neighbour, with the same random transform per
sample. Every draw comes from an explicit ``torch.Generator`` so training runs are reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from ..config import AugmentConfig


def _chance(p: float, n: int, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g) < p


def augment_batch(
    images: Tensor, labels: Tensor, cfg: AugmentConfig, g: torch.Generator, hu_scale: float | None = None
) -> tuple[Tensor, Tensor]:
    """``images (B, C, *S)`` float, ``labels (B, *S)`` long → augmented copies.

    In-plane operations (rot90, rotation, scaling) act on the last two axes (the axial plane of a reoriented volume).
    rot90 is only applied when the plane is square, so batch shapes never change. ``hu_scale`` (normalised units per
    HU, i.e. 1 / window width) enables the per-structure contrast simulation; the result is clipped to the window
    [0, 1] again, as the preprocessing would have done on a real enhanced scan.
    """
    images, labels = images.clone(), labels.clone()
    b = images.shape[0]
    if cfg.class_shift > 0 and cfg.class_shift_hu:
        if hu_scale is None:
            raise ValueError("class_shift_hu needs the CT window normalisation (intensity.mode: window)")
        enhance = _chance(cfg.class_shift, b, g)
        for i in torch.nonzero(enhance).flatten().tolist():
            for value, (low, high) in sorted(cfg.class_shift_hu.items()):
                offset = (low + float(torch.rand(1, generator=g)) * (high - low)) * hu_scale
                images[i][:, labels[i] == int(value)] += offset
        images[enhance] = images[enhance].clamp(0.0, 1.0)
    spatial = images.dim() - 2
    for axis in range(spatial):
        flip = _chance(cfg.flip / max(1, spatial), b, g)
        if flip.any():
            images[flip] = images[flip].flip(2 + axis)
            labels[flip] = labels[flip].flip(1 + axis)
    if images.shape[-1] == images.shape[-2]:
        rot = _chance(cfg.rot90, b, g)
        for i in torch.nonzero(rot).flatten().tolist():
            k = int(torch.randint(1, 4, (1,), generator=g))
            images[i] = images[i].rot90(k, dims=(-2, -1))
            labels[i] = labels[i].rot90(k, dims=(-2, -1))
    rotate = _chance(cfg.rotate, b, g)
    scale = _chance(cfg.scale, b, g)
    if (rotate | scale).any():
        angles = (torch.rand(b, generator=g) * 2 - 1) * math.radians(cfg.rotate_degrees) * rotate
        lo, hi = cfg.scale_range
        factors = torch.where(scale, lo + torch.rand(b, generator=g) * (hi - lo), torch.ones(b))
        images, labels = _affine_inplane(images, labels, angles, factors)
    jitter = _chance(cfg.intensity, b, g)
    if jitter.any():
        shift = (torch.rand(b, generator=g) * 2 - 1) * cfg.intensity_shift
        gain = 1 + (torch.rand(b, generator=g) * 2 - 1) * cfg.intensity_scale
        view = (b,) + (1,) * (images.dim() - 1)
        shift, gain = (shift * jitter).reshape(view), torch.where(jitter, gain, torch.ones(b)).reshape(view)
        images = images * gain + shift
    noisy = _chance(cfg.noise, b, g)
    if noisy.any():
        view = (b,) + (1,) * (images.dim() - 1)
        images = images + torch.randn(images.shape, generator=g) * cfg.noise_std * noisy.reshape(view)
    return images, labels


def _affine_inplane(images: Tensor, labels: Tensor, angles: Tensor, factors: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate by ``angles`` (radians) and zoom by ``factors`` in the last two axes; identity where angle=0, factor=1."""
    b = images.shape[0]
    spatial = images.dim() - 2
    cos, sin = torch.cos(angles) / factors, torch.sin(angles) / factors
    theta = torch.zeros(b, spatial, spatial + 1)
    for axis in range(spatial):
        theta[:, axis, axis] = 1.0
    # affine_grid's first rows act on the fastest axes (x = last, y = second to last)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    lab = F.grid_sample(labels.unsqueeze(1).float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    return images, lab[:, 0].round().long()
