"""Labels of bilinearly up-sampled logits without up-sampling the logits.

The label of an output pixel is the argmax of the bilinear blend of its 2×2 source cells' logits. Where those four
cells have the same argmax class ``c`` the blend's argmax is ``c`` too (for every class ``d``, each cell has
``l[c] ≥ l[d]``, so the convex combination does; ties resolve to the lower index in both), so only the pixels whose
support mixes classes, a thin band along the organ boundaries, need their logits blended. The result equals
``interpolate(logits, bilinear, align_corners=False).argmax(1)`` while costing an argmax on the model grid plus a few
uint8 gathers at full resolution, instead of a C-channel float resize and an argmax at full resolution.
"""

from __future__ import annotations

import numpy as np
import torch

from .chunked import linear_source
from .preprocess import resize


def argmax_classes(logits: torch.Tensor) -> torch.Tensor:
    """``argmax`` over the class axis of ``(B, C, *S)`` as uint8 ``(B, *S)`` (first maximum wins)."""
    if logits.shape[1] > 256:
        raise ValueError(f"{logits.shape[1]} classes do not fit uint8 labels")
    return logits.argmax(1).to(torch.uint8)


def upsampled_labels(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``interpolate(logits, size, "bilinear", align_corners=False).argmax(1)`` as uint8 ``(B, H, W)`` (numpy).

    Args:
        logits: ``(B, C, h, w)`` float (any memory format). Off the CPU, or when an axis shrinks (then
            :func:`morse.inference.preprocess.resize` antialiases, whose support is wider than 2×2), the logits are
            resized on their device and the argmax taken there.
        size: output ``(H, W)``.
    """
    b, c, h, w = logits.shape
    out_h, out_w = size
    if logits.device.type != "cpu" or out_h < h or out_w < w:
        return argmax_classes(resize(logits.float(), size)).cpu().numpy()
    lab = argmax_classes(logits).numpy()
    y0, y1, wy = linear_source(out_h, h)
    x0, x1, wx = linear_source(out_w, w)
    # columns first, on the small model-grid map; then whole rows, which numpy copies as contiguous blocks
    left, right = np.take(lab, x0, axis=2), np.take(lab, x1, axis=2)  # (B, h, W)
    c00, c01 = np.take(left, y0, axis=1), np.take(right, y0, axis=1)  # (B, H, W)
    c10, c11 = np.take(left, y1, axis=1), np.take(right, y1, axis=1)
    mixed = (c00 != c01) | (c00 != c10) | (c00 != c11)
    out = c00
    where = np.flatnonzero(mixed)
    if where.size == 0:
        return out
    bi, rest = np.divmod(where, out_h * out_w)
    yi, xi = np.divmod(rest, out_w)
    rows = logits.float().permute(0, 2, 3, 1).reshape(b * h * w, c).numpy()  # no copy for channels-last logits
    top, bottom = bi * (h * w) + y0[yi] * w, bi * (h * w) + y1[yi] * w
    lx, ly = wx[xi][:, None], wy[yi][:, None]
    one = np.float32(1)
    # the same products and sums, in the same order, as PyTorch's separable bilinear kernel (float32)
    upper = rows[top + x0[xi]] * (one - lx) + rows[top + x1[xi]] * lx
    lower = rows[bottom + x0[xi]] * (one - lx) + rows[bottom + x1[xi]] * lx
    blend = upper * (one - ly) + lower * ly
    out.reshape(-1)[where] = blend.argmax(1).astype(np.uint8)
    return out
