"""Resampling a model-grid map to the full input grid a few slices at a time, straight into the output array.

``F.interpolate`` on a whole volume allocates the full-resolution result (and its float copies) at once; a 3D model's
maps would then need several volume-sized temporaries besides the outputs. These functions produce the same values
(trilinear and nearest-exact, ``align_corners=False``, the conventions of :func:`morse.inference.preprocess.resize`)
in z-chunks of bounded size: in-plane resize of the source slices a chunk needs, then linear blending (or nearest
pick) along z, which is exactly the separable form of trilinear (nearest) interpolation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from . import memory  # memory.CHUNK_BYTES: scratch bytes per chunk, read at call time
from .map_values import quantize_unit


def _rows_per_chunk(out_depth: int, in_depth: int, plane_values: int, budget: int) -> int:
    """Output slices per chunk: each costs its own plane plus its share of resized source planes (float32)."""
    per_row = 4 * plane_values * (2 + in_depth / max(1, out_depth))
    return max(1, int(budget // max(1.0, per_row)))


def linear_source(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index along one axis: the two source indices and the weight of the second (float32
    arithmetic as PyTorch's linear kernels, ``align_corners=False``, source positions clamped at 0)."""
    scale = np.float32(in_size / out_size)
    real = np.maximum(scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    i0 = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    lam = np.clip(real - i0, 0, 1).astype(np.float32)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, lam


def nearest_source(out_size: int, in_size: int) -> np.ndarray:
    """Source index of each output index along one axis for ``nearest-exact`` (taken from PyTorch itself)."""
    ramp = torch.arange(in_size, dtype=torch.float32)[None, None]
    return F.interpolate(ramp, size=out_size, mode="nearest-exact")[0, 0].round().to(torch.int64).numpy()


def resize_linear_into(
    dst: np.ndarray, src: torch.Tensor, clamp: tuple[float, float] | None = None, budget: int | None = None
) -> None:
    """Trilinear resize of ``src (D', H', W')`` float into ``dst (D, H, W)`` float32 (a view is fine), in chunks.

    ``clamp``: optional (low, high) applied to the result. ``budget``: bytes of scratch per chunk (default
    :data:`morse.inference.memory.CHUNK_BYTES`). A uint8 ``dst`` receives ``round(value·255)`` (maps in [0, 1]).
    """
    depth, height, width = dst.shape
    i0, i1, lam = linear_source(depth, src.shape[0])
    step = _rows_per_chunk(depth, src.shape[0], height * width, memory.CHUNK_BYTES if budget is None else budget)
    for z0 in range(0, depth, step):
        z1 = min(depth, z0 + step)
        lo, hi = int(i0[z0]), int(i1[z1 - 1]) + 1
        planes = src[lo:hi, None].float()
        if tuple(planes.shape[2:]) != (height, width):
            planes = F.interpolate(planes, size=(height, width), mode="bilinear", align_corners=False)
        planes = planes[:, 0]
        a = planes[torch.from_numpy(i0[z0:z1] - lo)]
        b = planes[torch.from_numpy(i1[z0:z1] - lo)]
        chunk = torch.lerp(a, b, torch.from_numpy(lam[z0:z1])[:, None, None])
        if clamp is not None:
            chunk.clamp_(*clamp)
        if dst.dtype == np.uint8:
            quantize_unit(chunk.numpy(), out=dst[z0:z1], in_place=True)
        else:
            dst[z0:z1] = chunk.numpy()


def resize_nearest_into(dst: np.ndarray, src: torch.Tensor, budget: int | None = None) -> None:
    """Nearest-exact resize of an integer map ``src (D', H', W')`` into ``dst (D, H, W)`` (a view is fine)."""
    depth, height, width = dst.shape
    index = nearest_source(depth, src.shape[0])
    step = _rows_per_chunk(depth, 1, height * width, memory.CHUNK_BYTES if budget is None else budget)
    for z0 in range(0, depth, step):
        z1 = min(depth, z0 + step)
        planes = src[torch.from_numpy(index[z0:z1])][:, None]
        if tuple(planes.shape[2:]) != (height, width):
            planes = F.interpolate(planes.float(), size=(height, width), mode="nearest-exact")
        dst[z0:z1] = planes[:, 0].to(torch.uint8).numpy()


def dominant_expert(gating: np.ndarray, budget: int | None = None) -> np.ndarray:
    """``1 + argmax`` over experts of ``gating (N, K, J, I)`` as uint8 (K, J, I) (the first expert wins ties), a few
    slices at a time with 6 bytes of scratch per voxel (``np.argmax`` would copy the chunk and return int64)."""
    out = np.empty(gating.shape[1:], np.uint8)
    plane = int(np.prod(gating.shape[2:])) if gating.ndim > 2 else 1
    step = max(1, (memory.CHUNK_BYTES if budget is None else budget) // max(1, 6 * plane))
    for k0 in range(0, out.shape[0], step):
        k1 = min(out.shape[0], k0 + step)
        best = gating[0, k0:k1].copy()
        index = out[k0:k1]
        index[...] = 1
        for n in range(1, gating.shape[0]):
            better = gating[n, k0:k1] > best
            np.copyto(best, gating[n, k0:k1], where=better)
            index[better] = n + 1
    return out
