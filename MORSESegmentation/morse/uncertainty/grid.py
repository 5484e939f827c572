"""The model grid of a 2D pack as an image grid: where the uncertainty options are computed and evaluated.

A 2D pack resizes every slice of the reoriented volume (:mod:`morse.inference.preprocess`) to its in-plane voxel
size; slices stay slices. This module gives that grid's IJK→RAS matrix and resamples images and labels onto it, so
that per-voxel results of the network can be scored without resampling them to the input first.
"""

from __future__ import annotations

import numpy as np
import torch

from ..inference.preprocess import resize


def model_grid_ijk_to_ras(reoriented_ijk_to_ras: np.ndarray, reoriented_shape, model_shape) -> np.ndarray:
    """IJK→RAS ``(4, 4)`` of the model grid ``(D, h, w)`` covering the reoriented grid ``(D, H, W)``.

    Resizing with ``align_corners=False`` puts model voxel centre ``x'`` at input index ``(x' + ½)·W/w − ½``: the
    i and j columns scale by ``W/w`` and ``H/h`` and the origin moves by ``½·(W/w − 1)`` and ``½·(H/h − 1)`` voxels.
    """
    m = np.asarray(reoriented_ijk_to_ras, dtype=np.float64).copy()
    _, height, width = reoriented_shape
    _, h, w = model_shape
    for column, ratio in ((0, width / w), (1, height / h)):
        m[:3, 3] += m[:3, column] * 0.5 * (ratio - 1.0)
        m[:3, column] *= ratio
    return m


def resize_slices(volume: np.ndarray, hw: tuple[int, int], nearest: bool = False, chunk: int = 32) -> np.ndarray:
    """``(D, H, W)`` → ``(D, h, w)`` slice by slice (labels: ``nearest`` at cell centres; images: antialiased
    bilinear), in the array's dtype."""
    out = np.empty((volume.shape[0], *hw), dtype=volume.dtype)
    for s in range(0, volume.shape[0], chunk):
        part = torch.from_numpy(np.ascontiguousarray(volume[s : s + chunk], dtype=np.float32))[:, None]
        res = resize(part, hw, mode="nearest" if nearest else "linear")[:, 0].numpy()
        out[s : s + chunk] = np.rint(res) if nearest or np.issubdtype(volume.dtype, np.integer) else res
    return out
